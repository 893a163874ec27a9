"""The process runtime's zygote, with real forks: executions of the executor image keep the semantics of
a fresh ``python -m abaco_nb.func_runner`` (exit codes, signals as 128+N, stop of the whole session, only
the contract's environment, the memory limit, the environment marker that finds leftovers), and the
runtime copes with a zygote that dies or cannot start.

The functions run through the runner's agavepy protocol (a cloudpickled ``{'func', 'args', 'kwargs'}``);
they report by printing to the execution's log, and most end with ``os._exit`` so the exit code is
theirs. They are defined inside the tests so cloudpickle sends them by value.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from server_ext.service.runtimes.base import ExitInfo, RunningRef, RunSpec, RuntimeFailure
from server_ext.service.runtimes.process import ENV_SERVICE, ProcessRuntime
from server_ext.service.runtimes.zygote import (
    SLOT_BYTES,
    Zygote,
    exit_code,
    fresh_start_differs,
)
from server_ext.service.runtimes.zygote_main import EnvironSlot, _ZygoteLoop

FUNC_IMAGE = "abaco-nb/py3-func:latest"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessRuntime]:
    monkeypatch.setenv("ABACO_NB_TOKEN", "the-service-token")  # what an execution must never see
    monkeypatch.setenv("SERVICE_ONLY_VARIABLE", "service")
    rt = ProcessRuntime(str(tmp_path / "proc"))
    yield rt
    rt.close()


def _start(rt: ProcessRuntime, tmp: Path, fn: Callable[[], Any], **extra: Any) -> RunningRef:
    eid = uuid.uuid4().hex[:13]
    message = tmp / f"{eid}.bin"
    message.write_bytes(cloudpickle.dumps({"func": fn, "args": [], "kwargs": {}}))
    env = {"_abaco_execution_id": eid, "MSG": "", **extra.pop("env", {})}
    spec = RunSpec(
        execution_id=eid,
        actor_id="A",
        worker_id="W",
        image=FUNC_IMAGE,
        environment=env,
        service_id=extra.pop("service_id", "svc-test"),
        binary_path=str(message),
        **extra,
    )
    return rt.start(spec)


def _wait(rt: ProcessRuntime, run: RunningRef, timeout: float = 30) -> ExitInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = rt.wait(run, 0.5)
        if info is not None:
            return info
    raise AssertionError(f"execution {run.execution_id} still running after {timeout} s")


def _wait_for(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has ended
    except FileNotFoundError:
        return True


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


# -- pure parts -------------------------------------------------------------------------------------


def test_only_start_up_variables_that_differ_need_a_fresh_interpreter() -> None:
    base = {"PATH": "/bin", "HOME": "/root", "PYTHONPATH": "/src"}
    assert not fresh_start_differs({**base, "MSG": "hi", "key1": "v"}, base)
    assert fresh_start_differs({**base, "PYTHONHASHSEED": "0"}, base)
    assert fresh_start_differs({**base, "PYTHONPATH": "/elsewhere"}, base)
    assert fresh_start_differs({**base, "LC_ALL": "C"}, base)
    assert fresh_start_differs({"PATH": "/bin", "HOME": "/root"}, base)  # PYTHONPATH dropped


def test_slot_rendering_and_exit_codes() -> None:
    data = EnvironSlot.render(["A=1", "B=2"], 16)
    assert data == b"A=1\0B=2\0" + b"\0" * 8
    assert EnvironSlot.render(["X=" + "y" * SLOT_BYTES], SLOT_BYTES) is None
    assert exit_code(0) == 0 and exit_code(3 << 8) == 3
    assert exit_code(signal.SIGKILL) == 137  # a raw wait status of "killed by signal 9"


# -- real forks -------------------------------------------------------------------------------------


def test_exit_codes_and_signals_are_those_of_a_fresh_process(runtime: ProcessRuntime, tmp_path: Path) -> None:
    def three() -> None:
        print("parent", os.getppid(), flush=True)
        os._exit(3)

    def killed() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def raises() -> None:
        raise ValueError("boom")

    handles = [_start(runtime, tmp_path, f) for f in (three, killed, raises)]
    infos = [_wait(runtime, h) for h in handles]
    assert [i.exit_code for i in infos] == [3, 137, 1]
    assert [i.final_state["ExitCode"] for i in infos] == [3, 137, 1]
    assert runtime.zygote is not None and runtime.zygote.pid
    assert f"parent {runtime.zygote.pid}" in runtime.logs(handles[0])  # forked, not Popen'd
    assert "ValueError: boom" in runtime.logs(handles[2])
    for h in handles:
        runtime.remove(h)


def test_stop_ends_the_whole_session(runtime: ProcessRuntime, tmp_path: Path) -> None:
    def sleeps() -> None:
        import subprocess
        import time

        child = subprocess.Popen(["sleep", "60"])
        print("grandchild", child.pid, flush=True)
        time.sleep(60)

    run = _start(runtime, tmp_path, sleeps)
    _wait_for(lambda: "grandchild" in runtime.logs(run))
    grandchild = int(runtime.logs(run).split("grandchild")[1].split()[0])
    runtime.stop(run, grace=5)
    info = _wait(runtime, run)
    assert info.exit_code == 128 + signal.SIGTERM
    _wait_for(lambda: _gone(grandchild))
    runtime.remove(run)


def test_stop_right_after_start(runtime: ProcessRuntime, tmp_path: Path) -> None:
    """The child may not have called setsid yet: stop still reaches it."""

    def sleeps() -> None:
        import time

        time.sleep(60)

    for _ in range(5):
        run = _start(runtime, tmp_path, sleeps)
        runtime.stop(run, grace=5)
        assert _wait(runtime, run).exit_code == 128 + signal.SIGTERM
        runtime.remove(run)


def test_a_child_sees_only_the_contract_environment_and_carries_the_marker(
    runtime: ProcessRuntime, tmp_path: Path
) -> None:
    def report() -> None:
        import json
        import os
        import time

        with open("/proc/self/environ", "rb") as f:
            block = [e.decode() for e in f.read().split(b"\0") if e]
        print(json.dumps({"environ": dict(os.environ), "block": block, "cwd": os.getcwd()}), flush=True)
        time.sleep(60)

    service_id = uuid.uuid4().hex[:13]
    run = _start(runtime, tmp_path, report, env={"key1": "value1"}, service_id=service_id)
    _wait_for(lambda: '"environ"' in runtime.logs(run))
    seen = json.loads(runtime.logs(run).splitlines()[0])
    assert seen["environ"]["key1"] == "value1"
    assert seen["environ"]["_abaco_execution_id"] == run.execution_id
    assert seen["environ"][ENV_SERVICE] == service_id
    assert "ABACO_NB_TOKEN" not in seen["environ"] and "SERVICE_ONLY_VARIABLE" not in seen["environ"]
    assert not any("the-service-token" in e or "SERVICE_ONLY" in e for e in seen["block"])
    assert f"{ENV_SERVICE}={service_id}" in seen["block"]  # what find_leftovers reads after a crash
    assert seen["cwd"] == runtime.sandbox.path(run.execution_id)
    assert [(lo.execution_id, lo.ref) for lo in runtime.find_leftovers(service_id)] == [
        (run.execution_id, run.ref)
    ]
    assert runtime.zygote is not None
    with open(f"/proc/{runtime.zygote.pid}/environ", "rb") as f:
        assert b"the-service-token" not in f.read()
    runtime.stop(run, grace=1)
    _wait(runtime, run)
    runtime.remove(run)


def test_memory_limit_applies_to_the_child(runtime: ProcessRuntime, tmp_path: Path) -> None:
    def allocate() -> None:
        import os
        import resource

        print("limit", resource.getrlimit(resource.RLIMIT_AS)[0], flush=True)
        try:
            bytearray(1024**3)
        except MemoryError:
            print("MemoryError", flush=True)
            os._exit(5)
        os._exit(0)

    run = _start(runtime, tmp_path, allocate, mem_limit="400m")
    assert _wait(runtime, run).exit_code == 5
    assert f"limit {400 * 1024**2}" in runtime.logs(run)
    runtime.remove(run)


def test_zygote_death_fails_its_running_children_and_a_new_one_starts(
    runtime: ProcessRuntime, tmp_path: Path
) -> None:
    def sleeps() -> None:
        import os
        import time

        print("pid", os.getpid(), flush=True)
        time.sleep(60)

    run = _start(runtime, tmp_path, sleeps)
    _wait_for(lambda: "pid" in runtime.logs(run))
    assert runtime.zygote is not None
    first = runtime.zygote.pid
    os.kill(first, signal.SIGKILL)
    with pytest.raises(RuntimeFailure, match="zygote"):
        _wait(runtime, run)
    _wait_for(lambda: _gone(int(run.ref)))  # not left running unsupervised
    runtime.remove(run)

    def parent() -> None:
        print("parent", os.getppid(), flush=True)
        os._exit(0)

    again = _start(runtime, tmp_path, parent)
    assert _wait(runtime, again).exit_code == 0
    assert runtime.zygote.pid not in (0, first)
    assert f"parent {runtime.zygote.pid}" in runtime.logs(again)
    runtime.remove(again)


def test_popen_takes_over_when_the_zygote_cannot(runtime: ProcessRuntime, tmp_path: Path) -> None:
    def report() -> None:
        import os
        import sys

        print("parent", os.getppid(), "hashseed", sys.flags.hash_randomization, flush=True)
        os._exit(0)

    # An execution that sets a start-up variable needs a fresh interpreter to honour it.
    honoured = _start(runtime, tmp_path, report, env={"PYTHONHASHSEED": "0"})
    assert _wait(runtime, honoured).exit_code == 0
    assert f"parent {os.getpid()} hashseed 0" in runtime.logs(honoured)
    # A zygote that cannot start: every execution still runs, with Popen.
    assert runtime.zygote is not None
    runtime.zygote.close()
    runtime.zygote = Zygote(runtime.work_dir, runtime._pass_through(), python="/bin/false")
    fallback = _start(runtime, tmp_path, report)
    assert _wait(runtime, fallback).exit_code == 0
    assert f"parent {os.getpid()} " in runtime.logs(fallback)
    assert "did not start" in runtime.zygote.last_error
    for h in (honoured, fallback):
        runtime.remove(h)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_a_spare_forked_ahead_runs_the_next_execution_holds_nothing_and_ends_with_the_zygote(
    runtime: ProcessRuntime, tmp_path: Path
) -> None:
    def report() -> None:
        print("pid", os.getpid(), "parent", os.getppid(), flush=True)
        os._exit(0)

    first = _start(runtime, tmp_path, report)
    assert _wait(runtime, first).exit_code == 0
    runtime.remove(first)
    zygote = runtime.zygote
    assert zygote is not None
    _wait_for(lambda: len(_children(zygote.pid)) == 1)  # the spare, forked once the first one ended
    (spare,) = _children(zygote.pid)

    def held() -> list[str]:
        return [
            os.readlink(f"/proc/{spare}/fd/{fd}") for fd in os.listdir(f"/proc/{spare}/fd") if int(fd) > 2
        ]

    _wait_for(lambda: len(held()) == 1)  # once it waits: its request pipe only, never the socket
    assert held()[0].startswith("pipe:")
    again = _start(runtime, tmp_path, report)
    assert _wait(runtime, again).exit_code == 0
    assert f"pid {spare} parent {zygote.pid}" in runtime.logs(again)  # the spare ran it
    runtime.remove(again)
    _wait_for(lambda: len(_children(zygote.pid)) == 1)
    (spare,) = _children(zygote.pid)
    runtime.close()  # the zygote goes: its spare reads the end of its pipe and exits
    _wait_for(lambda: _gone(spare))


def test_only_a_zygote_in_a_container_imports_what_a_request_names() -> None:
    """A warm container's zygote (PID 1) imports the modules a spawn request names, once each, valid
    top-level names only; on the host (the process runtime's zygote) a request never makes it import."""
    import socket
    import sys

    a, b = socket.socketpair()
    try:
        slot = EnvironSlot(0, 0)
        host = _ZygoteLoop(a, slot)  # may_learn defaults to False
        host._learn_from({"preload": ["colorsys"]})
        assert host.tried == set()
        inside = _ZygoteLoop(a, slot, may_learn=True)
        asked = ["wave", "no_such_module_anywhere", "os.path", "bad name", "wave"]
        assert inside.learn(asked) is True
        assert "wave" in sys.modules
        assert inside.tried == {"wave", "no_such_module_anywhere"}  # dotted and odd names ignored
        assert inside.learn(["wave", "no_such_module_anywhere"]) is False  # each tried once
    finally:
        a.close()
        b.close()
