"""``%abaco`` / ``%%abaco``: every Abaco operation from a notebook cell.

One ``Magics`` class; each sub-command is a method ``_cmd_<name>`` that gets parsed arguments and returns
a value with rich reprs (so ``actors = %abaco actors`` works). Every failure the user can cause —
bad arguments, an unknown actor, a refused request, an unreachable service — becomes IPython's
``UsageError``: one line, no traceback.
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import sys
import time
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..errors import KernelImageError
from ..records import ActorList, Execution, ExecutionList, MessageReceipt, WorkerList, is_finished
from . import access, cell_actor, configs, sweep
from .display import Finished, HelpText, Logs, Notice, State
from .parsing import (
    MAP_FLAGS,
    MAP_VALUED,
    HelpRequested,
    MagicError,
    MagicParser,
    build_parser,
    key_values,
    message_value,
    split_assignments,
    split_line,
    usage,
)

if TYPE_CHECKING:
    from ..client import Client


@magics_class
class AbacoMagics(Magics):
    """The ``%abaco`` line magic and the ``%%abaco`` cell magic."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self.parser = build_parser()
        self.client: Client | None = None
        self._executors: dict[str | None, Any] = {}
        self._names: tuple[float, list[tuple[str, str]]] = (0.0, [])

    # -- entry point --------------------------------------------------------------------------------

    @line_cell_magic
    def abaco(self, line: str, cell: str | None = None) -> Any:
        """Abaco actors from the notebook: ``%abaco help`` lists every command."""
        try:
            if cell is not None:
                return self._cell(line, cell)
            return self._line(line)
        except HelpRequested as text:
            return HelpText(str(text))
        except MagicError as exc:
            raise UsageError(f"abaco: {exc}") from None
        except Exception as exc:
            from ..errors import AbacoAPIError

            if isinstance(exc, AbacoAPIError | TimeoutError | ImportError | OSError):
                raise UsageError(f"abaco: {exc}") from None
            raise

    def _line(self, line: str) -> Any:
        argv = split_line(line)
        if not argv:
            return HelpText(usage(self.parser))
        args = self.parser.parse_command(argv)
        return getattr(self, f"_cmd_{args.command}")(args)

    def _cell(self, line: str, cell: str) -> Any:
        argv = split_line(line)
        kind = argv[0] if argv else ""
        if kind == "send":
            args = self.parser.parse_command(argv)
            args.message = cell if args.string else cell.strip("\n")
            return self._cmd_send(args, cell=True)
        if kind == "actor":
            return self._cell_actor(self._actor_cell_parser().parse_intermixed_args(argv[1:]), cell)
        if kind == "map":
            return self._cell_map(line.strip()[len("map") :], cell)
        near = difflib.get_close_matches(kind, ["send", "actor", "map"], n=1, cutoff=0.5)
        hint = f"did you mean %%abaco {near[0]}? " if near else ""
        raise MagicError(
            f"{hint}cell magics are %%abaco send ACTOR, %%abaco actor NAME and %%abaco map (see %abaco help cell)"
        )

    # -- connection and names -----------------------------------------------------------------------

    def get_client(self) -> Client:
        """The connected client; on first use, ``abaco_nb.connect()`` finds or starts a service."""
        if self.client is None:
            from ..connection import connect

            self.client = connect()
        return self.client

    def resolve(self, ref: str) -> str:
        """An actor id from an id or a name. Ids win; names need not be unique in Abaco, so a name shared
        by several actors means the newest, and the magic says so on stderr (naming the others), so a
        second actor of that name never goes unnoticed."""
        actors = self.get_client().actors()
        self._remember(actors)
        if any(a.get("id") == ref for a in actors):
            return ref
        named = self.named(ref, actors)
        if named:
            if len(named) > 1:
                others = ", ".join(str(a["id"]) for a in named[:-1])
                print(
                    f"abaco: {len(named)} actors are named {ref!r}; using the newest, {named[-1]['id']} "
                    f"(the others: {others}; use an id to pick one)",
                    file=sys.stderr,
                )
            return str(named[-1]["id"])
        if access.is_alias(self.get_client(), ref):
            return ref  # the service resolves an alias wherever an actor id goes
        raise MagicError(f"no actor with id or name {ref!r} (%abaco actors lists them)")

    @staticmethod
    def named(name: str | None, actors: list[Any]) -> list[Any]:
        """The actors called ``name``, oldest first."""
        if not name:
            return []
        return sorted(
            (a for a in actors if a.get("name") == name), key=lambda a: str(a.field("create_time") or "")
        )

    def _remember(self, actors: list[Any]) -> None:
        self._names = (time.monotonic(), [(str(a.get("id")), str(a.get("name") or "")) for a in actors])

    def actor_names(self, max_age: float = 10.0) -> list[str]:
        """Names and ids for tab completion (cached briefly; never raises)."""
        stamp, pairs = self._names
        if self.client is not None and time.monotonic() - stamp > max_age:
            try:
                self._remember(self.client.actors())
                pairs = self._names[1]
            except Exception:
                pass
        return sorted({n for pair in pairs for n in pair if n})

    # -- line commands ------------------------------------------------------------------------------

    def _cmd_help(self, args: argparse.Namespace) -> HelpText:
        return HelpText(usage(self.parser, args.topic))

    def _cmd_connect(self, args: argparse.Namespace) -> Client:
        if args.url:
            from ..client import Client

            client = Client(
                args.url, args.token, prefix=args.prefix, auth="tapis" if args.tapis else "bearer"
            )
            client.how = "given to %abaco connect"
            client.actors()  # fail now, with one line, if the URL or token is wrong
            self.client = client
        else:
            self.client = None
            self.get_client()
        self._executors.clear()
        assert self.client is not None
        return self.client

    def _cmd_actors(self, args: argparse.Namespace) -> ActorList:
        actors = self.get_client().actors()
        self._remember(actors)
        return ActorList(actors)

    def _cmd_actor(self, args: argparse.Namespace) -> Any:
        return self.get_client().actor(self.resolve(args.actor))

    def _cmd_register(self, args: argparse.Namespace) -> Any:
        """Register, or (when an actor of that name exists and ``--new`` is absent) reuse it: re-running
        a notebook's register cell must not create a second ``test``. The existing actor is updated when
        what the line asks for differs (image, environment, statefulness...), and a line on stderr says
        which happened."""
        client = self.get_client()
        env = key_values(args.env, "-e")
        fields: dict[str, Any] = {"force": True} if args.force else {}
        if args.access_token:
            fields["token"] = True
        existing = [] if args.new else self.named(args.name, client.actors())
        if existing:
            current = existing[-1]
            wanted = {
                "image": args.image,
                "stateless": not args.stateful,
                "default_environment": env,
                "description": args.description or "",
                "max_workers": args.max_workers,
            }
            changed = [
                k for k, v in wanted.items() if v is not None and (current.field(k) or None) != (v or None)
            ]
            if changed or args.force:
                actor = client.update(
                    str(current["id"]),
                    args.image,
                    stateless=not args.stateful,
                    default_environment=env,
                    description=args.description or "",
                    force=args.force,
                    **({"max_workers": args.max_workers} if args.max_workers is not None else {}),
                    **({"token": True} if args.access_token else {}),
                )
                what = f"updated it ({', '.join(changed) or 'force'})"
            else:
                actor, what = current, "it already matches this line"
            print(
                f"abaco: reusing actor {current['id']} named {args.name!r}: {what}; --new registers another",
                file=sys.stderr,
            )
        else:
            actor = client.register(
                args.image,
                args.name,
                description=args.description,
                default_environment=env,
                stateless=not args.stateful,
                max_workers=args.max_workers,
                **fields,
            )
        self._names = (0.0, self._names[1])
        if args.no_wait:
            return actor
        actor = self._ready(str(actor["id"]))
        if args.workers:
            client.add_workers(str(actor["id"]), args.workers)
        return actor

    def _ready(self, actor_id: str) -> Any:
        """Wait until READY; an actor that went ERROR is left for the user to inspect, with the two ways
        out in the same line."""
        from ..errors import AbacoAPIError

        try:
            return self.get_client().wait_until_ready(actor_id)
        except AbacoAPIError as exc:
            raise MagicError(
                f"{exc.message}. The actor stays in ERROR: fix the image and run "
                f"`%abaco update {actor_id} IMAGE`, or remove it with `%abaco delete {actor_id}`"
            ) from None

    def _cmd_update(self, args: argparse.Namespace) -> Any:
        client = self.get_client()
        actor_id = self.resolve(args.actor)
        current = client.actor(actor_id)
        fields: dict[str, Any] = {"stateless": not args.stateful}
        if args.access_token:
            fields["token"] = True
        if args.description is not None:
            fields["description"] = args.description
        if args.env:
            fields["default_environment"] = key_values(args.env, "-e")
        if args.max_workers is not None:
            fields["max_workers"] = args.max_workers
        actor = client.update(actor_id, args.image or str(current["image"]), force=args.force, **fields)
        return self._ready(str(actor["id"]))

    def _cmd_delete(self, args: argparse.Namespace) -> Notice:
        actor_id = self.resolve(args.actor)
        self.get_client().delete(actor_id)
        self._names = (0.0, [p for p in self._names[1] if p[0] != actor_id])
        return Notice(f"actor {actor_id} deleted")

    def _cmd_send(self, args: argparse.Namespace, cell: bool = False) -> Any:
        if args.message is None:
            raise MagicError(
                'send needs a message: %abaco send ACTOR "text" (or the %%abaco send cell magic)'
            )
        client = self.get_client()
        actor_id = self.resolve(args.actor)
        message = args.message if args.string else message_value(args.message)
        receipt = client.send(actor_id, message, environment=key_values(args.query, "-q"))
        assert isinstance(receipt, MessageReceipt)  # not synchronous: always a receipt
        if not args.wait:
            from ..live import follow

            follow(client, actor_id, receipt.execution_id, f"output of {args.actor}")
            return receipt
        execution = self._wait(actor_id, receipt.execution_id, args.timeout)
        logs = Logs.of(client.logs(actor_id, receipt.execution_id), actor_id, receipt.execution_id, client)
        return Finished(receipt, execution, logs)

    def _wait(self, actor_id: str, execution_id: str, timeout: float) -> Execution:
        """Long-poll until the execution ends; Ctrl-C (or the timeout) returns it as it is."""
        client = self.get_client()
        deadline = time.monotonic() + timeout
        execution = client.execution(actor_id, execution_id)
        try:
            while not is_finished(execution) and time.monotonic() < deadline:
                step = max(1, min(30, int(deadline - time.monotonic())))
                execution = client.execution(actor_id, execution_id, wait=step)
        except KeyboardInterrupt:
            pass
        return execution

    def _cmd_executions(self, args: argparse.Namespace) -> ExecutionList:
        client = self.get_client()
        actor_id = self.resolve(args.actor)
        summary = client.executions(actor_id).get("executions") or []
        last = summary[-args.last :] if args.last > 0 else []
        return ExecutionList(client.execution(actor_id, str(e["id"])) for e in last)

    def _cmd_execution(self, args: argparse.Namespace) -> Execution:
        return self.get_client().execution(self.resolve(args.actor), args.execution)

    def _latest(self, actor_id: str) -> str:
        summary = self.get_client().executions(actor_id).get("executions") or []
        if not summary:
            raise MagicError(f"actor {actor_id} has no executions yet")
        return str(summary[-1]["id"])

    def _cmd_logs(self, args: argparse.Namespace) -> Any:
        client = self.get_client()
        actor_id = self.resolve(args.actor)
        execution_id = args.execution or self._latest(actor_id)
        if not args.follow:
            return Logs.of(client.logs(actor_id, execution_id), actor_id, execution_id, client)
        return self._follow(actor_id, execution_id)

    def _follow(self, actor_id: str, execution_id: str, interval: float = 0.5) -> Execution:
        """Print new log output as it appears until the execution ends (Ctrl-C stops following)."""
        client = self.get_client()
        shown = 0
        try:
            while True:
                execution = client.execution(actor_id, execution_id)
                text = client.logs(actor_id, execution_id)
                if len(text) > shown:
                    sys.stdout.write(text[shown:])
                    sys.stdout.flush()
                    shown = len(text)
                if is_finished(execution):
                    text = client.logs(actor_id, execution_id)  # lines written just before the end
                    sys.stdout.write(text[shown:])
                    sys.stdout.flush()
                    return execution
                time.sleep(interval)
        except KeyboardInterrupt:
            return client.execution(actor_id, execution_id)

    def _cmd_state(self, args: argparse.Namespace) -> State:
        client = self.get_client()
        actor_id = self.resolve(args.actor)
        if args.value is not None:
            value = message_value(args.value)
            if isinstance(value, str):
                try:
                    import json

                    value = json.loads(value)
                except ValueError:
                    pass
            client.set_state(actor_id, value)
        return State(actor_id, client.state(actor_id))

    def _cmd_workers(self, args: argparse.Namespace) -> WorkerList:
        client = self.get_client()
        actor_id = self.resolve(args.actor)
        if args.num is not None:
            if args.num < 1:
                raise MagicError("--num must be at least 1")
            client.add_workers(actor_id, args.num)
        return WorkerList(client.workers(actor_id))

    def _cmd_cancel(self, args: argparse.Namespace) -> Notice:
        actor_id = self.resolve(args.actor)
        return Notice(self.get_client().cancel(actor_id, args.execution) or "cancelled")

    def _cmd_nonces(self, args: argparse.Namespace) -> Any:
        return access.nonces(self.get_client(), self.resolve(args.actor), args)

    def _cmd_alias(self, args: argparse.Namespace) -> Any:
        actor_id = self.resolve(args.actor) if args.actor and not args.delete else None
        return access.alias(self.get_client(), args.alias, actor_id, args.delete)

    def _cmd_aliases(self, args: argparse.Namespace) -> Any:
        return access.aliases(self.get_client())

    def _cmd_configs(self, args: argparse.Namespace) -> Any:
        return configs.configs(self.get_client(), args, self.resolve)

    def _cmd_image(self, args: argparse.Namespace) -> Notice:
        """``%abaco image``: the kernel image, built here with its progress shown (no service needed)."""
        from .. import kernel_image

        try:
            built = kernel_image.ensure(args.packages, force=args.force)
        except (KernelImageError, ValueError) as exc:
            raise MagicError(str(exc)) from None
        if built is None:
            raise MagicError(
                "no kernel image can be built here: no Docker engine answers (the process runtime runs "
                f"functions with the service's own Python), or {kernel_image.ENV_SWITCH}=0"
            )
        state = f"built in {built['seconds']:.1f} s" if built["built"] else "up to date"
        return Notice(
            f"{built['ref']}: {state}; Python {built['python']}, {len(built['packages'])} distributions"
        )

    def _cmd_dashboard(self, args: argparse.Namespace) -> Any:
        from ..widgets.dashboard import Dashboard

        return Dashboard(self.get_client(), interval=args.interval)

    # -- cell commands ------------------------------------------------------------------------------

    @staticmethod
    def _actor_cell_parser() -> MagicParser:
        p = MagicParser(prog="%%abaco actor", add_help=True)
        p.add_argument("name", help="actor name (re-running the cell updates that actor)")
        p.add_argument("--stateful", action="store_true")
        p.add_argument("--handler", help="the function to call (default: handler, or the only function)")
        p.add_argument("-e", "--env", action="append", metavar="KEY=VALUE")
        p.add_argument("--description", "-d", default="")
        p.add_argument("--max-workers", type=int)
        p.add_argument(
            "--image", default=cell_actor.CELL_IMAGE, help="image with the runner (default py3-func)"
        )
        return p

    def _cell_actor(self, args: argparse.Namespace, cell: str) -> Any:
        client = self.get_client()
        handler = cell_actor.handler_name(cell, args.handler)
        env = cell_actor.cell_environment(cell, handler, key_values(args.env, "-e"))
        existing = self.named(args.name, client.actors())
        if len(existing) > 1:
            print(
                f"abaco: {len(existing)} actors are named {args.name!r}; updating the newest, "
                f"{existing[-1]['id']}",
                file=sys.stderr,
            )
        # a token: the handler may call the abaco_nb.actors helpers (update_state, send_message, ...)
        fields: dict[str, Any] = {
            "description": args.description or f"%%abaco actor cell ({handler})",
            "token": True,
        }
        if args.max_workers is not None:
            fields["max_workers"] = args.max_workers
        if existing:
            actor = client.update(
                str(existing[-1]["id"]),
                args.image,
                stateless=not args.stateful,
                default_environment=env,
                **fields,
            )
        else:
            actor = client.register(
                args.image, args.name, stateless=not args.stateful, default_environment=env, **fields
            )
        self._names = (0.0, self._names[1])
        return self._ready(str(actor["id"]))

    @staticmethod
    def _map_parser() -> MagicParser:
        p = MagicParser(prog="%%abaco map", add_help=True)
        p.add_argument("axes", nargs="*", metavar="NAME=VALUES", help="a parameter and a Python expression")
        p.add_argument("--grid", help="a Python expression giving {name: values}")
        p.add_argument("-o", "--out", metavar="VAR", help="also store the Sweep in this variable")
        p.add_argument("--wait", action="store_true", help="block until every point has finished")
        p.add_argument("--image", help="executor image (default: the executor's)")
        p.add_argument("--no-progress", action="store_true", help="no progress widget")
        return p

    def _evaluate(self, expression: str, what: str) -> Any:
        namespace = self.shell.user_ns if self.shell is not None else {}
        try:
            return eval(expression, namespace)  # the user's own expression, in the user's namespace
        except Exception as exc:
            raise MagicError(f"cannot evaluate {what} {expression!r}: {type(exc).__name__}: {exc}") from None

    def executor(self, image: str | None = None) -> Any:
        """The executor ``%%abaco map`` uses: the notebook's own when it made one (the newest live
        ``AbacoExecutor`` on this service, with that image when ``--image`` is given), so the example's
        ``ex.delete()`` cleans up everything; else one of its own, made once per image and deleted
        when the kernel exits."""
        from ..executor import _LIVE, AbacoExecutor

        client = self.get_client()
        own = set(map(id, self._executors.values()))
        theirs = [
            e
            for e in list(_LIVE)
            if id(e) not in own
            and not e.deleted
            and not e._closed
            and e.client.base_url == client.base_url
            and (image is None or e.image == image)
        ]
        if theirs:
            return max(theirs, key=lambda e: e.created)
        current = self._executors.get(image)
        if current is None or current.deleted or current._closed:
            current = self._executors[image] = AbacoExecutor(client=client, image=image)
            atexit.register(_delete_quietly, current)
        return current

    def _cell_map(self, line: str, cell: str) -> sweep.Sweep:
        """``%%abaco map a=range(10) b=[1, 2] --wait``: each value is any Python expression (the line is
        split at ``NAME=`` and options, never inside brackets or strings)."""
        pairs, options = split_assignments(line, MAP_FLAGS, MAP_VALUED)
        if options.get("-h") or options.get("--help"):
            raise HelpRequested(self._map_parser().format_help())
        args = argparse.Namespace(
            grid=options.get("--grid"),
            out=options.get("-o") or options.get("--out"),
            wait=bool(options.get("--wait")),
            image=options.get("--image"),
            no_progress=bool(options.get("--no-progress")),
        )
        if args.out and not str(args.out).isidentifier():
            raise MagicError(f"-o needs a variable name, got {args.out!r}")
        axes: dict[str, Any] = {}
        if args.grid:
            value = self._evaluate(args.grid, "--grid")
            if not isinstance(value, dict):
                raise MagicError("--grid must evaluate to a dict of {name: values}")
            axes.update(value)
        for name, expression in pairs:
            axes[name] = self._evaluate(expression, name)
        if not axes:
            raise MagicError("%%abaco map needs at least one NAME=VALUES (e.g. x=range(10))")
        for name, values in axes.items():
            try:
                axes[name] = list(values)
            except TypeError:
                raise MagicError(
                    f"{name} must be a list or another iterable, got {type(values).__name__}"
                ) from None
        points = sweep.grid(axes)
        namespace = self.shell.user_ns if self.shell is not None else {}
        fn = sweep.point_function(cell, list(axes), namespace)
        executor = self.executor(args.image)
        futures = list(executor.map(fn, [(p,) for p in points], progress=False))  # our own widget below
        progress = None
        if not args.no_progress and not args.wait:
            from IPython.display import display

            from ..page import dashboard_link
            from ..widgets.progress import ExecutorProgress

            link = dashboard_link(executor.client, "dashboard", actor=executor.actor_id)
            progress = ExecutorProgress(futures, description="sweep points", link=link)
            display(progress)
        result = sweep.Sweep(points, futures, progress, executor)
        if args.wait:
            try:
                result.wait()
            except KeyboardInterrupt:
                pass
        if args.out and self.shell is not None:
            self.shell.user_ns[args.out] = result
        return result


def _delete_quietly(executor: Any) -> None:
    """At kernel exit: remove an executor the magic made for itself (nothing else refers to it)."""
    try:
        executor.delete()
    except Exception:
        pass
