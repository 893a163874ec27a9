"""The one interface every runtime implements.

The dispatcher drives an execution through a runtime without knowing whether it is a Docker
container or a local process: ``check_image`` once per actor revision, then per execution
``start`` -> ``wait`` (repeatedly, with a short timeout, so the dispatcher can stream logs, honour a
force-quit and enforce ``max_run_time``) -> ``logs`` -> ``remove``.  After a crash of the service,
``find_leftovers`` lists what an earlier run left behind so the service can re-attach or clean up.

Container contract (DESIGN §5): inside a container the binary message is at ``/_abaco_binary_data``,
the results socket at ``/_abaco_results.sock`` and the service's API socket at ``/_abaco_api.sock``.
A local process cannot have those absolute paths, so the process runtime passes the host paths in the
environment variables named below; ``abaco_nb.actors`` honours both.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

# In-container paths (Abaco's, hard-coded in agavepy.actors).
BINARY_DATA_PATH = "/_abaco_binary_data"
RESULTS_SOCKET_PATH = "/_abaco_results.sock"
API_SOCKET_PATH = "/_abaco_api.sock"

# Environment variables that point a *process* runtime execution at the host paths instead.
ENV_BINARY_DATA = "ABACO_NB_BINARY_DATA"
ENV_RESULTS_SOCKET = "ABACO_NB_RESULTS_SOCK"

# Labels put on every container, so a restarted service can find what belongs to it.
LABEL_SERVICE = "abaco-nb.service"
LABEL_ACTOR = "abaco-nb.actor_id"
LABEL_EXECUTION = "abaco-nb.execution_id"
LABEL_WORKER = "abaco-nb.worker_id"


# Actor hints that choose how the docker runtime runs an actor's executions (docs/executor.md).
HINT_EXECUTOR = "abaco_nb_executor"  # an AbacoExecutor's actor: warm containers by default
HINT_WARM = "abaco_nb_warm"  # a reactor asking for warm containers
HINT_FRESH = "abaco_nb_fresh"  # a fresh container per execution, whatever else the hints say


def wants_warm(hints: list[str] | None) -> bool:
    """Whether an actor's executions may share a warm container (one forked process each) instead of
    Abaco's fresh container per message: executor actors and reactors that opt in, unless opted out."""
    names = set(hints or ())
    return HINT_FRESH not in names and bool(names & {HINT_EXECUTOR, HINT_WARM})


class RuntimeFailure(Exception):
    """A runtime could not do what was asked; the message is shown to the user as is."""


class NotStarted(RuntimeFailure):
    """The runtime refused before anything of the execution started (no room for its files, say):
    the message has not run and can run later."""


# The modules an executor's function needs, comma-separated (top-level names): a warm container's zygote
# imports them once, so the children forked after carry them (runtimes/warm.py).
ENV_PRELOAD = "_abaco_nb_preload"


def preload_modules(environment: dict[str, str]) -> list[str]:
    """The module names an execution's ``ENV_PRELOAD`` asks for (at most 64, identifiers only; the
    zygote checks them again)."""
    names = [n.strip() for n in str(environment.get(ENV_PRELOAD) or "").split(",")]
    return [n for n in names if n.isidentifier()][:64]


# The keys of Docker's container State that an execution's ``final_state`` carries, on every runtime.
STATE_KEYS = (
    "Status",
    "Running",
    "Paused",
    "Restarting",
    "OOMKilled",
    "Dead",
    "Pid",
    "ExitCode",
    "Error",
    "StartedAt",
    "FinishedAt",
)


def iso_time(ts: float) -> str:
    """A Unix time as Docker writes ``StartedAt``/``FinishedAt`` (UTC, nanosecond digits)."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def exited_state(
    code: int | None,
    started_at: str | None = None,
    finished_at: str | None = None,
    error: str = "",
    oom: bool = False,
) -> dict[str, Any]:
    """The ``final_state`` of an execution that ended outside a container of its own (a process, a
    warm container's child, a swarm task), in the shape of Docker's State: clients read one format
    whatever the runtime."""
    return {
        "Status": "exited",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": oom,
        "Dead": False,
        "Pid": 0,
        "ExitCode": code,
        "Error": error,
        "StartedAt": started_at,
        "FinishedAt": finished_at,
    }


class RuntimeUnreachable(RuntimeFailure):
    """The runtime did not answer (the Docker engine is down or its socket is cut). Nothing is known
    about what was asked: the dispatcher keeps the execution and asks again when it answers, instead
    of deciding that it failed."""


@dataclass
class ImageCheck:
    """Outcome of making an image available: ``ok`` or a status message that says what to do."""

    ok: bool
    message: str = ""


@dataclass
class RunSpec:
    """Everything a runtime needs to start one execution."""

    execution_id: str
    actor_id: str
    worker_id: str
    image: str
    environment: dict[str, str]
    service_id: str
    binary_path: str | None = None  # host path of a regular file holding the binary message
    results_socket: str | None = None  # host path of the bound SOCK_DGRAM results socket
    api_socket: str | None = None  # host path of the service's HTTP unix socket
    mem_limit: str | None = None  # Docker memory string, e.g. "512m"; None = runtime default
    max_cpus: int | None = None  # nano-CPUs; None = runtime default
    network: bool = False  # containers run with networking off unless configured
    privileged: bool = False
    mounts: list[dict[str, str]] = field(default_factory=list)  # {host_path, container_path, mode}
    user: str | None = None
    warm: bool = False  # may run in a warm container (runtimes that have none ignore it): see wants_warm
    queue: str | None = None  # Abaco's queue: on the swarm runtime, nodes labelled abaco-nb.queue=<queue>


@dataclass
class ExitInfo:
    """How an execution ended, in Abaco's terms."""

    exit_code: int | str
    final_state: dict[str, Any]
    cpu: int = 0
    io: int = 0


@dataclass
class RunningRef:
    """What a runtime hands back for a started execution, and takes to wait, read logs, stop and remove
    it. ``ref`` is the container id or the process id, as a string."""

    execution_id: str
    ref: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Leftover:
    """Something an earlier run of the service left behind (a container or a process)."""

    execution_id: str
    ref: str
    running: bool
    started: bool = True  # False: created but never started, so the message has not run


class Runtime(Protocol):
    """What the dispatcher needs from a runtime. Methods may block; the dispatcher calls them from
    worker threads, never from the event loop."""

    name: str

    def check_image(self, image: str, pull: bool = False) -> ImageCheck:
        """Make sure the image can run; with ``pull`` fetch it again even when present."""
        ...

    def start(self, spec: RunSpec) -> RunningRef:
        """Start the execution; raise RuntimeFailure with a readable message when it cannot start, and
        RuntimeUnreachable when the runtime did not answer (it may have created it: see
        ``find_leftovers``)."""
        ...

    def wait(self, run: RunningRef, timeout: float) -> ExitInfo | None:
        """Wait up to ``timeout`` seconds; the exit facts when it ended, else None."""
        ...

    def logs(self, run: RunningRef) -> str:
        """Combined stdout and stderr so far (partial while running)."""
        ...

    def stop(self, run: RunningRef, grace: float = 10.0) -> None:
        """Stop a running execution: SIGTERM, then SIGKILL after ``grace`` seconds."""
        ...

    def remove(self, run: RunningRef) -> None:
        """Release everything the execution held (container, temp files). Idempotent."""
        ...

    def find_leftovers(self, service_id: str) -> list[Leftover]:
        """Executions of this service that a previous run (or a start the runtime did not answer)
        started and did not remove, running or not. A ``started`` leftover that is not running
        still counts: it ran. Raise RuntimeUnreachable when the runtime does not answer."""
        ...

    def attach(self, leftover: Leftover) -> RunningRef:
        """A RunningRef for a leftover, so the dispatcher can keep supervising it."""
        ...

    def image_versions(self, image: str) -> dict[str, str] | None:
        """The Python and cloudpickle versions the image runs (``{"python": ..., "cloudpickle": ...}``),
        for the executor's pre-flight check; None when the image declares none or cannot be read."""
        ...

    def release_actor(self, actor_id: str) -> None:
        """The actor was deleted or got a new revision: end what the runtime keeps for it (warm
        containers). Nothing to do for a runtime that keeps nothing."""
        ...

    def reattached(self, run: RunningRef, results_socket: str, api_socket: str | None) -> None:
        """After a restart the dispatcher collects an attached execution's results at ``results_socket``
        and serves its API at ``api_socket`` (the run directory is new at every start). A runtime whose
        executions hold those paths by bind mount cannot follow; the swarm runtime relays there."""
        ...

    def close(self) -> None:
        """The service stops: end what the runtime keeps (the zygote, warm containers)."""
        ...
