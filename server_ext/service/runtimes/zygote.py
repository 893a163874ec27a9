"""The zygote: a pre-started Python that forks one process per executor execution.

Why: ``python -m abaco_nb.func_runner`` costs ~20 ms of interpreter start and ~60 ms of imports (``site``
with the editable finders, cloudpickle, the runner) before the first call runs; a fork of a Python that
has already done both costs about 1 ms. The process runtime uses the zygote for the executor image only
(``local:`` commands and ``abaco-nb/test`` keep ``subprocess.Popen``), and falls back to ``Popen`` when
the zygote cannot start or the execution's environment would change how an interpreter starts
(:func:`fresh_start_differs`).

The zygote is started with a fresh interpreter (``python -m server_ext.service.runtimes.zygote_main FD``),
never forked from the multi-threaded service, so it is single-threaded whenever it forks. It starts in
its own session with the pass-through environment only (never the service's token) plus a reserved
*slot* variable, and exits when its end of the control socket closes (the service stopped or died).

This module is the service's side (:class:`Zygote`) and imports nothing from ``abaco_nb``; the zygote
program itself, and what each child does before it runs the function, is :mod:`.zygote_main`. The
zygote keeps one child forked ahead (its *spare*, waiting on a pipe), so a request is usually a write
to that pipe rather than a fork; the protocol below does not change with it.

Protocol: one JSON object per line over a SOCK_STREAM socketpair (the zygote's end is passed as FD).

- zygote → service ``{"op": "ready", "pid": P}`` once the imports are done;
- service → zygote ``{"op": "spawn", "id": EID, "env": {...}, "cwd": DIR, "log": PATH, "mem": BYTES|null,
  "mark": [NAME, ...], "argv": [...]?, "user": [UID, GID, NPROC]|null}`` (``argv``: exec that command
  instead of the function runner; ``user``: the uid and gid the child becomes, its RLIMIT_NPROC);
- zygote → service ``{"op": "spawned", "id": EID, "pid": N}`` or ``{"op": "failed", "id": EID, "error": S}``;
- service → zygote ``{"op": "signal", "id": EID, "sig": N}``: signal that child's session (a warm
  container's pids are not the service's to signal);
- zygote → service ``{"op": "exited", "id": EID, "pid": N, "status": RAW_WAIT_STATUS, "cpu": NS, "io": BYTES,
  "at": EPOCH}`` when the child ends (``wait4``, so the CPU time is the child's own).

If the zygote dies, its running children lose the only process that can read their exit status: they
are killed (their whole session) and their executions fail with the reason; the next execution starts
a new zygote.
"""

from __future__ import annotations

import json
import os
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
MAIN_MODULE = f"{__package__}.zygote_main"  # the program started with ``python -m``

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


def send_line(sock: socket.socket, message: dict[str, Any]) -> None:
    """One protocol message: a JSON object on one line (both sides use this)."""
    sock.sendall(json.dumps(message).encode() + b"\n")


# ---------------------------------------------------------------------------------------------------------
# The service's side: start the zygote, ask it to spawn, hear how children ended
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
        self._proc: Any = None  # subprocess.Popen, or a stand-in with wait/poll/kill (warm containers)
        self._sock: socket.socket | None = None
        self._spawns: dict[str, _Spawn] = {}
        self._failed_at = 0.0
        self._closed = False
        self.pid = 0
        self.last_error = ""
        self.what = "the process runtime's zygote"  # how failures name it

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
                    [self.python, "-m", MAIN_MODULE, str(theirs.fileno())],
                    env=env,
                    cwd=self.work_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
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
        argv: list[str] | None = None,
        *,
        user: tuple[int, int, int] | None = None,
        preload: list[str] | None = None,
    ) -> int:
        """Fork a child for the execution; its pid. ``on_exit`` is called (from the reader thread) when it
        ends. ``argv``: exec that command in the child instead of running the function runner. ``user``:
        (uid, gid, process limit) the child runs as (the zygote is root), else the zygote's own.
        ``preload``: modules a warm container's zygote imports after this fork, for the next ones. Raises
        ZygoteUnavailable when nothing was started (use Popen), ZygoteFailed when the zygote died
        mid-request."""
        sock = self._ensure()
        request = {
            "op": "spawn",
            "id": execution_id,
            "env": env,
            "cwd": cwd,
            "log": log_path,
            "mem": mem_limit,
            "mark": mark,
            "user": list(user) if user else None,
        }
        if argv:
            request["argv"] = argv
        if preload:  # a warm container's zygote imports these for the children after this one
            request["preload"] = preload
        waiting = _Spawn(on_exit, threading.Event())
        with self._lock:
            self._spawns[execution_id] = waiting
        try:
            with self._send_lock:
                send_line(sock, request)
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

    def signal(self, execution_id: str, sig: int) -> bool:
        """Have the zygote signal an execution's session; False when the zygote is gone."""
        sock = self._sock
        if sock is None:
            return False
        try:
            with self._send_lock:
                send_line(sock, {"op": "signal", "id": execution_id, "sig": int(sig)})
        except OSError:
            return False
        return True

    def _kill_orphan(self, pid: int) -> None:
        """A child whose zygote died can no longer be waited for: stop it rather than leave it
        unsupervised (its session, on this host)."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _read(self, proc: Any, sock: socket.socket, reader: Any) -> None:
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

    def _died(self, proc: Any, sock: socket.socket) -> None:
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        reason = f"{self.what} (pid {self.pid}) ended (exit code {code})"
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
            self._kill_orphan(waiting.pid)
            waiting.on_exit(ZygoteExit(failure=f"{reason} while this execution ran; it was stopped."))
