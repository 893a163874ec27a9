"""The zygote: a pre-started Python that forks one process per executor execution.

Why: ``python -m abaco_nb.func_runner`` costs ~20 ms of interpreter start and ~60 ms of imports (``site``
with the editable finders, cloudpickle, the runner) before the first call runs; a fork of a Python that
has already done both costs about 1 ms. The process runtime uses the zygote for the executor image only
(``local:`` commands and ``abaco-nb/test`` keep ``subprocess.Popen``), and falls back to ``Popen`` when
the zygote cannot start or the execution's environment would change how an interpreter starts
(:func:`fresh_start_differs`).

The zygote is started with a fresh interpreter (``python -m server_ext.service.runtimes.zygote FD``),
never forked from the multi-threaded service, so it is single-threaded whenever it forks. It starts in
its own session with the pass-through environment only (never the service's token) plus a reserved
*slot* variable, and exits when its end of the control socket closes (the service stopped or died).

Each child, before running anything: writes its environment marker into the slot (see
:class:`EnvironSlot`), calls ``setsid``, ``chdir``, sends stdin to ``/dev/null`` and stdout/stderr to the
execution's log, replaces ``os.environ`` entirely with the execution's environment, applies the memory
limit as ``RLIMIT_AS``, then runs ``abaco_nb.func_runner.main()`` and exits the way ``sys.exit(main())``
would (non-daemon threads joined, ``atexit`` run, stdio flushed), but without tearing the inherited
interpreter down object by object (that costs ~17 ms, more than the fork saved is worth losing).

Protocol: one JSON object per line over a SOCK_STREAM socketpair (the zygote's end is passed as FD).

- zygote → service ``{"op": "ready", "pid": P}`` once the imports are done;
- service → zygote ``{"op": "spawn", "id": EID, "env": {...}, "cwd": DIR, "log": PATH, "mem": BYTES|null,
  "mark": [NAME, ...]}``;
- zygote → service ``{"op": "spawned", "id": EID, "pid": N}`` or ``{"op": "failed", "id": EID, "error": S}``;
- zygote → service ``{"op": "exited", "id": EID, "pid": N, "status": RAW_WAIT_STATUS, "cpu": NS, "io": BYTES,
  "at": EPOCH}`` when the child ends (``wait4``, so the CPU time is the child's own).

If the zygote dies, its running children lose the only process that can read their exit status: they
are killed (their whole session) and their executions fail with the reason; the next execution starts
a new zygote.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SLOT_NAME = "ABACO_NB_ZYGOTE_SLOT"
SLOT_BYTES = 512
START_TIMEOUT = 15.0  # seconds for a new zygote to import and answer "ready"
SPAWN_TIMEOUT = 10.0  # seconds for a fork to be acknowledged
RETRY_AFTER = 10.0  # seconds of Popen fallback after a zygote failed to start
PRELOAD = ("cloudpickle", "abaco_nb.func_runner", "abaco_nb.actors")

# Variables a fresh interpreter (or the dynamic loader, or libc at start-up) reads once: a zygote child
# inherited the zygote's reading of them, so an execution that sets them differently gets Popen.
_STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "TZ", "HOME", "GLIBC_TUNABLES"})
_STARTUP_PREFIXES = ("PYTHON", "LC_", "LD_", "MALLOC_")


def fresh_start_differs(env: dict[str, str], base: dict[str, str]) -> bool:
    """True when ``env`` differs from the zygote's ``base`` environment in a variable that only takes
    effect when an interpreter starts (``PYTHONPATH``, ``PYTHONHASHSEED``, the locale, ...)."""
    names = {n for n in (*env, *base) if n in _STARTUP_NAMES or n.startswith(_STARTUP_PREFIXES)}
    return any(env.get(n) != base.get(n) for n in names)


def exit_code(status: int) -> int:
    """A raw wait status as the runtime reports it: the exit code, or 128+N for a signal (as a shell)."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


# ---------------------------------------------------------------------------------------------------------
# The environment slot: how a forked child shows its own marker in /proc/PID/environ
# ---------------------------------------------------------------------------------------------------------


class EnvironSlot:
    """``/proc/PID/environ`` shows the environment block a process was *exec'ed* with, whatever
    ``os.environ`` says later, so a forked child would show the zygote's. The service finds its
    processes after a crash by the marker in that block (``ProcessRuntime.find_leftovers``). The zygote
    is started with ``ABACO_NB_ZYGOTE_SLOT=xxx...`` reserved in it; a child overwrites that entry, in its
    own copy of the memory, with its marker entries (NUL-separated, padded with NULs)."""

    def __init__(self, address: int, size: int) -> None:
        self.address = address
        self.size = size

    @classmethod
    def find(cls) -> EnvironSlot:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        env_start = int(fields[47])  # field 50 of proc(5); fields[0] is field 3
        with open("/proc/self/environ", "rb") as f:
            block = f.read()
        entry = SLOT_NAME.encode() + b"="
        at = 0 if block.startswith(entry) else block.find(b"\0" + entry) + 1
        if not block.startswith(entry, at):
            raise OSError(f"{SLOT_NAME} is not in this process's environment block")
        return cls(env_start + at, block.index(b"\0", at) - at)

    @staticmethod
    def render(entries: list[str], size: int) -> bytes | None:
        """The slot's new bytes (``NAME=value`` entries, NUL-padded), or None when they do not fit."""
        data = b"".join(e.encode("utf-8", "surrogateescape") + b"\0" for e in entries)
        return data.ljust(size, b"\0") if len(data) <= size else None

    def write(self, data: bytes) -> None:
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(self.address)
            mem.write(data)

    def check(self) -> None:
        """Prove on the zygote itself that a rewrite shows in /proc/self/environ, then restore it."""
        probe = self.render([f"{SLOT_NAME}_PROBE=1"], self.size)
        assert probe is not None
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            mem.seek(self.address)
            original = mem.read(self.size)
        self.write(probe)
        with open("/proc/self/environ", "rb") as f:
            seen = f"{SLOT_NAME}_PROBE=1".encode() in f.read().split(b"\0")
        self.write(original)
        if not seen:
            raise OSError("rewriting the environment block does not show in /proc/self/environ")


# ---------------------------------------------------------------------------------------------------------
# The zygote process
# ---------------------------------------------------------------------------------------------------------


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _close_inherited_fds() -> None:
    """Close every descriptor above stderr (the control socket, the wake-up pipe, the selector), as
    ``Popen(close_fds=True)`` would."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass


def _wind_down() -> None:
    """What ``sys.exit`` does that matters to the program: join non-daemon threads, run ``atexit``
    handlers, flush stdio; not the object-by-object teardown of the interpreter."""
    import atexit

    shutdown = getattr(sys.modules.get("threading"), "_shutdown", None)
    try:
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _exit_status_of(exc: SystemExit) -> int:
    """``sys.exit(x)`` semantics: None is 0, an int is itself, anything else is printed and is 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(request: dict[str, Any], slot: EnvironSlot, marker: bytes, zygote_pid: int) -> None:
    """Runs in the forked child: become the execution's process, run the function runner, exit."""
    code = 1
    try:
        slot.write(marker)  # first, so a service restarted from here on finds this process
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        os.chdir(request["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        _close_inherited_fds()
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("mem"):
            import resource

            try:
                resource.setrlimit(resource.RLIMIT_AS, (request["mem"], request["mem"]))
            except (OSError, ValueError):
                pass
        if os.getppid() != zygote_pid:  # the zygote died before the service heard of this child
            os._exit(1)
        from abaco_nb import func_runner

        sys.argv = [func_runner.__file__]  # as ``python -m abaco_nb.func_runner`` in this directory
        sys.path[0] = os.getcwd()
        sys.modules["__main__"] = func_runner
        try:
            result = func_runner.main()
            code = result if isinstance(result, int) else _exit_status_of(SystemExit(result))
        except SystemExit as exc:
            code = _exit_status_of(exc)
        except KeyboardInterrupt:  # a fresh interpreter reports it by dying of SIGINT
            sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
            _wind_down()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            os._exit(128 + signal.SIGINT)
        except BaseException:
            sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
            code = 1
    except BaseException as exc:  # the set-up failed: say why in the log when it is open
        try:
            os.write(2, f"abaco-nb zygote: could not start the execution: {exc!r}\n".encode())
        except OSError:
            pass
        os._exit(1)
    _wind_down()
    os._exit(code & 0xFF)


class _ZygoteLoop:
    """The zygote's single-threaded loop: spawn requests in, spawned/exited reports out."""

    def __init__(self, sock: socket.socket, slot: EnvironSlot) -> None:
        self.sock = sock
        self.slot = slot
        self.children: dict[int, str] = {}  # pid -> execution id
        self.pid = os.getpid()

    def spawn(self, request: dict[str, Any]) -> None:
        eid = str(request["id"])
        marker = self.slot.render(
            [f"{n}={request['env'][n]}" for n in request.get("mark", [])], self.slot.size
        )
        if marker is None:
            _send(self.sock, {"op": "failed", "id": eid, "error": "the environment marker is too long"})
            return
        for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
            stream.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            _send(self.sock, {"op": "failed", "id": eid, "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _child(request, self.slot, marker, self.pid)
        self.children[pid] = eid
        _send(self.sock, {"op": "spawned", "id": eid, "pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            eid = self.children.pop(pid, None)
            if eid is not None:
                _send(self.sock, {
                    "op": "exited", "id": eid, "pid": pid, "status": status, "at": time.time(),
                    "cpu": int((usage.ru_utime + usage.ru_stime) * 1e9),
                    "io": int(usage.ru_inblock + usage.ru_oublock) * 512,
                })  # fmt: skip

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        _send(self.sock, {"op": "ready", "pid": self.pid})
        pending: list[bytes] = []  # the start of a request still arriving (an environment can be large)
        while True:
            for key, _ in selector.select():
                if key.fileobj is self.sock:
                    data = self.sock.recv(1 << 20)
                    if not data:
                        return 0  # the service is gone; running children live on in their sessions
                    pending.append(data)
                    if b"\n" not in data:
                        continue
                    *lines, rest = b"".join(pending).split(b"\n")
                    pending = [rest]
                    for line in lines:
                        request = json.loads(line)
                        if request.get("op") == "spawn":
                            self.spawn(request)
                else:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
            self.reap()


def zygote_main(fd: int) -> int:
    """Entry point of the zygote process: check the slot, import, freeze, answer ready, serve."""
    import gc
    import importlib

    sock = socket.socket(fileno=fd)
    slot = EnvironSlot.find()
    slot.check()
    for name in PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()  # children's collections then leave the inherited objects (and their pages) alone
    return _ZygoteLoop(sock, slot).run()


# ---------------------------------------------------------------------------------------------------------
# The service's side
# ---------------------------------------------------------------------------------------------------------


class ZygoteUnavailable(Exception):
    """No zygote could take this execution; the caller starts it with Popen instead."""


class ZygoteFailed(Exception):
    """The zygote died after it may have forked this execution: do not start it a second time."""


@dataclass
class ZygoteExit:
    """How a zygote child ended. ``status`` is the raw wait status; ``failure`` is set (and the rest
    meaningless) when the zygote died before it could tell."""

    status: int = 0
    cpu: int = 0
    io: int = 0
    finished: float = 0.0
    failure: str = ""


@dataclass
class _Spawn:
    on_exit: Callable[[ZygoteExit], None]
    answered: threading.Event
    reply: dict[str, Any] | None = None
    pid: int = 0


class Zygote:
    """The service's side of its zygote: started on first use (or :meth:`warm`), restarted after it
    died, and given up on for ``RETRY_AFTER`` seconds when it fails to start."""

    def __init__(self, work_dir: str, base_env: dict[str, str], python: str = sys.executable) -> None:
        self.work_dir = work_dir
        self.base_env = dict(base_env)
        self.python = python
        self._start_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._spawns: dict[str, _Spawn] = {}
        self._failed_at = 0.0
        self._closed = False
        self.pid = 0
        self.last_error = ""

    # -- life cycle -------------------------------------------------------------------------------------

    def warm(self) -> None:
        """Start the zygote in the background (an executor actor was registered: its first call is near)."""
        threading.Thread(target=self._quietly_ensure, name="zygote-start", daemon=True).start()

    def _quietly_ensure(self) -> None:
        try:
            self._ensure()
        except ZygoteUnavailable:
            pass

    def _ensure(self) -> socket.socket:
        with self._start_lock:
            if self._sock is not None:
                return self._sock
            if self._closed:
                raise ZygoteUnavailable("the runtime is closed")
            if self._failed_at and time.monotonic() - self._failed_at < RETRY_AFTER:
                raise ZygoteUnavailable(self.last_error)
            try:
                self._start()
            except (OSError, ValueError, TimeoutError) as exc:
                self._failed_at = time.monotonic()
                self.last_error = f"the zygote did not start: {exc}"
                raise ZygoteUnavailable(self.last_error) from exc
            assert self._sock is not None
            return self._sock

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**self.base_env, SLOT_NAME: "x" * SLOT_BYTES}
        os.makedirs(self.work_dir, exist_ok=True)
        with theirs, open(os.path.join(self.work_dir, "zygote.log"), "ab") as log:
            try:
                proc = subprocess.Popen(
                    [self.python, "-m", __name__, str(theirs.fileno())],
                    env=env, cwd=self.work_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=(theirs.fileno(),), start_new_session=True,
                )  # fmt: skip
            except OSError:
                ours.close()
                raise
        ours.settimeout(START_TIMEOUT)
        try:
            reader = ours.makefile("rb")
            line = reader.readline()
            hello = json.loads(line) if line else {}
            if hello.get("op") != "ready":
                raise OSError(f"it exited with code {proc.wait(5)}; see {log.name}")
        except BaseException:
            ours.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
        ours.settimeout(None)
        self._proc, self._sock, self.pid = proc, ours, int(hello["pid"])
        self._failed_at, self.last_error = 0.0, ""
        threading.Thread(
            target=self._read, args=(proc, ours, reader), name="zygote-reader", daemon=True
        ).start()

    def close(self) -> None:
        """Close the socket: the zygote exits (children still running keep their sessions)."""
        with self._start_lock:
            self._closed = True
            sock, proc = self._sock, self._proc
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

    # -- executions -------------------------------------------------------------------------------------

    def spawn(
        self,
        execution_id: str,
        env: dict[str, str],
        cwd: str,
        log_path: str,
        mem_limit: int | None,
        mark: list[str],
        on_exit: Callable[[ZygoteExit], None],
    ) -> int:
        """Fork a child for the execution; its pid. ``on_exit`` is called (from the reader thread) when it
        ends. Raises ZygoteUnavailable when nothing was started (use Popen), ZygoteFailed when the zygote
        died mid-request."""
        sock = self._ensure()
        request = {"op": "spawn", "id": execution_id, "env": env, "cwd": cwd, "log": log_path,
                   "mem": mem_limit, "mark": mark}  # fmt: skip
        waiting = _Spawn(on_exit, threading.Event())
        with self._lock:
            self._spawns[execution_id] = waiting
        try:
            with self._send_lock:
                _send(sock, request)
        except OSError as exc:
            with self._lock:
                self._spawns.pop(execution_id, None)
            raise ZygoteUnavailable(f"the zygote is gone: {exc}") from exc
        if not waiting.answered.wait(SPAWN_TIMEOUT) or waiting.reply is None:
            with self._lock:
                self._spawns.pop(execution_id, None)
            raise ZygoteFailed(self.last_error or "the zygote did not answer")
        if waiting.reply.get("op") != "spawned":
            with self._lock:
                self._spawns.pop(execution_id, None)
            raise ZygoteUnavailable(str(waiting.reply.get("error")))
        return waiting.pid

    def _read(self, proc: subprocess.Popen[bytes], sock: socket.socket, reader: Any) -> None:
        """The reader thread: route replies until the socket ends, then fail what is left."""
        try:
            for line in reader:
                message = json.loads(line)
                op, eid = message.get("op"), str(message.get("id"))
                with self._lock:
                    waiting = self._spawns.get(eid)
                    if waiting is not None and op != "spawned":
                        del self._spawns[eid]
                if waiting is None:
                    continue
                if op == "exited":
                    waiting.on_exit(
                        ZygoteExit(message["status"], message["cpu"], message["io"], message["at"])
                    )
                    continue
                waiting.pid = int(message.get("pid") or 0)
                waiting.reply = message
                waiting.answered.set()
        except (OSError, ValueError):
            pass
        self._died(proc, sock)

    def _died(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        reason = f"the process runtime's zygote (pid {self.pid}) ended (exit code {code})"
        with self._start_lock, self._lock:
            if self._sock is sock:
                self._sock, self._proc = None, None
            self.last_error = reason
            orphans, self._spawns = self._spawns, {}
        sock.close()
        for waiting in orphans.values():
            if not waiting.answered.is_set():
                waiting.answered.set()  # reply None: the spawn raises ZygoteFailed
                continue
            try:  # it can no longer be waited for: stop it rather than leave it unsupervised
                os.killpg(waiting.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            waiting.on_exit(ZygoteExit(failure=f"{reason} while this execution ran; it was stopped."))


if __name__ == "__main__":
    sys.exit(zygote_main(int(sys.argv[1])))
