"""Warm containers: one long-lived container per busy worker that forks each execution inside.

Why: a fresh container costs ~200 ms on this kind of machine (Docker and containerd; runc alone is
~19 ms), so an executor call that runs in 1 ms cannot afford one container per execution. A warm
container runs the process runtime's zygote program (:mod:`.zygote`) as its PID 1; the service talks
to it over a unix socket in the container's *worker directory* and asks it to fork one child per
execution, as the zygote does on the host. Executor actors (hint ``abaco_nb_executor``) run this way on
Docker; a reactor opts in with the hint ``abaco_nb_warm`` (its image needs a ``python3``; the child then
execs the image's own ENTRYPOINT + CMD), and an executor opts out with ``abaco_nb_fresh``.

The container contract holds per execution, not per container:

- **environment**: the child's environment is the image's ``ENV`` plus the execution's variables (the
  container itself starts with the image's environment only, never an execution's token);
- **/_abaco_binary_data**: a per-container host file bind-mounted read-only; before each execution its
  content is replaced by that execution's binary message (emptied when there is none);
- **/_abaco_results.sock**: a per-container datagram socket bound by the service that relays every
  datagram to the execution's own results socket; it is drained before the exit is reported, so no
  result is lost to the race between the last datagram and the exit;
- **/_abaco_api.sock**: the service's API socket, as for a fresh container;
- **logs**: each child writes stdout and stderr to ``<worker dir>/<execution>.log`` (read from the host);
- **limits**: the container has the execution's memory, CPU and pid limits (containers are pooled by
  the whole shape: image, limits, mounts, user, network, actor), so a child has what a fresh container
  would have less the zygote's ~15 MB;
- **OOM**: a child killed by SIGKILL while the container's memory cgroup counted a new ``oom_kill``
  is reported with ``final_state.OOMKilled`` true, as Docker reports a fresh container;
- **stop, cancel, time limits**: the zygote signals the child's session (SIGTERM, SIGKILL after the
  grace), since only it can see the container's pids;
- **crash of the service**: the zygote exits when its control socket closes, which ends the container
  (PID 1) and everything in it; containers are created with ``auto_remove`` and labelled with the
  service id, and ``find_leftovers`` reports any that are still there so the next start removes them.
  An execution that was running is then ended ERROR by recovery (the executor's ``retries=`` re-runs
  it); warm executions are not re-attached.

What is *not* the same: files a child writes outside the mounts (``/tmp``) stay for the next execution
of the same actor in that container, as in a process pool's worker. Processes a child leaves in its
process group are killed when it exits (the zygote as PID 1 does it), as a fresh container's end would. Containers stop after
``idle_seconds`` without an execution; one spare per shape is started ahead so a new worker does not
wait ~300 ms for its container.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker.errors
import requests

from . import zygote, zygote_main
from .base import (
    API_SOCKET_PATH,
    BINARY_DATA_PATH,
    LABEL_ACTOR,
    LABEL_SERVICE,
    RESULTS_SOCKET_PATH,
    ExitInfo,
    RunningRef,
    RunSpec,
    RuntimeFailure,
    exited_state,
    iso_time,
    preload_modules,
)
from .zygote import SLOT_BYTES, SLOT_NAME, Zygote, ZygoteExit, ZygoteFailed, ZygoteUnavailable, exit_code

# The zygote program and the one module it imports, bound read-only into the container as a package.
PROGRAM_PACKAGE = "abaco_nb_zygote"
PROGRAM_FILES = {
    "__init__.py": os.path.join(os.path.dirname(zygote.__file__), "__init__.py"),
    "zygote.py": zygote.__file__,
    "zygote_main.py": zygote_main.__file__,
}

log = logging.getLogger(__name__)

LABEL_WARM = "abaco-nb.warm"
WORKER_MOUNT = "/_abaco_nb_worker"
PROGRAM_MOUNT = "/_abaco_nb_zygote"
CONTROL = "control.sock"
RELAY = "results.sock"
BINARY = "binary"
MAX_DATAGRAM = 4 * 1024 * 1024
RELAY_SEND_TIMEOUT = 30.0  # seconds a relayed datagram may wait for room at the execution's socket
RETRY_UNSUPPORTED = 60.0  # seconds an image whose warm container failed to start gets fresh containers
FUNC_RUNNER_CMD = ("-m", "abaco_nb.func_runner")

# PID 1 of a warm container: connect to the service's control socket, then serve as the zygote.
LAUNCHER = f"""
import socket, sys
sys.path.insert(0, {PROGRAM_MOUNT!r})
from abaco_nb_zygote import zygote_main
zygote_main.PRELOAD = tuple(m for m in sys.argv[1].split(",") if m)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({WORKER_MOUNT + "/" + CONTROL!r})
sys.exit(zygote_main.main(s.detach()))
"""


class WarmUnavailable(Exception):
    """No warm container can take this execution; the runtime starts a fresh container instead."""


def oom_kills(container_id: str) -> int | None:
    """How many processes the container's memory cgroup has OOM-killed, read on the host (the
    container cannot fake it); None when the cgroup file is not found."""
    candidates = (
        f"/sys/fs/cgroup/memory/docker/{container_id}/memory.oom_control",  # v1, cgroupfs driver
        f"/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope/memory.oom_control",  # v1, systemd
        f"/sys/fs/cgroup/docker/{container_id}/memory.events",  # v2, cgroupfs driver
        f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.events",  # v2, systemd
    )
    for path in candidates:
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


@dataclass
class ImageFacts:
    """What a warm container needs to know of its image (read once per image)."""

    env: dict[str, str]
    argv: list[str]  # ENTRYPOINT + CMD
    workdir: str
    python: str  # the interpreter that runs the zygote
    func: bool  # the image's command is the function runner: fork it, do not exec


def image_facts(config: dict[str, Any]) -> ImageFacts:
    """From ``inspect_image(...)["Config"]``: the environment, command and interpreter of an image."""
    env = dict(e.split("=", 1) for e in (config.get("Env") or []) if "=" in e)
    argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    func = len(argv) >= 3 and tuple(argv[-2:]) == FUNC_RUNNER_CMD
    python = argv[0] if func else "python3"
    return ImageFacts(env, argv, config.get("WorkingDir") or "/", python, func)


class _ContainerProc:
    """The few ``subprocess.Popen`` methods :class:`Zygote` calls on its process, for a container."""

    def __init__(self, api: Any, container_id: str) -> None:
        self.api = api
        self.container_id = container_id

    def wait(self, timeout: float | None = None) -> int:
        try:
            return int(self.api.wait(self.container_id, timeout=timeout).get("StatusCode", -1))
        except docker.errors.NotFound:  # auto-removed once it exited
            return -1
        except requests.exceptions.RequestException as exc:
            raise subprocess.TimeoutExpired("container", timeout or 0) from exc

    def poll(self) -> int | None:
        try:
            state = self.api.inspect_container(self.container_id)["State"]
        except docker.errors.NotFound:
            return -1
        return None if state.get("Running") else int(state.get("ExitCode", -1))

    def kill(self) -> None:
        """Remove the container, and return once it is gone (auto-removal may be under way)."""
        try:
            self.api.remove_container(self.container_id, force=True)
        except docker.errors.APIError:
            pass
        try:
            self.api.wait(self.container_id, timeout=10, condition="removed")
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass


class _Relay:
    """The container's ``/_abaco_results.sock``: datagrams in, forwarded to the current execution's own
    results socket (``target``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.target: str | None = None
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        except OSError:
            pass
        self.sock.bind(path)
        os.chmod(path, 0o777)  # any container uid may send
        self.out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Back-pressure as for a fresh container (a full collector makes the sender wait), but bounded:
        # a collector that stopped reading must not hold the exit report of the execution forever.
        self.out.settimeout(RELAY_SEND_TIMEOUT)
        self.closed = False
        threading.Thread(target=self._run, name=f"warm-relay {path}", daemon=True).start()

    def _forward(self, data: bytes) -> None:
        if self.target and data:
            try:
                self.out.sendto(data, self.target)
            except OSError as exc:
                log.warning("result relay to %s: %s", self.target, exc)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while not self.closed:
            try:
                if poller.poll(1000):
                    self.drain()
            except (OSError, ValueError):  # closed under us
                return

    def drain(self) -> None:
        """Forward what is waiting now. Every receive happens under the lock, so frames keep their order
        whether the thread or :meth:`WarmPool.wait` (once the execution exited) forwards them."""
        with self.lock:
            while not self.closed:
                try:
                    data = self.sock.recv(MAX_DATAGRAM, socket.MSG_DONTWAIT)
                except OSError:
                    return
                self._forward(data)

    def close(self) -> None:
        self.closed = True
        for s in (self.sock, self.out):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class WarmContainer(Zygote):
    """A zygote that lives in a container: started by creating the container, spoken to over the
    control socket in its worker directory. The three methods that touch Docker (``_launch``,
    ``_container_logs``, ``_end``) are the only ones the swarm runtime's warm tasks replace."""

    start_timeout = zygote.START_TIMEOUT  # seconds from creating the container to its zygote's "ready"

    def __init__(
        self, pool: WarmPool, key: tuple[Any, ...], create: dict[str, Any], facts: ImageFacts, wdir: str
    ) -> None:
        super().__init__(wdir, facts.env)
        self.what = "the warm container's zygote"
        self.pool = pool
        self.key = key
        self.create = create
        self.facts = facts
        self.dir = wdir
        self.container_id = ""
        self.started = False
        self.busy = False
        self.retired = False  # its actor was deleted or re-registered: discard after the current execution
        self.last_used = time.monotonic()
        self.relay = _Relay(os.path.join(wdir, RELAY))
        self.binary = os.path.join(wdir, BINARY)

    def _start(self) -> None:
        if self.started:  # started before and ended: a warm container is not restarted
            raise OSError(f"warm container {self.container_id[:12]} ended")
        control = os.path.join(self.dir, CONTROL)
        if os.path.exists(control):
            os.unlink(control)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(control)
        os.chmod(control, 0o777)
        listener.listen(1)
        listener.settimeout(self.start_timeout)
        try:
            proc = self._launch()
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                tail = self._container_logs()
                proc.kill()
                raise OSError(f"the warm container did not start ({exc}){tail}") from exc
        finally:
            listener.close()
            try:
                os.unlink(control)
            except FileNotFoundError:
                pass
        conn.settimeout(zygote.START_TIMEOUT)
        reader = conn.makefile("rb")
        try:
            line = reader.readline()
            hello = json.loads(line) if line else {}
            if hello.get("op") != "ready":
                raise OSError(f"the warm container's zygote did not start{self._container_logs()}")
        except BaseException:
            conn.close()
            proc.kill()
            raise
        conn.settimeout(None)
        self._proc, self._sock, self.pid = proc, conn, int(hello["pid"])
        self._failed_at, self.last_error, self.started = 0.0, "", True
        threading.Thread(
            target=self._read, args=(proc, conn, reader), name=f"warm-{self.container_id[:12]}", daemon=True
        ).start()

    def _launch(self) -> Any:
        """Create and start the container; its process handle (wait, poll, kill) for :class:`Zygote`."""
        api = self.pool.api
        try:
            container = api.create_container(**self.create)
        except docker.errors.APIError as exc:
            raise OSError(f"cannot create a warm container: {exc.explanation or exc}") from exc
        self.container_id = container["Id"]
        proc = _ContainerProc(api, self.container_id)
        try:
            api.start(self.container_id)
        except docker.errors.APIError as exc:
            tail = self._container_logs()
            proc.kill()
            raise OSError(f"the warm container did not start ({exc}){tail}") from exc
        return proc

    def _end(self) -> None:
        """Remove the container (and return once it is gone)."""
        if self.container_id:
            _ContainerProc(self.pool.api, self.container_id).kill()

    def _container_logs(self) -> str:
        try:
            text = self.pool.api.logs(self.container_id, stdout=True, stderr=True).decode("utf-8", "replace")
        except docker.errors.APIError:
            return ""
        return f": {text.strip()[-600:]}" if text.strip() else ""

    def _kill_orphan(self, pid: int) -> None:
        """The children are in the container's pid namespace and die with its PID 1; the host must not
        signal that pid number (it is another process here)."""

    @property
    def alive(self) -> bool:
        """Started and its zygote answering."""
        return self._sock is not None and not self._closed

    @property
    def ended(self) -> bool:
        """Started once and gone since (or closed): never used again."""
        return self._closed or bool(self._failed_at) or (self.started and self._sock is None)

    def discard(self) -> None:
        """End the container (closing the control socket makes the zygote exit; remove to be sure)."""
        self.close()
        self._end()
        self.relay.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class _WarmRun:
    """One execution in a warm container."""

    container: WarmContainer
    execution_id: str
    log_path: str
    started: float
    oom_before: int | None
    pid: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    how: ZygoteExit | None = None
    info: ExitInfo | None = None

    def ended(self, how: ZygoteExit) -> None:
        self.how = how
        self.done.set()


class WarmPool:
    """Warm containers by shape, and the executions running in them (see module docstring)."""

    def __init__(
        self,
        api: Any,
        base_dir: str | None = None,
        idle_seconds: float = 300.0,
        spares: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self._base_dir = base_dir  # made on first use; None: a temporary directory
        self.idle_seconds = idle_seconds
        self.spares = spares
        self.clock = clock
        self._lock = threading.Lock()
        self._containers: list[WarmContainer] = []
        self._runs: dict[str, _WarmRun] = {}
        self._facts: dict[str, ImageFacts] = {}
        self._unsupported: dict[str, tuple[str, float]] = {}  # image -> (why warm containers failed, when)
        self._closed = threading.Event()
        self._reaper: threading.Thread | None = None

    # -- containers -----------------------------------------------------------------------------------

    def facts(self, image: str) -> ImageFacts:
        facts = self._facts.get(image)
        if facts is None:
            try:
                config = self.api.inspect_image(image).get("Config") or {}
            except docker.errors.APIError as exc:
                raise WarmUnavailable(f"cannot inspect {image}: {exc}") from exc
            facts = self._facts[image] = image_facts(config)
        return facts

    @property
    def base_dir(self) -> str:
        """Where worker directories go, made on first use (AF_UNIX paths are limited to 108 bytes)."""
        wanted = self._base_dir
        if wanted is None or len(os.path.join(wanted, "x" * 12, CONTROL)) > 100:
            wanted = self._base_dir = tempfile.mkdtemp(prefix="abnb-warm-")
        os.makedirs(wanted, mode=0o700, exist_ok=True)
        return wanted

    def _new(self, key: tuple[Any, ...], spec: RunSpec, host_config: dict[str, Any]) -> WarmContainer:
        facts = self.facts(spec.image)
        wdir = os.path.join(self.base_dir, uuid.uuid4().hex[:12])
        os.makedirs(wdir)
        os.chmod(wdir, 0o777)  # the container's user, whoever it is, writes its logs here
        binary = os.path.join(wdir, BINARY)
        open(binary, "wb").close()
        os.chmod(binary, 0o644)
        create = {
            "image": spec.image,
            "command": [facts.python, "-c", LAUNCHER, ",".join(zygote_main.PRELOAD) if facts.func else ""],
            "entrypoint": [],
            "environment": {SLOT_NAME: "x" * SLOT_BYTES},
            "labels": {LABEL_SERVICE: spec.service_id, LABEL_ACTOR: spec.actor_id, LABEL_WARM: "1"},
            "host_config": host_config,
            "user": spec.user or None,
            "working_dir": facts.workdir,
            "detach": True,
        }
        container = WarmContainer(self, key, create, facts, wdir)
        host_config["Binds"] = [
            *(host_config.get("Binds") or []),
            f"{wdir}:{WORKER_MOUNT}:rw",
            f"{binary}:{BINARY_DATA_PATH}:ro",
            f"{container.relay.path}:{RESULTS_SOCKET_PATH}:ro",
            *(f"{src}:{PROGRAM_MOUNT}/{PROGRAM_PACKAGE}/{name}:ro" for name, src in PROGRAM_FILES.items()),
        ]
        if spec.api_socket:
            host_config["Binds"].append(f"{spec.api_socket}:{API_SOCKET_PATH}:ro")
        host_config["AutoRemove"] = True
        return container

    def _take(self, key: tuple[Any, ...]) -> WarmContainer | None:
        """An idle container of this shape: a started one, else one still starting (waiting for it is
        shorter than starting another)."""
        with self._lock:
            idle = [
                c for c in self._containers if c.key == key and not c.busy and not c.ended and not c.retired
            ]
            if not idle:
                return None
            chosen = next((c for c in idle if c.alive), idle[0])
            chosen.busy = True
            return chosen

    def acquire(
        self, key: tuple[Any, ...], spec: RunSpec, make_host_config: Callable[[], Any]
    ) -> WarmContainer:
        """An idle started container of this shape, or a new one (started now); then one spare ahead."""
        why, since = self._unsupported.get(spec.image, ("", 0.0))
        if why and self.clock() - since < RETRY_UNSUPPORTED:
            raise WarmUnavailable(why)
        container = self._take(key)
        if container is None:
            container = self._new(key, spec, make_host_config())
            container.busy = True
            with self._lock:
                self._containers.append(container)
        try:
            container._ensure()
        except ZygoteUnavailable as exc:
            self._forget(container)
            self._unsupported[spec.image] = (str(exc), self.clock())
            raise WarmUnavailable(str(exc)) from exc
        self._start_ahead(key, spec, make_host_config)
        self._start_reaper()
        return container

    def _start_ahead(self, key: tuple[Any, ...], spec: RunSpec, make_host_config: Callable[[], Any]) -> None:
        with self._lock:
            idle = sum(1 for c in self._containers if c.key == key and not c.busy)
            if idle >= self.spares or self._closed.is_set():
                return
            spare = self._new(key, spec, make_host_config())
            self._containers.append(spare)
        spare.warm()

    def _forget(self, container: WarmContainer) -> None:
        with self._lock:
            if container in self._containers:
                self._containers.remove(container)
        threading.Thread(target=container.discard, name="warm-discard", daemon=True).start()

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, name="warm-reaper", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        """Stop containers idle longer than ``idle_seconds`` (and those whose zygote died)."""
        interval = max(0.2, min(5.0, self.idle_seconds / 4))
        while not self._closed.wait(interval):
            now = self.clock()
            with self._lock:
                stale = [
                    c
                    for c in self._containers
                    if not c.busy and (now - c.last_used > self.idle_seconds or c.ended)
                ]
            for c in stale:
                self._forget(c)

    def container_ids(self) -> list[str]:
        with self._lock:
            return [c.container_id for c in self._containers if c.container_id]

    def release_actor(self, actor_id: str) -> None:
        """End the actor's idle containers now (busy ones end when their execution is removed)."""
        with self._lock:
            mine = [c for c in self._containers if c.key[0] == actor_id]
            idle = [c for c in mine if not c.busy]
            for c in mine:
                c.retired = True
            for c in idle:
                self._containers.remove(c)
        for c in idle:  # now, so a DELETE leaves no container behind when it returns
            c.discard()

    def close(self) -> None:
        """The service is stopping: end every warm container."""
        self._closed.set()
        with self._lock:
            containers, self._containers = self._containers, []
        for c in containers:
            c.discard()
        if self._base_dir is not None:  # the worker directories and their sockets
            shutil.rmtree(self._base_dir, ignore_errors=True)

    # -- executions -----------------------------------------------------------------------------------

    def start(self, spec: RunSpec, key: tuple[Any, ...], make_host_config: Callable[[], Any]) -> RunningRef:
        """Run the execution in a warm container; WarmUnavailable when it must get a fresh one."""
        facts = self.facts(spec.image)
        env = {**facts.env, **spec.environment}
        if zygote.fresh_start_differs(env, facts.env):
            raise WarmUnavailable("the execution sets interpreter start-up variables")
        container = self.acquire(key, spec, make_host_config)
        env["HOSTNAME"] = container.container_id[:12]
        env.setdefault("HOME", "/root" if not spec.user or spec.user in ("0", "root") else "/")
        try:
            self._load_binary(container, spec.binary_path)
        except OSError as exc:
            self.release(container)
            raise RuntimeFailure(f"cannot hand the binary message to the warm container: {exc}") from exc
        container.relay.target = spec.results_socket
        log_name = f"{spec.execution_id}.log"
        run = _WarmRun(
            container,
            spec.execution_id,
            os.path.join(container.dir, log_name),
            time.time(),
            self._oom_kills(container, before=True),
        )
        self._new_log(run)
        argv = None if container.facts.func else container.facts.argv
        try:
            run.pid = container.spawn(
                spec.execution_id,
                env,
                container.facts.workdir,
                f"{WORKER_MOUNT}/{log_name}",
                None,
                [],
                run.ended,
                argv,
                preload=preload_modules(spec.environment) if container.facts.func else None,
            )
        except ZygoteUnavailable as exc:
            self._forget(container)
            raise WarmUnavailable(str(exc)) from exc
        except ZygoteFailed as exc:  # it may have forked: starting it again could run the message twice
            self._forget(container)
            raise RuntimeFailure(f"The warm container failed while starting the execution: {exc}.") from exc
        with self._lock:
            self._runs[spec.execution_id] = run
        extra = {"warm": True, "log_path": run.log_path, **self._ref_extra(container)}
        return RunningRef(spec.execution_id, container.container_id, extra)

    # -- where the swarm runtime's warm tasks differ (runtimes/swarm_warm.py): files on another machine

    def _ref_extra(self, container: WarmContainer) -> dict[str, Any]:
        return {}

    def _new_log(self, run: _WarmRun) -> None:
        open(run.log_path, "wb").close()
        os.chmod(run.log_path, 0o666)

    def _drop_log(self, run: _WarmRun) -> None:
        try:
            os.unlink(run.log_path)
        except FileNotFoundError:
            pass

    def _oom_kills(self, container: WarmContainer, before: bool) -> int | None:
        """The container's OOM-kill count (``before``: as an execution starts)."""
        return oom_kills(container.container_id)

    def _pid1_oom(self, container: WarmContainer) -> bool:
        """Whether the container itself (its PID 1) was OOM-killed, by its Docker state."""
        try:
            return bool(self.api.inspect_container(container.container_id)["State"].get("OOMKilled"))
        except (docker.errors.APIError, requests.exceptions.RequestException):  # removed, or no Docker
            return False

    def _flush(self, container: WarmContainer) -> None:
        """The execution exited: make its results reach the relay before it is drained."""

    def _load_binary(self, container: WarmContainer, path: str | None) -> None:
        """Replace the content of the bound file in place (the bind mount holds its inode): overwrite
        from the start, then cut the file at the new end. Cutting to 0 first made ext4 free the blocks
        and journal it for every execution (4 ms median, up to 200 ms while the disk was busy); a
        message of the same size (a map's chunks) now costs a page-cache write."""
        with open(container.binary, "r+b") as out:
            if path:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            out.truncate()

    def _run(self, ref: RunningRef) -> _WarmRun:
        with self._lock:
            run = self._runs.get(ref.execution_id)
        if run is None:
            raise RuntimeFailure(f"No warm execution {ref.execution_id}.")
        return run

    def wait(self, ref: RunningRef, timeout: float) -> ExitInfo | None:
        run = self._run(ref)
        if not run.done.wait(max(0.0, timeout)):
            return None
        if run.info is None:
            self._flush(run.container)
            run.container.relay.drain()
            run.info = self._exit_info(run)
        return run.info

    def _exit_info(self, run: _WarmRun) -> ExitInfo:
        how = run.how or ZygoteExit(failure="no exit status")
        oom = False
        if how.failure:  # the zygote (PID 1) died: the container's own state says whether it was OOM
            oom = self._pid1_oom(run.container)
            if not oom:
                raise RuntimeFailure(how.failure)
            code: int = 137
        else:
            code = exit_code(how.status)
            if os.WIFSIGNALED(how.status) and os.WTERMSIG(how.status) == signal.SIGKILL:
                after = self._oom_kills(run.container, before=False)
                oom = after is not None and run.oom_before is not None and after > run.oom_before
        finished = iso_time(how.finished or time.time())
        final_state = exited_state(code, iso_time(run.started), finished, oom=oom)
        return ExitInfo(exit_code=code, final_state=final_state, cpu=how.cpu, io=how.io)

    def logs(self, ref: RunningRef) -> str:
        try:
            with open(ref.extra["log_path"], "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except (FileNotFoundError, KeyError):
            return ""

    def stop(self, ref: RunningRef, grace: float = 10.0) -> None:
        """SIGTERM the execution's session through the zygote, SIGKILL after ``grace`` seconds."""
        with self._lock:
            run = self._runs.get(ref.execution_id)
        if run is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if run.done.is_set():
                return
            if not run.container.signal(ref.execution_id, sig):
                return
            if run.done.wait(wait):
                return
        self._forget(run.container)  # a child that survives SIGKILL: give up the container

    def remove(self, ref: RunningRef) -> None:
        """The execution is over: its log goes, the container is free for the next one."""
        with self._lock:
            run = self._runs.pop(ref.execution_id, None)
        if run is None:
            return
        if not run.done.is_set():
            self.stop(ref, grace=1.0)
        self._drop_log(run)
        self.release(run.container)

    def release(self, container: WarmContainer) -> None:
        container.relay.target = None  # the next execution's message replaces the binary file's content
        container.last_used = self.clock()
        if not container.alive or container.retired:
            self._forget(container)
            return
        with self._lock:
            container.busy = False
