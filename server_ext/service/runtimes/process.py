"""The process runtime: one local subprocess per execution, for machines without Docker.

Same environment contract as a container (DESIGN §5), except that a process cannot see
``/_abaco_binary_data`` or ``/_abaco_results.sock``; it gets their host paths in ``ABACO_NB_BINARY_DATA``
and ``ABACO_NB_RESULTS_SOCK``, which ``abaco_nb.actors`` honours. Which program runs:

- ``local:<command line>``: that command (split like a shell would, not run by a shell);
- ``abaco-nb/py3-func[:tag]`` and ``abaco-nb/kernel[:tag]`` (executor images): ``python -m
  abaco_nb.func_runner`` with this service's interpreter, so the kernel's functions unpickle with the
  same Python and cloudpickle;
- ``abaco-nb/test[:tag]`` and ``abacosamples/test[:tag]``: the shell script of abacosamples/test (so the
  seed's curl examples run unchanged without Docker);
- anything else needs a container: the actor goes ERROR with a message saying so.

The process does not inherit the service's environment (that holds the service token): only the
contract's variables plus PATH, LANG and PYTHONPATH; ``HOME`` and ``TMPDIR`` are its own directory. A
memory limit becomes RLIMIT_AS. As root, each execution runs as a uid of its own in a private
directory (:mod:`.sandbox`): the boundary between executions, and between them and the service.

Executions of the executor image are forked from a pre-started Python (:mod:`.zygote`) instead of
starting a fresh interpreter each (~1 ms instead of ~80 ms); everything above holds for them too, and
``Popen`` takes over whenever the zygote cannot.
"""

from __future__ import annotations

import os
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from .base import (
    ENV_BINARY_DATA,
    ENV_RESULTS_SOCKET,
    ExitInfo,
    ImageCheck,
    Leftover,
    NotStarted,
    RunningRef,
    RunSpec,
    RuntimeFailure,
    exited_state,
    iso_time,
)
from .sandbox import NPROC_LIMIT, ExecUser, Sandbox, UidPool
from .zygote import Zygote, ZygoteExit, ZygoteFailed, ZygoteUnavailable, exit_code, fresh_start_differs

ENV_SERVICE = "ABACO_NB_SERVICE_ID"
TEST_SCRIPT = (
    'echo "Contents of MSG: "$MSG; sleep "${SLEEP:-2}"; echo "Environment:"; env; '
    'echo "Contents of root file system: "; ls /'
)
_PASS_THROUGH = ("PATH", "LANG", "LC_ALL", "PYTHONPATH")
_OWN_DIR = ("HOME", "TMPDIR")  # the execution's own directory, whatever the service's are
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
FUNC_REPO = "abaco-nb/py3-func"
# Executor images that mean "the function runner" here: py3-func and the kernel images AbacoExecutor()
# builds (abaco-nb/kernel:...). Without containers both run with this service's interpreter; the
# executor's version guard (image_versions) refuses a kernel whose Python differs.
FUNC_REPOS = (FUNC_REPO, "abaco-nb/kernel")
_MARK = [ENV_SERVICE, "_abaco_execution_id"]  # what find_leftovers reads in /proc/PID/environ


def _repo_of(image: str) -> str:
    """``abaco-nb/py3-func:3.11-3.1.3`` -> ``abaco-nb/py3-func``."""
    last = image.rsplit("/", 1)[-1]
    return image[: len(image) - len(last)] + last.split(":", 1)[0]


def command_for(image: str) -> list[str] | None:
    """The command line an image means on this runtime, or None when it needs a container."""
    if image.startswith("local:"):
        line = image[len("local:") :].strip()
        return shlex.split(line) if line else None
    repo = _repo_of(image)
    if repo in FUNC_REPOS:
        return [sys.executable, "-m", "abaco_nb.func_runner"]
    if repo in ("abaco-nb/test", "abacosamples/test"):
        return ["sh", "-c", TEST_SCRIPT]
    return None


def memory_bytes(limit: str | None) -> int | None:
    if not limit or limit == "-1":
        return None
    text = limit.strip().lower()
    unit = _UNITS.get(text[-1], 1) if text[-1].isalpha() else 1
    number = float(text[:-1] if text[-1].isalpha() else text)
    return int(number * unit)


def _without_own_dir(env: dict[str, str]) -> dict[str, str]:
    """``HOME`` differs per execution only because the runtime sets it (no user may): not a reason to
    leave the zygote for a fresh interpreter."""
    return {k: v for k, v in env.items() if k not in _OWN_DIR}


@dataclass
class _Running:
    pid: int
    log_path: str
    started: float
    proc: subprocess.Popen[bytes] | None = None  # None: forked by the zygote
    done: threading.Event = field(default_factory=threading.Event)
    status: int = 0  # the raw wait status
    cpu: int = 0
    io: int = 0
    finished: float = 0.0
    failure: str = ""  # the zygote died: no exit status to report
    stopped: bool = False
    user: ExecUser | None = None  # the uid it runs as, returned to the pool when it is removed

    def ended(self, how: ZygoteExit) -> None:
        self.status, self.cpu, self.io, self.failure = how.status, how.cpu, how.io, how.failure
        self.finished = how.finished or time.time()
        self.done.set()


class ProcessRuntime:
    """Runs each execution as a local subprocess in its own session (so it can be stopped whole)."""

    name = "process"

    def __init__(
        self, work_dir: str, default_mem_limit: str | None = None, uids: UidPool | None = None
    ) -> None:
        """``work_dir``: private to the service (logs, the zygote's files). ``uids``: run each execution
        as a uid of its own (the service must be root); None runs them as the service's user."""
        self.work_dir = work_dir
        self.default_mem_limit = default_mem_limit
        self.uids = uids
        os.makedirs(work_dir, mode=0o700, exist_ok=True)
        self.sandbox = Sandbox()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self.zygote: Zygote | None = Zygote(work_dir, {**self._pass_through(), "HOME": self.sandbox.root})

    def close(self) -> None:
        """Stop the zygote and remove the executions' directories (the service is closing)."""
        if self.zygote is not None:
            self.zygote.close()
        self.sandbox.close()

    def reattached(self, run: RunningRef, results_socket: str, api_socket: str | None) -> None:
        """A process of an earlier run is never re-attached: nothing to redirect."""

    def release_actor(self, actor_id: str) -> None:
        """Nothing is kept per actor: every execution is its own process."""

    def image_versions(self, image: str) -> dict[str, str] | None:
        """The executor image runs on the service's own interpreter here: its versions. Other images
        (``local:`` commands, ``abaco-nb/test``) declare none."""
        command = command_for(image)
        if command and command[-1] == "abaco_nb.func_runner":
            from .. import images

            python, cloudpickle = images.kernel_versions()
            return {"python": python, "cloudpickle": cloudpickle}
        return None

    def check_image(self, image: str, pull: bool = False) -> ImageCheck:
        if command_for(image) is not None:
            if self.zygote is not None and _repo_of(image) in FUNC_REPOS:
                self.zygote.warm()  # an executor actor: its first call is near
            return ImageCheck(True)
        if image.startswith("local:"):
            return ImageCheck(False, "The image 'local:' needs a command line after the colon.")
        return ImageCheck(
            False,
            f"Image {image} needs a container, but this service runs with the process runtime "
            "(no Docker engine). Use a 'local:<command>' image, abaco-nb/py3-func or abaco-nb/test, or "
            "start the service with --runtime docker.",
        )

    @staticmethod
    def _pass_through() -> dict[str, str]:
        return {k: os.environ[k] for k in _PASS_THROUGH if k in os.environ}

    def _environment(self, spec: RunSpec, cwd: str) -> dict[str, str]:
        """The contract's variables, with the host paths of the service's files as this execution's
        links to them (its directory is the only place it can reach them)."""
        env = self._pass_through()
        env.update(spec.environment)
        env[ENV_SERVICE] = spec.service_id
        for name in _OWN_DIR:
            env[name] = cwd
        if spec.binary_path:
            env[ENV_BINARY_DATA] = Sandbox.link(spec.binary_path, cwd, "binary_data")
        if spec.results_socket:
            env[ENV_RESULTS_SOCKET] = Sandbox.link(spec.results_socket, cwd, "results.sock")
        if spec.api_socket:
            served = "http+unix://" + quote(spec.api_socket, safe="")
            if env.get("_abaco_api_server") == served:
                api = Sandbox.link(spec.api_socket, cwd, "api.sock")
                env["_abaco_api_server"] = "http+unix://" + quote(api, safe="")
        return env

    def start(self, spec: RunSpec) -> RunningRef:
        command = command_for(spec.image)
        if command is None:
            raise RuntimeFailure(self.check_image(spec.image).message)
        user = self.uids.acquire() if self.uids is not None else None
        try:
            return self._start(spec, command, user)
        except BaseException:
            self.sandbox.remove(spec.execution_id, self._releaser(user))
            raise

    def _start(self, spec: RunSpec, command: list[str], user: ExecUser | None) -> RunningRef:
        try:
            cwd = self.sandbox.make(spec.execution_id, user)
            log_path = os.path.join(self.work_dir, f"{spec.execution_id}.log")  # out of its reach
            os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            env = self._environment(spec, cwd)
        except OSError as exc:  # a full disk, say: nothing ran, so it can run later (start() cleans up)
            raise NotStarted(f"cannot prepare the execution's directory: {exc.strerror or exc}") from exc
        limit = memory_bytes(spec.mem_limit or self.default_mem_limit)
        running = None
        zygote = self.zygote
        if (
            zygote is not None
            and _repo_of(spec.image) in FUNC_REPOS
            and not fresh_start_differs(_without_own_dir(env), _without_own_dir(zygote.base_env))
        ):
            running = self._fork(zygote, spec.execution_id, env, cwd, log_path, limit, user)
        if running is None:
            running = self._popen(spec.execution_id, command, env, cwd, log_path, limit, user)
        running.user = user
        with self._lock:
            self._running[spec.execution_id] = running
        return RunningRef(spec.execution_id, str(running.pid), {"log_path": log_path})

    @staticmethod
    def _fork(
        zygote: Zygote,
        execution_id: str,
        env: dict[str, str],
        cwd: str,
        log_path: str,
        limit: int | None,
        user: ExecUser | None,
    ) -> _Running | None:
        """The execution as a child of the zygote; None when the zygote cannot take it (use Popen)."""
        running = _Running(pid=0, log_path=log_path, started=time.time())
        mark = [name for name in _MARK if name in env]
        try:
            running.pid = zygote.spawn(
                execution_id,
                env,
                cwd,
                log_path,
                limit,
                mark,
                running.ended,
                user=(user.uid, user.gid, NPROC_LIMIT) if user is not None else None,
            )
        except ZygoteUnavailable:
            return None
        except ZygoteFailed as exc:  # it may have forked: starting it again could run the message twice
            raise RuntimeFailure(f"The process runtime's zygote failed while starting it: {exc}.") from exc
        return running

    def _popen(
        self,
        execution_id: str,
        command: list[str],
        env: dict[str, str],
        cwd: str,
        log_path: str,
        limit: int | None,
        user: ExecUser | None,
    ) -> _Running:
        as_user = {"user": user.uid, "group": user.gid, "extra_groups": []} if user is not None else {}
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(
                    command,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    start_new_session=True,
                    **as_user,  # type: ignore[call-overload]
                )
            except OSError as exc:
                raise RuntimeFailure(f"Could not start {command[0]!r}: {exc.strerror or exc}.") from exc
        limits = [(resource.RLIMIT_AS, limit)] if limit else []
        if user is not None:
            limits.append((resource.RLIMIT_NPROC, NPROC_LIMIT))
        for which, value in limits:
            try:
                resource.prlimit(proc.pid, which, (value, value))
            except (OSError, ValueError):
                pass
        running = _Running(pid=proc.pid, log_path=log_path, started=time.time(), proc=proc)
        threading.Thread(target=self._reap, args=(execution_id, running), daemon=True).start()
        return running

    @staticmethod
    def _reap(execution_id: str, running: _Running) -> None:
        """wait4 rather than Popen.wait, to get the child's CPU time for the execution record."""
        assert running.proc is not None
        try:
            _, status, rusage = os.wait4(running.pid, 0)
        except ChildProcessError:
            running.proc.returncode = 0
            running.ended(ZygoteExit())
            return
        running.proc.returncode = os.waitstatus_to_exitcode(status)
        cpu = int((rusage.ru_utime + rusage.ru_stime) * 1e9)
        running.ended(ZygoteExit(status, cpu, int(rusage.ru_inblock + rusage.ru_oublock) * 512, time.time()))

    def _get(self, run: RunningRef) -> _Running:
        with self._lock:
            running = self._running.get(run.execution_id)
        if running is None:
            raise RuntimeFailure(f"No process for execution {run.execution_id}.")
        return running

    def wait(self, run: RunningRef, timeout: float) -> ExitInfo | None:
        running = self._get(run)
        if not running.done.wait(timeout):
            return None
        if running.failure:
            raise RuntimeFailure(running.failure)
        code = exit_code(running.status)  # killed by a signal: 128+N, as a shell reports
        final_state = exited_state(code, iso_time(running.started), iso_time(running.finished))
        return ExitInfo(exit_code=code, final_state=final_state, cpu=running.cpu, io=running.io)

    def logs(self, run: RunningRef) -> str:
        path = run.extra.get("log_path") or os.path.join(self.work_dir, f"{run.execution_id}.log")
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, run: RunningRef, grace: float = 10.0) -> None:
        running = self._get(run)
        running.stopped = True
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if running.done.is_set():
                return
            try:
                os.killpg(running.pid, sig)
            except ProcessLookupError:  # a zygote child in its first instants, before its setsid
                try:
                    os.kill(running.pid, sig)  # not reaped yet (done is unset), so still ours
                except ProcessLookupError:
                    return
            if running.done.wait(wait):
                return

    def remove(self, run: RunningRef) -> None:
        with self._lock:
            running = self._running.pop(run.execution_id, None)
        if running is not None and not running.done.is_set():
            self.stop(run, grace=1.0)
        try:
            os.unlink(run.extra.get("log_path") or os.path.join(self.work_dir, f"{run.execution_id}.log"))
        except FileNotFoundError:
            pass
        # the uid goes back to the pool only once its directory is gone
        self.sandbox.remove(run.execution_id, self._releaser(running.user if running is not None else None))

    def _releaser(self, user: ExecUser | None) -> Callable[[], None] | None:
        """What returns ``user`` to the pool (None when there is nothing to return)."""
        uids = self.uids
        if user is None or uids is None:
            return None
        return lambda: uids.release(user)

    def find_leftovers(self, service_id: str) -> list[Leftover]:
        """Processes an earlier run of this service started (found by their environment marker), and
        the log directories of executions whose process has gone since (they ran: not to be run again;
        a message whose start never reached this runtime has no directory and can be requeued)."""
        found = self._live_leftovers(service_id)
        with self._lock:
            known = {lo.execution_id for lo in found} | set(self._running)
        try:
            names = os.listdir(self.work_dir)
        except OSError:
            names = []
        for name in names:
            if name not in known and os.path.isfile(os.path.join(self.work_dir, name, "output.log")):
                found.append(Leftover(name, "", running=False, started=True))
        return found

    @staticmethod
    def _live_leftovers(service_id: str) -> list[Leftover]:
        found: list[Leftover] = []
        marker = f"{ENV_SERVICE}={service_id}".encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    entries = f.read().split(b"\0")
            except OSError:
                continue
            if marker not in entries:
                continue
            for entry in entries:
                if entry.startswith(b"_abaco_execution_id="):
                    found.append(Leftover(entry.split(b"=", 1)[1].decode(), pid, True))
        return found

    def attach(self, leftover: Leftover) -> RunningRef:
        """A process is not our child after a restart, so it cannot be waited on: stop it instead,
        and the dispatcher ends its execution ERROR."""
        if not leftover.running or not leftover.ref.isdigit():
            raise RuntimeFailure("the process of this execution had ended before the restart")
        try:
            os.killpg(int(leftover.ref), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        raise RuntimeFailure("process executions cannot be re-attached after a restart")
