"""AbacoExecutor against a real ``abaco-nb serve --runtime process``: the seed's examples as written,
the Future contract, remote errors, cancel, time limits, chunked map, big data, reload, exit and idle
clean-up. Functions run in real subprocesses (``python -m abaco_nb.func_runner``)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from abaco_nb import executor as executor_module
from abaco_nb import live
from abaco_nb.client import AbacoAPIError, Client
from abaco_nb.executor import (
    AbacoAsyncResponse,
    AbacoExecutionError,
    AbacoExecutor,
    RemoteError,
    RemoteTimeoutError,
    RemoteTraceback,
    VersionMismatchError,
)
from tests.serve import Served, start_serve

# Functions defined in this module travel by value, as a notebook's do (the runner cannot import tests/).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PYTHON = sys.executable


@pytest.fixture
def client(served: Served) -> Client:
    """On the module's ``abaco-nb serve`` (tests/abaco_nb/conftest.py)."""
    return Client(served.url, served.token)


@pytest.fixture
def ex(client: Client) -> Iterator[AbacoExecutor]:
    executor = AbacoExecutor(client, progress=False)
    yield executor
    executor.delete()


def f(x):
    return 3 * x + 5


# ---------------------------------------------------------------------------------------------------------
# The seed, as written
# ---------------------------------------------------------------------------------------------------------


def test_seed_examples(client: Client) -> None:
    ex = AbacoExecutor(client)
    assert ex.blocking_call(f, 3) == [14]
    arsp = ex.submit(f, 5)
    assert isinstance(arsp, cf.Future)
    arsp.result()
    assert arsp.done() is True
    assert arsp.result() == [20]
    assert arsp.execution_id

    def g(std_dev, size):
        A = np.random.normal(0, std_dev, (size, size))
        B = np.random.normal(0, std_dev, (size, size))
        C = np.dot(A, B)
        return C[0]

    arsp = ex.map(g, [[100, 1024] for i in range(8)])
    assert len(arsp) == 8 and all(isinstance(a, AbacoAsyncResponse) for a in arsp)
    for a in arsp:
        try:
            (row,) = a.result()
            assert row.shape == (1024,)
        except Exception:
            print(f"error for execution: {a.execution_id}")
            raise
    ex.delete()
    with pytest.raises(AbacoAPIError, match="404"):
        client.actor(ex.actor_id)


def test_default_image_is_the_one_built_for_this_kernel() -> None:
    from server_ext.service.images import expected_func_image

    assert executor_module.default_image() == expected_func_image()


# ---------------------------------------------------------------------------------------------------------
# The Future contract
# ---------------------------------------------------------------------------------------------------------


def test_futures_work_with_the_stdlib(ex: AbacoExecutor) -> None:
    responses = [ex.submit(f, i) for i in range(5)]
    seen = []
    for done in cf.as_completed(responses, timeout=60):
        seen.append(done.result()[0])
    assert sorted(seen) == [f(i) for i in range(5)]
    done_set, not_done = cf.wait(responses, timeout=60)
    assert len(done_set) == 5 and not not_done
    called = threading.Event()
    responses[0].add_done_callback(lambda fut: called.set())  # already done: runs at once
    assert called.is_set()
    assert responses[0].exception() is None
    assert not responses[0].running() and not responses[0].cancelled()


def test_a_later_short_call_completes_while_an_earlier_long_one_runs(ex: AbacoExecutor) -> None:
    """The watcher's long-poll covers messages sent after it began (``newer_than``)."""
    long = ex.submit(time.sleep, 300)
    time.sleep(0.5)  # the watcher is now blocked in a long-poll that only names `long`
    short = ex.submit(f, 1)
    # Not a timing check: generous, because the short call needs a second worker to start, which took
    # over 30 s once while a benchmark saturated both cores.
    assert short.result(timeout=120) == [8]
    assert not long.done()
    assert long.cancel()


def shout(word):
    print(f"saying {word}")
    return word


def test_live_output_of_a_call_that_ended_between_two_looks(client: Client, monkeypatch) -> None:
    """The monitor looks at the executions twice a second; a call that ran and ended between two looks
    (never seen RUNNING, common with warm containers) still shows what it printed in its cell."""
    shown = live.LiveOutput()
    monkeypatch.setattr(live, "for_cell", lambda key, title, link="": shown)
    executor = AbacoExecutor(client, progress=False, live_output=True)
    listing = executor.client.executions

    def every_look_too_early(actor_id):  # as if each look landed just before the run started
        found = listing(actor_id)
        return {**found, "executions": [{**e, "status": "SUBMITTED"} for e in found.get("executions") or []]}

    monkeypatch.setattr(executor.client, "executions", every_look_too_early)
    try:
        assert executor.submit(shout, "quickly").result(timeout=60) == ["quickly"]
        deadline = time.monotonic() + 30
        while not any("saying quickly" in line for line in shown.lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        said = [line for line in shown.lines if "saying" in line]
        assert len(said) == 1 and said[0].endswith("] saying quickly"), list(shown.lines)
    finally:
        executor.delete()


def test_result_timeout_is_honoured(ex: AbacoExecutor) -> None:
    slow = ex.submit(time.sleep, 30)
    with pytest.raises(cf.TimeoutError):
        slow.result(timeout=0.2)
    slow.cancel()


# ---------------------------------------------------------------------------------------------------------
# Remote errors
# ---------------------------------------------------------------------------------------------------------


class LabError(Exception):
    """A notebook-defined exception type."""


def fails(x):
    def inner():
        raise LabError(f"bad sample {x}")

    return inner()


def test_remote_exception_keeps_type_message_and_traceback(ex: AbacoExecutor) -> None:
    response = ex.submit(fails, 7)
    with pytest.raises(LabError, match="bad sample 7") as info:
        response.result()
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in inner" in cause.tb and "in fails" in cause.tb
    assert "func_runner" not in cause.tb  # the runner's own frames are stripped
    assert isinstance(response.exception(), LabError)
    with pytest.raises(KeyError):
        ex.blocking_call(dict().__getitem__, "missing")


def test_an_exception_that_does_not_unpickle_becomes_remote_error(ex: AbacoExecutor) -> None:
    def raise_unpicklable():
        class Local(Exception):
            def __init__(self, a, b):  # cannot be rebuilt from args
                super().__init__(f"{a}/{b}")

        raise Local(1, 2)

    with pytest.raises(RemoteError, match="Local: 1/2") as info:
        ex.blocking_call(raise_unpicklable)
    assert "raise_unpicklable" in info.value.remote_traceback
    assert any("Remote call failed" in line for line in info.value._render_traceback_())


def test_a_version_mismatch_found_by_the_runner_is_a_clear_error(ex: AbacoExecutor) -> None:
    ex.versions = {"python": "3.0", "cloudpickle": "0.1"}
    with pytest.raises(VersionMismatchError, match="cannot run functions pickled by this kernel: python 3.0"):
        ex.blocking_call(f, 1)


def test_bad_arguments_are_one_line_errors(ex: AbacoExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match="abaco_nb.Client"):
        AbacoExecutor(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equal length"):
        ex.map(f, [[1], [2]], [{}])
    with pytest.raises(TypeError, match="cannot pickle"):
        ex.submit(f, threading.Lock())
    monkeypatch.setattr(executor_module, "MAX_MESSAGE_BYTES", 1000)
    with pytest.raises(ValueError, match="above the executor's limit"):
        ex.submit(len, b"x" * 5000)


# ---------------------------------------------------------------------------------------------------------
# Cancel and time limits
# ---------------------------------------------------------------------------------------------------------


def test_cancel_drops_a_queued_call_and_stops_a_running_one(client: Client) -> None:
    ex = AbacoExecutor(client, max_workers=1, progress=False)
    try:
        running = ex.submit(time.sleep, 60)
        queued = ex.submit(f, 1)
        client_exec = client.execution(ex.actor_id, running.execution_id, wait=None)
        deadline = time.monotonic() + 30
        while client_exec.status != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.1)
            client_exec = client.execution(ex.actor_id, running.execution_id)
        assert queued.cancel() and queued.cancelled()
        assert running.cancel() and running.cancelled()
        dropped = client.execution(ex.actor_id, queued.execution_id, wait=30)
        assert dropped.status == "ERROR" and "before it started" in dropped.status_message
        stopped = client.execution(ex.actor_id, running.execution_id, wait=30)
        assert stopped.status in ("COMPLETE", "ERROR")
        assert "Force quit" in stopped.status_message or stopped.exit_code != 0
        assert ex.blocking_call(f, 2) == [11]  # the worker is free again
    finally:
        ex.delete()


def test_per_call_time_limit_in_the_runner(client: Client) -> None:
    ex = AbacoExecutor(client, timeout=1, progress=False)
    try:
        with pytest.raises(RemoteTimeoutError, match="time limit of 1 s"):
            ex.blocking_call(time.sleep, 30)
        assert ex.blocking_call(f, 0) == [5]
    finally:
        ex.delete()


def ignore_alarm_and_sleep(seconds):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(seconds)


def naps(seconds):
    time.sleep(seconds)
    return seconds


def test_map_uses_one_execution_per_worker_once_the_calls_are_known_to_be_short(client: Client) -> None:
    ex = AbacoExecutor(client, max_workers=2, progress=False)
    try:
        assert ex.auto_chunksize(100, f) == 25  # nothing known yet: two executions per worker
        first = ex.map(f, range(100))
        assert len({r.execution_id for r in first}) == 4 and first[-1].result() == [f(99)]
        cf.wait(first)
        assert ex.auto_chunksize(100, f) == 50  # f's calls take far less than an execution's start
        again = ex.map(f, range(100))
        assert [r.result()[0] for r in again] == [f(i) for i in range(100)]
        assert len({r.execution_id for r in again}) == 2
        cf.wait(ex.map(naps, [0.2] * 8))
        assert ex.auto_chunksize(8, naps) == 2  # a worker's share (0.8 s) outlasts a start: two rounds
        assert ex.auto_chunksize(100, fails) == 25  # and a function never seen gets two as well
    finally:
        ex.delete()


def test_per_call_time_limit_enforced_by_the_service(client: Client) -> None:
    ex = AbacoExecutor(client, timeout=1, progress=False)
    ex.timeout_grace = 1.0
    try:
        response = ex.submit(ignore_alarm_and_sleep, 60)
        with pytest.raises(RemoteTimeoutError, match="max_run_time"):
            response.result(timeout=60)
    finally:
        ex.delete()


# ---------------------------------------------------------------------------------------------------------
# map: chunks and progress
# ---------------------------------------------------------------------------------------------------------


def test_map_packs_calls_into_chunks(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    ex = AbacoExecutor(client, max_workers=2, progress=False)
    try:
        responses = ex.map(f, range(100))
        assert [r.result()[0] for r in responses] == [f(i) for i in range(100)]
        assert len({r.execution_id for r in responses}) == 4  # auto: two executions per worker
        responses = ex.map(f, [[i] for i in range(30)], chunksize=10)
        assert len({r.execution_id for r in responses}) == 3
        kw = ex.map(lambda a, b=0: a - b, [[5]] * 3, [{"b": i} for i in range(3)], chunksize=2)
        assert [r.result() for r in kw] == [[5], [4], [3]]
        mixed = ex.map(fails, range(4), chunksize=4)  # one failure per call, each its own
        assert all(isinstance(r.exception(), LabError) for r in mixed)
        shown = ex.map(f, range(6), progress=True)
        cf.wait(shown)
        for _ in range(50):
            if "6/6" in capsys.readouterr().err:
                break
            time.sleep(0.1)
        else:
            pytest.fail("no progress bar reached 6/6")
    finally:
        ex.delete()


# ---------------------------------------------------------------------------------------------------------
# Big arguments and results
# ---------------------------------------------------------------------------------------------------------


def test_tens_of_mb_in_and_out(client: Client) -> None:
    ex = AbacoExecutor(client, progress=False, environment={"ABACO_NB_MAX_RESULT_BYTES": "50000000"})
    try:
        data = os.urandom(30 * 1024 * 1024)
        assert ex.blocking_call(len, data) == [len(data)]
        (back,) = ex.blocking_call(bytes.upper, data)
        assert back == data.upper()
        with pytest.raises(ValueError, match="above the executor's limit of 50 MB"):
            ex.blocking_call(os.urandom, 60 * 1024 * 1024)
    finally:
        ex.delete()


# ---------------------------------------------------------------------------------------------------------
# Persistence, exit, idle clean-up
# ---------------------------------------------------------------------------------------------------------


KERNEL = """
import json, sys, time
import cloudpickle
from abaco_nb import Client, AbacoExecutor
url, token, out = sys.argv[1:4]
ex = AbacoExecutor(Client(url, token), progress=False)
def f(x):
    return x * x
done = ex.map(f, range(5), chunksize=2)
[r.result() for r in done]
running = ex.submit(time.sleep, 120)
ex.save(out)
print(json.dumps({"actor_id": ex.actor_id, "running": running.execution_id}), flush=True)
"""


def test_results_survive_a_kernel_restart_and_exit_stops_running_calls(
    served: Served, client: Client, tmp_path: Path
) -> None:
    handle = tmp_path / "handle.json"
    proc = subprocess.run(
        [PYTHON, "-c", textwrap.dedent(KERNEL), served.url, served.token, str(handle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    # The kernel is gone: its running call was stopped at exit, not left running.
    stopped = client.execution(info["actor_id"], info["running"], wait=30)
    assert stopped.status in ("COMPLETE", "ERROR")
    # A new kernel gets every result again, as often as it likes.
    for _ in range(2):
        again = AbacoExecutor.reload(str(handle), client)
        assert [r.result(timeout=30) for r in again.responses[:5]] == [[0], [1], [4], [9], [16]]
        assert isinstance(again.responses[5].exception(timeout=30), AbacoExecutionError)
    by_actor = AbacoExecutor.reload(info["actor_id"], client)
    firsts = [r.result(timeout=30) for r in by_actor.responses[:3]]
    assert firsts == [[0, 1], [4, 9], [16]]  # one response per execution, all its calls
    by_actor.delete()


def test_agavepy_protocol_through_the_service(ex: AbacoExecutor, client: Client) -> None:
    """What agavepy 0.9.5's AbacoExecutor sends: one plain result frame per call, popped by GETs."""
    message = cloudpickle.dumps({"func": f, "args": (4,), "kwargs": {}})
    receipt = client.send(ex.actor_id, message)
    execution = client.execution(ex.actor_id, receipt.execution_id, wait=30)
    assert execution.status == "COMPLETE"
    assert cloudpickle.loads(client.result(ex.actor_id, receipt.execution_id)) == 17
    assert client.result(ex.actor_id, receipt.execution_id) == b""
    failing = client.send(ex.actor_id, cloudpickle.dumps({"func": fails, "args": (1,), "kwargs": {}}))
    execution = client.execution(ex.actor_id, failing.execution_id, wait=30)
    assert execution.exit_code != 0
    assert client.result(ex.actor_id, failing.execution_id) == b""
    assert "LabError: bad sample 1" in client.logs(ex.actor_id, failing.execution_id)


def test_idle_executor_actors_are_removed(tmp_path: Path) -> None:
    """A service of its own with a 1 s idle time (the default is 12 h)."""
    served = start_serve(tmp_path, extra=["--executor-idle-seconds", "1"])
    try:
        c = Client(served.url, served.token)
        ex = AbacoExecutor(c, progress=False)
        other = c.register("abaco-nb/py3-func")  # not an executor: stays
        assert ex.blocking_call(f, 1) == [8]
        deadline = time.monotonic() + 30
        while any(a.id == ex.actor_id for a in c.actors()) and time.monotonic() < deadline:
            time.sleep(0.25)
        ids = {a.id for a in c.actors()}
        assert ex.actor_id not in ids and other.id in ids
    finally:
        served.stop()
