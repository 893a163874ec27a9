"""Actors, executions and workers, their validation and their display forms.

Pure code: parsing a registration body, checking every field and producing the dict that Abaco shows.
Registration follows Abaco's RequestParser (reference/abaco-api.md §1.4): ``image`` required,
``stateless`` defaults to true, booleans take Abaco's vocabulary, a PUT is a full replacement that keeps
``name`` and ``owner``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from . import environment
from .errors import AbacoError
from .ids import display_time

# Actor statuses (§1.5) and execution statuses (§1.6).
SUBMITTED, READY, ERROR, SHUTTING_DOWN = "SUBMITTED", "READY", "ERROR", "SHUTTING_DOWN"
RUNNING, COMPLETE = "RUNNING", "COMPLETE"
EXECUTION_TERMINAL = (COMPLETE, ERROR)
WORKER_READY, WORKER_BUSY = "READY", "BUSY"

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}

_SNAKE_RE = re.compile(r"_([a-z])")
_CAMEL_RE = re.compile(r"([A-Z])")


def to_camel(name: str) -> str:
    """``default_environment`` -> ``defaultEnvironment``; leading underscores are kept (``_links``)."""
    if name.startswith("_"):
        return name
    return _SNAKE_RE.sub(lambda m: m.group(1).upper(), name)


def to_snake(name: str) -> str:
    """``defaultEnvironment`` -> ``default_environment``."""
    return _CAMEL_RE.sub(lambda m: "_" + m.group(1).lower(), name)


def parse_bool(value: Any, field_name: str) -> bool:
    """Abaco's ``inputs.boolean``: true/false/yes/no/1/0, as JSON or as form text; else 400."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise AbacoError(f"Invalid {field_name}: {value!r} is not a boolean (use true or false).")


def parse_int(value: Any, field_name: str, minimum: int | None = None) -> int:
    """An integer from JSON or form text; else 400 naming the field."""
    if isinstance(value, bool):
        raise AbacoError(f"Invalid {field_name}: {value!r} is not an integer.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AbacoError(f"Invalid {field_name}: {value!r} is not an integer.") from None
    if minimum is not None and number < minimum:
        raise AbacoError(f"Invalid {field_name}: must be at least {minimum}, got {number}.")
    return number


def parse_str(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise AbacoError(f"Invalid {field_name}: expected a string, got {type(value).__name__}.")
    return value


MAX_WORKERS = 100  # the most workers one actor may ask for
_MEM_RE = re.compile(r"^\d+(\.\d+)?[bkmgBKMG]?$")
_HINT_FORBIDDEN = set("\"'{}[]")


@dataclass
class Registration:
    """The user-settable part of an actor, as validated from a POST or PUT body."""

    image: str
    name: str | None = None
    description: str = ""
    default_environment: dict[str, str] = field(default_factory=dict)
    stateless: bool = True
    privileged: bool = False
    use_container_uid: bool = False
    run_as_executor: bool = False
    token: bool = False  # Abaco's default; a deployment may change it (ServiceConfig.default_token)
    max_workers: int | None = None
    mem_limit: str | None = None
    max_cpus: int | None = None
    hints: list[str] = field(default_factory=list)
    link: str = ""
    webhook: str = ""
    queue: str = "default"
    log_ex: int | None = None
    cron_schedule: str | None = None
    cron_on: bool = False
    max_run_time: int | None = None  # ours: seconds; None = the service default


_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # a swarm node label value

# Body keys a registration reads; both spellings are accepted whatever the case mode.
_REGISTRATION_FIELDS = {f for f in Registration.__dataclass_fields__}
_IGNORED_FIELDS = {
    "force",
    "status",
    "status_message",
    "state",
    "executions",
    "type",
    "tasdir",
    "uid",
    "gid",
    "cron_next_ex",
    "mounts",
    "owner",
    "tenant",
    "api_server",
    "revision",
    "id",
    "db_id",
    "create_time",
    "last_update_time",
    "_links",
}


def normalise_keys(body: dict[str, Any]) -> dict[str, Any]:
    """Accept snake_case and camelCase field names alike (``defaultEnvironment`` == ``default_environment``)."""
    return {to_snake(k) if not k.startswith("_") else k: v for k, v in body.items()}


def parse_registration(
    body: Any, *, is_update: bool = False, queues: bool = False, default_token: bool = False
) -> Registration:
    """Validate a registration body; every refusal is a 400 that names the field. ``default_token``:
    what an actor sent without ``token`` gets (the deployment's setting; Abaco's default is false)."""
    if not isinstance(body, dict):
        raise AbacoError("Invalid actor description: the body must be a JSON object or a form.")
    data = normalise_keys(body)
    unknown = set(data) - _REGISTRATION_FIELDS - _IGNORED_FIELDS
    if unknown:
        raise AbacoError(f"Invalid actor description: unknown field(s) {', '.join(sorted(unknown))}.")
    image = data.get("image")
    if image is None or (isinstance(image, str) and not image.strip()):
        raise AbacoError("Invalid actor description: image is required (the Docker image to run).")
    reg = Registration(image=parse_str(image, "image").strip(), token=default_token)
    if data.get("name") is not None:
        reg.name = parse_str(data["name"], "name")
    if data.get("description") is not None:
        reg.description = parse_str(data["description"], "description")
    env = data.get("default_environment")
    if env is not None:
        if not isinstance(env, dict):
            raise AbacoError("Invalid default_environment: expected a JSON object of names to values.")
        reg.default_environment = environment.check_default_environment(
            {str(k): v if isinstance(v, str) else str(v) for k, v in env.items()}
        )
    for name in ("stateless", "privileged", "use_container_uid", "run_as_executor", "token", "cron_on"):
        if data.get(name) is not None:
            setattr(reg, name, parse_bool(data[name], name))
    if reg.use_container_uid and reg.run_as_executor:
        raise AbacoError("Cannot set both use_container_uid and run_as_executor as true")
    if data.get("max_workers") is not None:
        reg.max_workers = parse_int(data["max_workers"], "max_workers", minimum=1)
        if reg.max_workers > MAX_WORKERS:  # each worker is a thread of the service
            raise AbacoError(f"Invalid max_workers: at most {MAX_WORKERS}, got {reg.max_workers}.")
        if not reg.stateless and reg.max_workers > 1:
            raise AbacoError("Invalid actor description: stateful actors can only have 1 worker.")
    if data.get("mem_limit") is not None:
        mem = str(data["mem_limit"]).strip()
        if mem != "-1" and not _MEM_RE.match(mem):
            raise AbacoError(f"Invalid mem_limit: {mem!r} is not a Docker memory size such as 512m or 2g.")
        reg.mem_limit = mem
    if data.get("max_cpus") is not None:
        reg.max_cpus = parse_int(data["max_cpus"], "max_cpus", minimum=-1)
    hints = data.get("hints")
    if hints is not None:
        if isinstance(hints, str):
            hints = [h.strip() for h in hints.split(",") if h.strip()]
        if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
            raise AbacoError("Invalid hints: expected a list of strings.")
        if any(set(h) & _HINT_FORBIDDEN for h in hints):
            raise AbacoError("Invalid hints: hints may not contain quotes, braces or brackets.")
        reg.hints = hints
    for name in ("link", "webhook", "queue"):
        if data.get(name) is not None:
            setattr(reg, name, parse_str(data[name], name))
    if reg.queue != "default" and not queues:
        raise AbacoError(f"Invalid queue: {reg.queue!r}; this service has only the 'default' queue.")
    if queues and not _QUEUE_NAME.match(reg.queue):
        raise AbacoError(f"Invalid queue: {reg.queue!r}; a queue name is letters, digits, '.', '_' or '-'.")
    if data.get("log_ex") is not None:
        reg.log_ex = parse_int(data["log_ex"], "log_ex", minimum=1)
    if data.get("cron_schedule") is not None:
        reg.cron_schedule = parse_str(data["cron_schedule"], "cron_schedule")
    if data.get("max_run_time") is not None:
        reg.max_run_time = parse_int(data["max_run_time"], "max_run_time", minimum=1)
    return reg


@dataclass
class Actor:
    """A registered actor as stored."""

    id: str
    owner: str
    reg: Registration
    status: str = SUBMITTED
    status_message: str = ""
    state: Any = field(default_factory=dict)
    revision: int = 1
    create_time: float = 0.0
    last_update_time: float = 0.0
    cron_next_ex: str | None = None  # "YYYY-MM-DD HH" (UTC) of the next cron run; set by automation

    def display(self, api_server: str) -> dict[str, Any]:
        """Abaco's Actor object (§1.5); ``db_id``/``tenant``/``api_server`` are not shown."""
        reg = asdict(self.reg)
        base = f"{api_server}/actors/{self.id}"
        shown: dict[str, Any] = {
            "_links": {
                "self": base,
                "owner": f"{api_server}/profiles/{self.owner}",
                "executions": f"{base}/executions",
            },
            "id": self.id,
            "owner": self.owner,
            "status": self.status,
            "status_message": self.status_message,
            "state": self.state if not self.reg.stateless else {},
            **reg,
            "token": "true" if self.reg.token else "false",
            "type": "none",
            "mounts": [],
            "revision": self.revision,
            "uid": None,
            "gid": None,
            "tasdir": None,
            "cron_next_ex": self.cron_next_ex,
            "create_time": display_time(self.create_time),
            "last_update_time": display_time(self.last_update_time),
        }
        return shown


@dataclass
class Execution:
    """One message's execution as stored (§1.6)."""

    id: str
    actor_id: str
    executor: str
    status: str
    message_received_time: float
    content_type: str  # str | application/json | application/octet-stream
    message: Any = None  # the str or JSON value; None for binary
    environment: dict[str, str] = field(default_factory=dict)  # query-string overrides
    revision: int = 1
    worker_id: str | None = None
    start_time: float | None = None
    finish_time: float | None = None
    runtime: int = 0
    cpu: int = 0
    io: int = 0
    exit_code: int | str | None = None
    final_state: dict[str, Any] | None = None
    status_message: str = ""
    runtime_ref: str | None = None  # container id / pid, for recovery after a crash
    max_run_time: int | None = None
    node: str | None = None  # the swarm node that ran it (swarm runtime only)

    def display(self, api_server: str) -> dict[str, Any]:
        base = f"{api_server}/actors/{self.actor_id}/executions/{self.id}"
        return {
            "_links": {
                "self": base,
                "owner": f"{api_server}/profiles/{self.executor}",
                "logs": f"{base}/logs",
            },
            "id": self.id,
            "actor_id": self.actor_id,
            "api_server": api_server,
            "executor": self.executor,
            "worker_id": self.worker_id,
            "status": self.status,
            "status_message": self.status_message,
            "message_received_time": display_time(self.message_received_time),
            "start_time": display_time(self.start_time),
            "finish_time": display_time(self.finish_time),
            "runtime": self.runtime,
            "cpu": self.cpu,
            "io": self.io,
            "exit_code": self.exit_code,
            "final_state": self.final_state,
            **({"node": self.node} if self.node else {}),
        }

    def summary(self) -> dict[str, Any]:
        """The short form listed in an actor's executions summary."""
        return {
            "id": self.id,
            "status": self.status,
            "message_received_time": display_time(self.message_received_time),
            "start_time": display_time(self.start_time),
            "finish_time": display_time(self.finish_time),
        }


@dataclass
class Worker:
    """A worker slot of an actor: runs one execution at a time."""

    id: str
    actor_id: str
    status: str
    image: str
    create_time: float
    last_execution_time: float | None = None
    current_execution: str | None = None
    cid: str = ""  # a runtime's long-lived container for this worker, when it has one

    @property
    def container_id(self) -> str:
        """Abaco's ``cid`` (its worker's container) is never empty. A runtime that keeps a container per
        worker records it in ``cid``; otherwise each execution gets its own container or process and
        the worker is a slot of the service, so ``cid`` is the slot's stable name, ``abaco-nb-<id>``
        (each execution's container carries the worker id in a label, so ``cid`` finds them)."""
        return self.cid or f"abaco-nb-{self.id}"

    def display(self, location: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "actor_id": self.actor_id,
            "status": self.status,
            "image": self.image,
            "location": location,
            "cid": self.container_id,
            "ch_name": f"worker_{self.id}",
            "tenant": "local",
            "host_id": "0",
            "host_ip": "127.0.0.1",
            "create_time": display_time(self.create_time),
            "last_execution_time": display_time(self.last_execution_time),
            "last_health_check_time": display_time(self.create_time),
        }
