"""Argument parsing for ``%abaco``: one argparse sub-command per operation, close to curl/agavepy.

argparse normally prints to stderr and calls ``sys.exit``; in a kernel that is a ``SystemExit`` traceback.
``MagicParser`` turns every parse problem into ``MagicError`` (one readable line) and ``--help`` into
``HelpRequested`` carrying the text, so the magic can show it as output.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shlex
from typing import Any, NoReturn


class MagicError(Exception):
    """Bad arguments or a refused request: shown as one line in the notebook, no traceback."""


class HelpRequested(Exception):
    """``-h``/``--help`` was given: the exception carries the help text."""


class MagicParser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting, and suggests the near option or
    command when one is mistyped (``--wiat`` -> ``--wait``)."""

    def error(self, message: str) -> NoReturn:
        raise MagicError(f"{self.prog}: {message}{self._suggestion(message)} ({self.help_hint()})")

    def help_hint(self) -> str:
        """Where to read more: ``%abaco help send`` for a sub-command, ``%abaco help`` for the root."""
        words = self.prog.split()
        if self.prog.startswith("%%"):
            return f"see %abaco help {words[-1]}"
        return f"see %abaco help {words[1]}" if len(words) > 1 else "see %abaco help"

    def _suggestion(self, message: str) -> str:
        options = [o for a in self._actions for o in a.option_strings]
        found = re.search(r"unrecognized arguments: (.+)$", message)
        if found:
            near = [
                difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.6)
                for word in found.group(1).split()
                if word.startswith("-")
            ]
            names = [n[0] for n in near if n]
            return f"; did you mean {' '.join(names)}?" if names else ""
        found = re.search(r"invalid choice: '([^']*)'", message)
        if found:
            choices = [c for a in self._actions if a.choices for c in a.choices]
            close = difflib.get_close_matches(found.group(1), [str(c) for c in choices], n=1, cutoff=0.5)
            return f"; did you mean {close[0]!r}?" if close else ""
        return ""

    def parse_command(self, argv: list[str]) -> argparse.Namespace:
        """Parse ``COMMAND ARGS...`` with options anywhere among the arguments
        (``send test -q k=v "msg"`` as well as ``send test "msg" -q k=v``). argparse cannot intermix
        with sub-parsers, so the sub-command is picked first and its parser intermixes on its own."""
        sub = _subparsers(self)
        command = argv[0]
        if command not in sub:
            near = difflib.get_close_matches(command, SUB_PARSERS_ORDER, n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise MagicError(f"%abaco: no command {command!r}{hint} (see %abaco help)")
        args = sub[command].parse_intermixed_args(argv[1:])
        args.command = command
        return args

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise MagicError(message.strip())
        raise HelpRequested(self.format_help())

    def print_help(self, file: Any = None) -> None:
        raise HelpRequested(self.format_help())


def key_values(pairs: list[str] | None, option: str) -> dict[str, str]:
    """``["key1=value1", ...]`` -> dict; a pair without ``=`` is a one-line error naming the option."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MagicError(f"{option} expects KEY=VALUE, got {pair!r}")
        result[key] = value
    return result


def message_value(text: str) -> str | dict[str, Any] | list[Any]:
    """A message as the user typed it: JSON (object or array) when it parses as one, else the string."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(stripped)
        except ValueError:
            return text
        if isinstance(value, dict | list):
            return value
    return text


def split_line(line: str) -> list[str]:
    """Split like a shell, with a clear error for an unbalanced quote."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise MagicError(f"cannot parse the arguments: {exc}") from None


def build_parser() -> MagicParser:
    """The whole ``%abaco`` grammar. ``%abaco help`` is generated from it."""
    root = MagicParser(prog="%abaco", add_help=False, description="Abaco actors from a notebook.")
    sub = root.add_subparsers(dest="command", parser_class=MagicParser, metavar="COMMAND")

    def add(name: str, help_text: str, **kw: Any) -> MagicParser:
        return sub.add_parser(name, help=help_text, description=help_text, **kw)

    p = add("connect", "Connect to an Abaco service (no URL: find or start one with abaco_nb.connect()).")
    p.add_argument("url", nargs="?", help="base URL, e.g. http://127.0.0.1:8888/abaco")
    p.add_argument("--token", "-t", help="API token (Bearer; X-Tapis-Token with --tapis)")
    p.add_argument("--prefix", default="/actors", help="route prefix: /actors, /actors/v2 or /v3/actors")
    p.add_argument("--tapis", action="store_true", help="Tapis v3 authentication (X-Tapis-Token)")

    add("actors", "List actors.")

    p = add("actor", "Show one actor.")
    p.add_argument("actor", help="actor id or name")

    p = add("register", "Register an actor from an image (an actor of that --name is reused, or updated).")
    p.add_argument("image", help="Docker image, e.g. abaco-nb/test")
    p.add_argument("--name", "-n", help="actor name (you can then use it instead of the id)")
    p.add_argument("--description", "-d", help="free text")
    p.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="default environment (repeat)")
    p.add_argument("--stateful", action="store_true", help="a stateful actor (one worker, has state)")
    p.add_argument("--max-workers", type=int, help="upper bound on workers for a stateless actor")
    p.add_argument("--workers", "-w", type=int, help="start this many workers once READY")
    p.add_argument("--force", action="store_true", help="always pull the image before starting workers")
    p.add_argument("--no-wait", action="store_true", help="return at once instead of waiting until READY")
    p.add_argument("--new", action="store_true", help="register another actor even if one has this name")
    p.add_argument(
        "--access-token",
        action="store_true",
        help="give executions an _abaco_access_token (Abaco's `token`), e.g. to call update_state",
    )

    p = add("update", "Update an actor (a full replacement, as in Abaco: omitted fields are reset).")
    p.add_argument("actor", help="actor id or name")
    p.add_argument("image", nargs="?", help="new image (default: the current one)")
    p.add_argument("--description", "-d")
    p.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="default environment (repeat)")
    p.add_argument("--stateful", action="store_true")
    p.add_argument("--max-workers", type=int)
    p.add_argument("--force", action="store_true", help="restart workers even when the image is unchanged")
    p.add_argument(
        "--access-token",
        action="store_true",
        help="give executions an _abaco_access_token (Abaco's `token`), e.g. to call update_state",
    )

    p = add("delete", "Delete an actor.")
    p.add_argument("actor", help="actor id or name")

    p = add("send", "Send a message: a string, or JSON when it parses as an object or array.")
    p.add_argument("actor", help="actor id or name")
    p.add_argument("message", nargs="?", help="the message (cell body for %%%%abaco send)")
    p.add_argument(
        "-q", "--query", action="append", metavar="KEY=VALUE", help="environment override (repeat)"
    )
    p.add_argument("--wait", action="store_true", help="block until the execution ends and show its logs")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait with --wait (default 300)")
    p.add_argument("--string", action="store_true", help="send as a string even if it looks like JSON")

    p = add("executions", "List an actor's executions (oldest first).")
    p.add_argument("actor", help="actor id or name")
    p.add_argument("--last", "-l", type=int, default=20, help="show details of the last N (default 20)")

    p = add("execution", "Show one execution.")
    p.add_argument("actor", help="actor id or name")
    p.add_argument("execution", help="execution id")

    p = add("logs", "An execution's logs.")
    p.add_argument("actor", help="actor id or name")
    p.add_argument("execution", nargs="?", help="execution id (default: the latest)")
    p.add_argument("--follow", "-f", action="store_true", help="stream until the execution ends")

    p = add("state", "Get an actor's state, or set it (JSON, else a string).")
    p.add_argument("actor", help="actor id or name")
    p.add_argument("value", nargs="?", help="new state as JSON")

    p = add("workers", "List an actor's workers, or scale them with --num N.")
    p.add_argument("actor", help="actor id or name")
    p.add_argument("--num", "-n", type=int, help="ensure at least this many workers")

    p = add("cancel", "Stop a running execution or drop a queued one.")
    p.add_argument("actor", help="actor id or name")
    p.add_argument("execution", help="execution id")

    p = add("nonces", "List an actor's nonces (?x-nonce= access without the token), or create or delete one.")
    p.add_argument("actor", help="actor id, name or alias")
    p.add_argument("--create", action="store_true", help="create a nonce (returned: its id is .id)")
    p.add_argument("--level", help="with --create: READ, EXECUTE (default) or UPDATE")
    p.add_argument("--max-uses", type=int, metavar="N", help="with --create: uses allowed (-1: unlimited)")
    p.add_argument("--description", help="with --create: free text")
    p.add_argument("--delete", metavar="NID", help="delete this nonce")

    p = add("alias", "Give an actor an alias (re-points an existing one), usable wherever its id is.")
    p.add_argument("alias", help="the alias: no spaces or / ? # and the like; dots are fine")
    p.add_argument("actor", nargs="?", help="actor id or name")
    p.add_argument("--delete", action="store_true", help="delete the alias")

    add("aliases", "List aliases.")

    p = add("configs", "List actor configs (_actor_configs in every execution), or set or delete one.")
    p.add_argument("name", nargs="?", help="the config to set or delete")
    p.add_argument("--value", help="the value: JSON when it parses as an object or array, else a string")
    p.add_argument("--actors", metavar="A[,B]", help="actors (ids, names or aliases) that get the config")
    p.add_argument("--secret", action="store_true", help="store it encrypted (listed as ciphertext)")
    p.add_argument("--delete", action="store_true", help="delete the config")

    p = add(
        "image",
        "Build (or find cached) the executor image of this kernel's packages, as AbacoExecutor() does.",
    )
    p.add_argument(
        "--packages", nargs="+", metavar="PKG", help="only these and their dependencies (default: all)"
    )
    p.add_argument("--force", action="store_true", help="rebuild even when cached")

    p = add("dashboard", "A live dashboard of actors, executions, logs, workers and a timeline.")
    p.add_argument("--interval", type=float, default=2.0, help="refresh period in seconds (default 2)")

    p = add("help", "This help, or one command's (%abaco help send).")
    p.add_argument("topic", nargs="?")
    return root


CELL_HELP = """\
Cell magics:
  %%abaco send ACTOR [-q KEY=VALUE] [--wait]
      The cell body is the message; JSON when it parses as an object or array.
  %%abaco actor NAME [--stateful] [--handler FUNC] [-e KEY=VALUE]
      The cell defines a Python handler; it becomes an actor with no image to build (it runs in the
      executor image abaco-nb/py3-func, or as a local process). The handler is FUNC, else `handler`,
      else the only function in the cell. It is called as handler(), handler(context) or
      handler(message, context), where context is abaco_nb.actors.get_context(); a return value
      other than None is sent as the execution's result. Use abaco_nb.actors.update_state for state.
  %%abaco map NAME=VALUES [NAME=VALUES ...] [--grid EXPR] [-o VAR] [--wait] [--image IMAGE] [--no-progress]
      A parameter sweep with AbacoExecutor.map over the product of the value lists. Each value is any
      Python expression, evaluated in the notebook (b=[1, 2] and f=lambda x: x are fine). The cell body is
      evaluated once per point, with the parameters as variables; its last expression is the result. It
      uses the notebook's AbacoExecutor when there is one, shows a progress bar and the points' output
      live, and returns a Sweep at once (its table fills in; .wait() blocks; .results; .table();
      .dataframe() as pandas with the parameters as columns; .plot()).
"""

SUB_PARSERS_ORDER = (
    "connect actors actor register update delete send executions execution logs state workers cancel "
    "nonces alias aliases configs image dashboard help"
).split()


def usage(parser: MagicParser, topic: str | None = None) -> str:
    """``%abaco help [topic]``: every command's usage and one line of description, then the cell magics."""
    sub = _subparsers(parser)
    if topic:
        if topic.lstrip("%") in ("send-cell", "actor", "map", "cell"):
            return CELL_HELP
        if topic not in sub:
            raise MagicError(f"no command {topic!r}; commands: {', '.join(SUB_PARSERS_ORDER)}")
        return sub[topic].format_help()
    lines = ["%abaco COMMAND [ARGS] — actors are referred to by id, name or alias.", "", "Line magics:"]
    for name in SUB_PARSERS_ORDER:
        p = sub[name]
        text = p.format_usage().replace("usage: ", "").strip()
        lines.append(f"  {text}")
        lines.append(f"      {p.description}")
    lines += ["", CELL_HELP, "%abaco help COMMAND shows a command's options."]
    return "\n".join(lines)


def _subparsers(parser: MagicParser) -> dict[str, MagicParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


MAP_FLAGS = {"--wait", "--no-progress", "-h", "--help"}
MAP_VALUED = {"--grid", "-o", "--out", "--image"}
_AXIS = re.compile(r"([A-Za-z_]\w*)=(?!=)")
_OPTION = re.compile(r"(--?[A-Za-z][\w-]*)(?=\s|=|$)")


def split_assignments(
    line: str, flags: set[str], valued: set[str]
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """``a=range(10) b=[1, 2] --wait -o s`` -> ``([("a", "range(10)"), ("b", "[1, 2]")],
    {"--wait": True, "-o": "s"})``.

    The line is *not* split on spaces: any Python expression is a value. A new ``NAME=`` or option
    starts only at a word boundary outside brackets and strings, so ``b=[1, 2]``, ``f=lambda x: x``
    and ``s="a b"`` each stay whole. ``valued`` options take the rest of their segment as a value.
    """
    marks: list[tuple[int, int, str, str]] = []  # (start, end of the mark, kind, name)
    depth, i, quote = 0, 0, ""
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
            i += 1
            continue
        if c in "'\"":
            quote = c * 3 if line.startswith(c * 3, i) else c
            i += len(quote)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0 and (i == 0 or line[i - 1].isspace()):
            option = _OPTION.match(line, i)
            axis = _AXIS.match(line, i)
            if option:
                marks.append((i, option.end(), "option", option.group(1)))
                i = option.end()
                continue
            if axis:
                marks.append((i, axis.end(), "axis", axis.group(1)))
                i = axis.end()
                continue
        i += 1
    if quote:
        raise MagicError(f"cannot parse the arguments: unclosed quotation {quote}")
    if marks and line[: marks[0][0]].strip():
        raise MagicError(f"parameters are NAME=VALUES, got {line[: marks[0][0]].strip()!r}")
    if not marks and line.strip():
        raise MagicError(f"parameters are NAME=VALUES, got {line.strip()!r}")
    axes: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for n, (_start, end, kind, name) in enumerate(marks):
        stop = marks[n + 1][0] if n + 1 < len(marks) else len(line)
        text = line[end:stop].strip()
        if kind == "axis":
            if not text:
                raise MagicError(f"{name}= needs values, e.g. {name}=range(10)")
            axes.append((name, text))
        elif name in flags:
            if text:
                raise MagicError(f"{name} takes no value, got {text!r}")
            options[name] = True
        elif name in valued:
            text = text[1:].strip() if text.startswith("=") else text
            if not text:
                raise MagicError(f"{name} needs a value")
            options[name] = text
        else:
            near = difflib.get_close_matches(name, sorted(flags | valued), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise MagicError(f"unknown option {name}{hint} (see %abaco help map)")
    return axes, options
