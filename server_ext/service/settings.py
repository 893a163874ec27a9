"""Settings of one service instance, with the defaults a single-user notebook machine wants.

Declared once: every field of :class:`ServiceConfig` made with :func:`setting` is a setting, with its
type (the annotation), default and help. ``c.AbacoApp`` traits (``app.py``) and the ``abaco-nb serve``
flags (``cli.py``) are generated from :func:`settings`, so the three cannot drift (a test checks that
every setting is in all three). A flag may have a shorter name and its own parsing (``--db``,
``--cpus`` in CPUs, ``--mem-limit -1`` for none); everything else follows the field.
"""

from __future__ import annotations

import getpass
import os
import tempfile
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


def default_data_dir() -> str:
    """Where the database and run files live: Jupyter's data dir, without importing Jupyter."""
    base = os.environ.get("JUPYTER_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "jupyter"
    )
    return os.path.join(base, "abaco-nb")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "abaco"


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    choices: tuple[str, ...] = (),
    flag: str = "",
    parse: Callable[[str], Any] | None = None,
    flag_help: str = "",
) -> Any:
    """A ServiceConfig field that is a setting. ``factory``: a default computed at run time (the
    trait's and the flag's default is then empty, meaning "computed"). ``flag``/``parse``/``flag_help``:
    the CLI flag when it is not ``--field-name`` taking the field's type."""
    meta = {"help": help, "choices": choices, "flag": flag, "parse": parse, "flag_help": flag_help}
    if factory is not None:
        return field(default_factory=factory, metadata={**meta, "computed": True})
    return field(default=default, metadata=meta)


def _cpus(text: str) -> int | None:
    """``--cpus 1.5``: CPUs, as Docker's nano-CPUs; 0 or less: no limit."""
    cpus = float(text)
    return None if cpus <= 0 else int(cpus * 1_000_000_000)


def _mem_limit(text: str) -> str | None:
    return None if text == "-1" else text


@dataclass
class ServiceConfig:
    """Everything a Service needs to know; ``abaco-nb serve`` flags and ``c.AbacoApp`` traits map here."""

    db_path: str = setting(
        factory=lambda: os.path.join(default_data_dir(), "abaco.db"),
        help="SQLite database of the service (default: abaco.db under the Jupyter data dir's abaco-nb/).",
        flag="--db",
    )
    run_dir: str = setting(
        "", "Sockets and message files, 0700 and locked (default: a fresh private temp dir, removed on exit)."
    )
    runtime: str = setting(
        "auto",
        "Where executions run: docker, process (local subprocesses), swarm (jobs on a Docker Swarm, "
        "docs/swarm.md), or auto (docker when an engine answers).",
        choices=("auto", "docker", "process", "swarm"),
    )
    max_run_time: int = setting(12 * 3600, "Seconds an execution may run; 0 or less means unlimited.")
    default_mem_limit: str | None = setting(
        "2g",
        "Memory limit of an execution unless the actor asks for another (Docker syntax, e.g. '2g').",
        flag="--mem-limit",
        parse=_mem_limit,
        flag_help="default memory limit of an execution, e.g. 512m (default 2g; -1: none)",
    )
    default_max_cpus: int | None = setting(
        1_000_000_000,
        "CPU limit of an execution in nano-CPUs (1000000000 = one CPU).",
        flag="--cpus",
        parse=_cpus,
        flag_help="default CPUs of an execution (default 1; 0: no limit)",
    )
    max_workers_per_actor: int = setting(6, "Most workers one stateless actor may have.")
    worker_idle_seconds: float = setting(
        60.0, "Extra workers of a stateless actor stop after this many idle seconds."
    )
    log_ex: int = setting(43200, "Seconds logs are kept unless an actor asks (Abaco's default: 12 h).")
    log_ex_limit: int = setting(86400, "The longest log expiry an actor may ask for, in seconds.")
    results_ttl: int = setting(24 * 3600, "Seconds results are kept after they are written.")
    max_body_bytes: int = setting(256 * 1024 * 1024, "Largest request body; larger ones get 413.")
    container_network: bool = setting(False, "Give actor containers a network (off by default).")
    sync_timeout: float = setting(300.0, "Seconds a synchronous message may block its request.")
    executor_idle_seconds: float = setting(12 * 3600.0, "Idle executor actors are removed after this.")
    allow_privileged: bool = setting(
        False,
        "Accept privileged actors from the service token: they get the Docker socket, root on the host. "
        "Off by default.",
    )
    cron_interval: float = setting(50.0, "Seconds between cron passes (Abaco's 50).")
    warm_idle_seconds: float = setting(300.0, "Idle warm containers (docker runtime) stop after this.")
    # the swarm runtime (docs/swarm.md)
    swarm_registry: str = setting(
        "", "Swarm runtime: HOST:PORT of the registry the nodes pull abaco-nb/... images from."
    )
    swarm_callback: str = setting(
        "",
        "Swarm runtime: HOST:PORT the node agents reach the service at (default: the manager's swarm address).",
    )
    swarm_agent_port: int = setting(7781, "Swarm runtime: the agents' TCP port on every node's host network.")
    swarm_agent_dir: str = setting(
        "/run/abaco-nb-agent", "Swarm runtime: a directory that exists on every node, for execution sockets."
    )
    swarm_agent_image: str = setting(
        "", "Swarm runtime: image of the agent (default: <registry>/abaco-nb/py3-func)."
    )
    swarm_node_docker_socket: str = setting(
        "/var/run/docker.sock",
        "Swarm runtime: path of the Docker socket on the nodes (the agent reads exit states).",
    )
    executions_kept_per_actor: int = setting(
        1000, "Finished executions kept per actor, newest first; older ones are pruned (0: no count limit)."
    )
    executions_max_age: float = setting(
        30 * 24 * 3600.0, "Seconds a finished execution is kept (default 30 days; 0: no age limit)."
    )
    max_connections: int = setting(
        2048,
        "Open HTTP connections at most; beyond it the one waiting longest for its headers is closed "
        "(bounded by the descriptor limit).",
    )
    execution_uids: str = setting(
        "auto",
        "Process runtime as root: run each execution as a uid of its own (runtimes/sandbox.py). auto: when "
        "such a uid can run this Python; on: always; off: as the service's user (no boundary).",
        choices=("auto", "on", "off"),
    )
    execution_uid_base: int = setting(1_900_000_000, "First uid of the range executions run as.")
    execution_uid_count: int = setting(65536, "How many uids the range has (one per running execution).")
    default_token: bool = setting(
        False,
        "Actors registered without `token` get an _abaco_access_token (Abaco's default: they do not).",
    )
    username: str = field(default_factory=_user)  # who owns what the service token does; not a setting
    run_dir_is_temporary: bool = False  # set when resolved_run_dir() made one: the Service removes it
    # Many users (README "Many users / JupyterHub"): `abaco-nb serve --users` or `--hub` only, never a
    # personal Jupyter server, so not settings. Off: one user, an admin, as before.
    multi_user: bool = False  # users from `abaco-nb users add`, or JupyterHub's; Abaco's permissions
    privileged_users: list[str] = field(default_factory=list)  # may register privileged actors (and admins)

    def resolved_run_dir(self) -> str:
        """The run directory. None configured: a fresh private one (``abaco-nb-run-*`` in the temp dir,
        0700), made on first use and kept in ``run_dir``, so two services never share one (a common
        directory beside their databases once let one take over the other's sockets)."""
        if not self.run_dir:
            self.run_dir = tempfile.mkdtemp(prefix="abaco-nb-run-")
            self.run_dir_is_temporary = True
        return self.run_dir


@dataclass(frozen=True)
class Setting:
    """One setting as the trait and flag generators read it."""

    name: str
    kind: type  # bool, int, float or str
    nullable: bool  # None is a value (no limit)
    default: Any  # None when computed at run time (``computed``)
    computed: bool
    help: str
    choices: tuple[str, ...]
    flag: str
    parse: Callable[[str], Any]
    flag_help: str


def settings() -> list[Setting]:
    """Every setting, in declaration order."""
    hints = typing.get_type_hints(ServiceConfig)
    found = []
    for f in fields(ServiceConfig):
        if "help" not in f.metadata:
            continue
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        kind = args[0] if args else hint
        meta = f.metadata
        found.append(
            Setting(
                name=f.name,
                kind=kind,
                nullable=bool(args),
                default=None if meta.get("computed") else f.default,
                computed=bool(meta.get("computed")),
                help=meta["help"],
                choices=meta["choices"],
                flag=meta["flag"] or "--" + f.name.replace("_", "-"),
                parse=meta["parse"] or kind,
                flag_help=meta["flag_help"],
            )
        )
    return found


def from_values(values: dict[str, Any]) -> ServiceConfig:
    """A ServiceConfig from setting values; a computed setting given as empty keeps its default."""
    computed = {s.name for s in settings() if s.computed}
    return ServiceConfig(**{k: v for k, v in values.items() if not (k in computed and not v)})
