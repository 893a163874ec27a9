"""The zygote program: the pre-started Python that forks one process per executor execution.

``Zygote`` in :mod:`.zygote` (the service's side) starts it as ``python -m
server_ext.service.runtimes.zygote_main FD`` and speaks the protocol described there. This is the one
module of ``server_ext.service`` that imports ``abaco_nb`` (its function runner, preloaded so each fork
starts warm): it runs in its own interpreter, never inside the service, the way ``images.py`` copies the
in-container modules as files instead of importing them.

Each child, before running anything: writes its environment marker into the slot (see
:class:`EnvironSlot`), calls ``setsid``, sends stdin to ``/dev/null`` and stdout/stderr to the
execution's log, applies the memory limit as ``RLIMIT_AS``, becomes the execution's own uid when the
runtime gives one (``setgroups([])``, ``setgid``, ``setuid``: :mod:`.sandbox`), ``chdir``s to its
directory, replaces ``os.environ`` entirely with the execution's environment, then runs ``abaco_nb.func_runner.main()`` and exits the way ``sys.exit(main())``
would (non-daemon threads joined, ``atexit`` run, stdio flushed), but without tearing the inherited
interpreter down object by object (that costs ~17 ms, more than the fork saved is worth losing).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import sys
import time
from typing import Any

from .zygote import SLOT_NAME, send_line

PRELOAD = ("cloudpickle", "abaco_nb.func_runner", "abaco_nb.actors")
# Modules a request may ask a warm container's zygote to import before it forks (see _ZygoteLoop.learn).
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_LEARNED = 64


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


def _close_inherited_fds(keep: int = -1) -> None:
    """Close every descriptor above stderr (the control socket, the wake-up pipe, the selector), as
    ``Popen(close_fds=True)`` would; ``keep``: one to leave open."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != keep:
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
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT, 0o600)  # opened before dropping to its user
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        _close_inherited_fds()
        import resource

        if request.get("mem"):
            try:
                resource.setrlimit(resource.RLIMIT_AS, (request["mem"], request["mem"]))
            except (OSError, ValueError):
                pass
        if request.get("user"):  # its own uid (sandbox.py): no way back, no groups, few processes
            uid, gid, nproc = request["user"]
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if os.getppid() != zygote_pid:  # the zygote died before the service heard of this child
            os._exit(1)
        if request.get("argv"):  # a warm container of a reactor: the image's own command, exec'ed
            argv = [str(a) for a in request["argv"]]
            try:
                os.execvpe(argv[0], argv, request["env"])
            except OSError as exc:
                os.write(2, f"abaco-nb: cannot run {argv[0]!r}: {exc.strerror or exc}\n".encode())
                os._exit(127)
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
            sys.excepthook(*sys.exc_info())
            _wind_down()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            os._exit(128 + signal.SIGINT)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
    except BaseException as exc:  # the set-up failed: say why in the log when it is open
        try:
            os.write(2, f"abaco-nb zygote: could not start the execution: {exc!r}\n".encode())
        except OSError:
            pass
        os._exit(1)
    _wind_down()
    os._exit(code & 0xFF)


def _spare(read_fd: int, slot: EnvironSlot, zygote_pid: int) -> None:
    """Runs in a child forked ahead of its request: hold nothing of the zygote's (so the service still
    sees the control socket close when the zygote dies), wait for the request on the pipe, then become
    the execution's process. End of file without a request (the zygote is gone): exit quietly."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _close_inherited_fds(keep=read_fd)
        chunks = []
        while chunk := os.read(read_fd, 1 << 20):
            chunks.append(chunk)
        os.close(read_fd)
        if not chunks:
            os._exit(0)
        request = json.loads(b"".join(chunks))
        marker = slot.render([f"{n}={request['env'][n]}" for n in request.get("mark", [])], slot.size)
        assert marker is not None  # the zygote checked that it fits before handing the request over
    except BaseException:
        os._exit(1)
    _child(request, slot, marker, zygote_pid)


class _ZygoteLoop:
    """The zygote's single-threaded loop: spawn requests in, spawned/exited reports out.

    One child is forked ahead (the *spare*) while the zygote is idle, and takes the next request over
    a pipe: the fork and the new process's first wait for a CPU then happen between executions instead
    of after the request. On a loaded machine a warm container's fresh fork waited 7-14 ms for its first
    instruction (a new task queues behind the running ones; a woken one does not); a spare answers in
    well under a millisecond. A request that finds no spare forks as before."""

    def __init__(self, sock: socket.socket, slot: EnvironSlot, may_learn: bool = False) -> None:
        self.sock = sock
        self.slot = slot
        self.children: dict[int, str] = {}  # pid -> execution id
        self.pid = os.getpid()
        self.spare: tuple[int, int] | None = None  # (pid, write end of its request pipe)
        self.may_learn = may_learn  # only inside the actor's own container (PID 1), never on the host
        self.tried: set[str] = set()  # modules asked for once: imported, or failing (not tried again)

    def _flush(self) -> None:
        for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
            stream.flush()

    def fork_spare(self) -> None:
        """Have one child waiting for the next request (a failed fork just leaves none)."""
        if self.spare is not None:
            return
        read_fd, write_fd = os.pipe()
        self._flush()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return
        if pid == 0:
            _spare(read_fd, self.slot, self.pid)
        os.close(read_fd)
        self.spare = (pid, write_fd)

    def _take_spare(self) -> tuple[int, int] | None:
        """The spare (pid, pipe), or None when there is none or it died waiting (reaped and dropped)."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        try:
            done, _ = os.waitpid(spare[0], os.WNOHANG)
        except ChildProcessError:
            done = spare[0]
        if done:
            os.close(spare[1])
            return None
        return spare

    @staticmethod
    def _hand_over(write_fd: int, request: dict[str, Any]) -> None:
        """Write the request to the spare's pipe and close it. A spare killed since it was taken makes
        this fail; it is then reaped as the execution's process, and its death is the exit reported."""
        try:
            data = memoryview(json.dumps(request).encode())
            while data:
                data = data[os.write(write_fd, data) :]
        except OSError:
            pass
        finally:
            os.close(write_fd)

    def learn(self, names: list[str]) -> bool:
        """Import the modules a request names (the executor sends those its function needs), so every
        child forked from now on starts with them: a forked child re-imported numpy each time (~150 ms
        on this machine; a process pool's worker imports it once). Only top-level names, at most
        ``MAX_LEARNED``, each tried once; one that fails is left to the child, which reports it as its
        own error. Whether anything new was imported (the spare then predates it). The zygote's loop waits
        meanwhile: the running child's exit (or a stop) is handled once the import is done, which
        happens once per module and container."""
        import gc
        import importlib

        new = False
        for name in names:
            if len(self.tried) >= MAX_LEARNED or not isinstance(name, str) or not MODULE_NAME.match(name):
                continue
            if name in self.tried or name in sys.modules:
                continue
            self.tried.add(name)
            try:
                importlib.import_module(name)
                new = True
            except BaseException:  # noqa: BLE001 - any failure (even SystemExit) is the child's to meet
                pass
        if new:
            self._flush()
            gc.collect()
            gc.freeze()
        return new

    def _drop_spare(self) -> None:
        """Let the spare go (its pipe closed, it exits; reaped with the others)."""
        spare, self.spare = self.spare, None
        if spare is not None:
            os.close(spare[1])

    def spawn(self, request: dict[str, Any]) -> None:
        eid = str(request["id"])
        marker = self.slot.render(
            [f"{n}={request['env'][n]}" for n in request.get("mark", [])], self.slot.size
        )
        if marker is None:
            send_line(self.sock, {"op": "failed", "id": eid, "error": "the environment marker is too long"})
            return
        spare = self._take_spare()
        if spare is not None:  # "spawned" first: the woken spare may take this CPU for its whole run
            pid, write_fd = spare
            self.children[pid] = eid
            send_line(self.sock, {"op": "spawned", "id": eid, "pid": pid})
            self._hand_over(write_fd, request)
            self._learn_from(request)
            return
        self._flush()
        try:
            pid = os.fork()
        except OSError as exc:
            send_line(self.sock, {"op": "failed", "id": eid, "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _child(request, self.slot, marker, self.pid)
        self.children[pid] = eid
        send_line(self.sock, {"op": "spawned", "id": eid, "pid": pid})
        self._learn_from(request)

    def _learn_from(self, request: dict[str, Any]) -> None:
        """After the answer (an import may take seconds; the service waits for "spawned" at most
        ``SPAWN_TIMEOUT``): this child imports on its own, the next ones are forked with the modules."""
        names = request.get("preload")
        if self.may_learn and isinstance(names, list) and names and self.learn(names):
            self._drop_spare()  # forked before the import

    def signal(self, eid: str, sig: int) -> None:
        """Signal a child's session (its pid is its process group after its setsid). Only the zygote can
        do this inside a container: the service sees the container's pids from another namespace."""
        for pid, child in self.children.items():
            if child == eid:
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:  # before its setsid: the child alone
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass

    def reap(self) -> bool:
        """Report every child that ended; whether any did."""
        reaped = False
        while self.children or self.spare is not None:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
            if self.spare is not None and self.spare[0] == pid:  # the spare died waiting
                os.close(self.spare[1])
                self.spare = None
            eid = self.children.pop(pid, None)
            if eid is not None and self.pid == 1:  # a warm container: end what the call left running,
                try:  # as the end of a fresh container would (its process group; a setsid escapes)
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if eid is not None:
                send_line(
                    self.sock,
                    {
                        "op": "exited",
                        "id": eid,
                        "pid": pid,
                        "status": status,
                        "at": time.time(),
                        "cpu": int((usage.ru_utime + usage.ru_stime) * 1e9),
                        "io": int(usage.ru_inblock + usage.ru_oublock) * 512,
                    },
                )
        return reaped

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        send_line(self.sock, {"op": "ready", "pid": self.pid})
        pending: list[bytes] = []  # the start of a request still arriving (an environment can be large)
        want_spare = True  # at start, and once a child ended (never right after a spawn: it runs now)
        while True:
            events = selector.select(timeout=0 if want_spare else None)
            if not events and want_spare:  # nothing waiting: fork the spare, then sleep
                want_spare = False
                self.fork_spare()
                continue
            for key, _ in events:
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
                        elif request.get("op") == "signal":
                            self.signal(str(request["id"]), int(request["sig"]))
                else:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
            if self.reap():
                want_spare = self.spare is None


def main(fd: int) -> int:
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
    return _ZygoteLoop(sock, slot, may_learn=os.getpid() == 1).run()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
