"""Which names may enter an execution's environment from outside: the one rule, for every runtime.

Abaco turns a message's query parameters into environment variables, and an actor's
``default_environment`` too. Whoever sends a message (an EXECUTE nonce, someone else's execution) must
not be able to steer the loader, an interpreter or a shell with them — ``LD_PRELOAD``,
``BASH_FUNC_echo%%``, ``PYTHONPATH``, ``PATH`` reach code before the actor's own does — nor to
overwrite the contract's variables (``_abaco_*``, ``MSG``, ``_actor_configs``) or our host paths
(``ABACO_NB_BINARY_DATA`` once made ``get_binary_message()`` read any host file).

A name is accepted when it is a plain identifier (``[A-Za-z_][A-Za-z0-9_]*``) and none of
``REFUSED_NAMES`` / ``REFUSED_PREFIXES``. A refused name is a 400 naming it: nothing is silently
dropped. Pure code; ``Service.send`` applies it to the query, ``parse_registration`` to
``default_environment``, and ``engine.execution_environment`` once more to what is stored (actors
registered before the rule existed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import AbacoError

# Query parameters the service reads itself; they never become variables.
CONTROL_PARAMETERS = frozenset({"message", "token", "x-nonce", "_abaco_synchronous", "_abaco_nb_timeout"})

PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_NAME = 256  # longer names are refused too: no variable of any runtime needs more

# Names a loader, an interpreter or a shell acts on before (or instead of) the actor's code, or that
# decide where programs and files are found.
REFUSED_NAMES = frozenset(
    {
        # shells
        "BASH_ENV", "ENV", "IFS", "PATH", "HOME", "SHELLOPTS", "BASHOPTS", "PS1", "PS2", "PS4",
        "PROMPT_COMMAND", "CDPATH", "GLOBIGNORE", "SHELL", "BASH_XTRACEFD", "HISTFILE", "INPUTRC",
        "TMPDIR", "USER", "LOGNAME",
        # interpreters and runtimes
        "NODE_OPTIONS", "NODE_PATH", "RUBYOPT", "RUBYLIB", "PERLLIB", "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "R_PROFILE", "R_PROFILE_USER", "R_ENVIRON",
        "R_ENVIRON_USER", "R_LIBS", "R_LIBS_USER", "TCLLIBPATH", "LUA_PATH", "LUA_CPATH", "LUA_INIT",
        "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "EDITOR", "VISUAL", "PAGER",
        # the C library
        "GCONV_PATH", "HOSTALIASES", "LOCALDOMAIN", "RES_OPTIONS", "NLSPATH", "LOCPATH",
        "GETCONF_DIR", "TZDIR", "MALLOC_CHECK_", "MALLOC_TRACE", "RESOLV_HOST_CONF",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "OPENSSL_CONF", "OPENSSL_ENGINES",
        # the contract's own
        "MSG", "_actor_configs",
    }
)  # fmt: skip
REFUSED_PREFIXES = (
    "LD_",
    "DYLD_",
    "PYTHON",
    "BASH_FUNC_",
    "PERL5",
    "PERL_",
    "GLIBC_",
    "MALLOC_",
    "NODE_",
    "RUBY",
    "_abaco_",
    "ABACO_NB_",
)


# Our settings an actor's owner may put in ``default_environment`` (the function runner reads them: a
# ``%%abaco actor`` cell's handler, the result size limit). Never from a query, and a nonce's PUT keeps
# them (``privilege``): they decide what runs.
ACTOR_SETTINGS = frozenset({"ABACO_NB_HANDLER", "ABACO_NB_HANDLER_SOURCE", "ABACO_NB_MAX_RESULT_BYTES"})


# Contract names a message may set (the executor does): what a warm container's zygote imports for the
# actor's next executions, inside that actor's own container (never on the host: runtimes/warm.py).
MESSAGE_SETTINGS = frozenset({"_abaco_nb_preload"})


def refusal(name: str, *, settings: bool = False) -> str | None:
    """Why ``name`` may not be an execution's variable, or None when it may. ``settings``: the
    registration's ``default_environment``, where ``ACTOR_SETTINGS`` are allowed too."""
    if (settings and name in ACTOR_SETTINGS) or name in MESSAGE_SETTINGS:
        return None
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if not PLAIN_NAME.match(name):
        return "is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"
    if name in REFUSED_NAMES or name.startswith(REFUSED_PREFIXES):
        if name.startswith(("_abaco_", "ABACO_NB_")) or name in ("MSG", "_actor_configs"):
            return "is set by the service (the execution contract)"
        return "is acted on by the loader, an interpreter or a shell"
    return None


def allowed(name: str, *, settings: bool = False) -> bool:
    return refusal(name, settings=settings) is None


def _check_value(value: str, what: str) -> None:
    if "\0" in value:
        raise AbacoError(f"Invalid {what}: its value contains a NUL character.")


def from_query(query: Mapping[str, list[str]]) -> dict[str, str]:
    """A message's query parameters as variables (the last value of each), control parameters aside.
    A refused name is a 400 naming the parameter."""
    env: dict[str, str] = {}
    for name, values in query.items():
        if name in CONTROL_PARAMETERS:
            continue
        why = refusal(name)
        if why is not None:
            raise AbacoError(
                f"Invalid query parameter {name[:80]!r}: it {why}, so it cannot become an "
                "environment variable of the execution."
            )
        value = values[-1] if values else ""
        _check_value(value, f"query parameter {name!r}")
        env[name] = value
    return env


def check_default_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``default_environment`` at registration: the same rule, naming the variable."""
    for name, value in env.items():
        why = refusal(name, settings=True)
        if why is not None:
            raise AbacoError(f"Invalid default_environment: the name {name[:80]!r} {why}.")
        _check_value(value, f"default_environment {name!r}")
    return dict(env)


def only_allowed(env: Mapping[str, str], *, settings: bool = False) -> dict[str, str]:
    """Stored variables that pass the rule (data from before it existed is dropped, not run)."""
    return {k: v for k, v in env.items() if allowed(k, settings=settings) and "\0" not in v}
