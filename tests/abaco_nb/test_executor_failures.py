"""Failures a sweep meets, on both runtimes against a real ``abaco-nb serve``: a cancelled or
interrupted call stops within a second (by the execution's own end time), the memory limit raises
:class:`OutOfMemoryError` naming it, ``retries=`` re-runs calls whose worker was lost and never calls
that raised, a deleted executor actor is re-created or named, and plain values."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

from abaco_nb import ExecutorActorGone, OutOfMemoryError
from abaco_nb.client import Client
from abaco_nb.executor import AbacoExecutor
from tests.serve import Served, start_serve

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", params=["process", "docker"])
def runtime(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("built_images")  # skips (fails in CI) without an engine
    return str(request.param)


@pytest.fixture(scope="module")
def served(runtime: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_serve(tmp_path_factory.mktemp(f"failures-{runtime}"), runtime)
    yield s
    s.stop()


@pytest.fixture
def client(served: Served) -> Client:
    return Client(served.url, served.token)


def f(x):
    return 3 * x + 5


def _seconds(iso: str) -> float:
    return dt.datetime.strptime(iso[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()


def _nap(seconds: float) -> float:
    print("call started", flush=True)
    time.sleep(seconds)
    return seconds


def _running(client: Client, actor_id: str, execution_id: str) -> None:
    """Until the call itself runs (its first line is in the live logs): a status of RUNNING can come
    while its container is still starting."""
    deadline = time.monotonic() + 60
    while "call started" not in client.logs(actor_id, execution_id):
        assert time.monotonic() < deadline, "the call never started"
        time.sleep(0.05)


def _finished_at(client: Client, actor_id: str, execution_id: str) -> float:
    done = client.execution(actor_id, execution_id, wait=60)
    assert done.status in ("COMPLETE", "ERROR")
    return _seconds(done.final_state["FinishedAt"])


def test_a_cancelled_call_stops_within_a_second(client: Client) -> None:
    ex = AbacoExecutor(client, progress=False)
    try:
        call = ex.submit(_nap, 120)
        _running(client, ex.actor_id, call.execution_id)
        asked = time.time()
        assert call.cancel()
        assert _finished_at(client, ex.actor_id, call.execution_id) - asked < 1.0
    finally:
        ex.delete()


def test_an_interrupted_blocking_call_stops_within_a_second(client: Client) -> None:
    ex = AbacoExecutor(client, progress=False)
    try:
        warm = ex.submit(f, 1)  # a started worker, so the interrupt lands in the call
        assert warm.result(timeout=60) == [8]
        asked: list[float] = []
        found: list[str] = []

        def interrupt() -> None:  # once the call runs, what the kernel's Interrupt button sends
            while not found:
                found.extend(
                    e["id"]
                    for e in client.executions(ex.actor_id)["executions"]
                    if e["id"] != warm.execution_id
                )
                time.sleep(0.05)
            _running(client, ex.actor_id, found[0])
            asked.append(time.time())
            os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Thread(target=interrupt, daemon=True)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            ex.blocking_call(_nap, 120)
        timer.join()
        assert _finished_at(client, ex.actor_id, found[0]) - asked[0] < 1.0
    finally:
        ex.delete()


def _hog(mb: int) -> int:
    blocks = [b"x" * (16 << 20) for _ in range(mb // 16)]
    return len(blocks)


def test_the_memory_limit_raises_out_of_memory_naming_it(client: Client) -> None:
    ex = AbacoExecutor(client, progress=False, mem_limit="256m")
    try:
        with pytest.raises(OutOfMemoryError, match=r"mem_limit=256m.*AbacoExecutor\(mem_limit=") as info:
            ex.blocking_call(_hog, 1024)
        assert isinstance(info.value, MemoryError) and info.value.mem_limit == "256m"
        assert ex.blocking_call(_hog, 32) == [2]  # the next call runs normally
    finally:
        ex.delete()


def _executions(client: Client, actor_id: str) -> int:
    return len(client.executions(actor_id)["executions"])


def test_an_oom_kill_is_a_lost_worker_retried_then_raised(client: Client, runtime: str) -> None:
    if runtime != "docker":
        pytest.skip("the process runtime's limit makes the call raise MemoryError (never retried)")
    ex = AbacoExecutor(client, progress=False, mem_limit="128m")
    try:
        with pytest.raises(OutOfMemoryError, match="mem_limit=128m"):
            ex.submit(_hog, 1024, retries=1).result(timeout=120)
        assert _executions(client, ex.actor_id) == 2  # run once more after the kill, then raised
    finally:
        ex.delete()


def _kill_worker(runtime: str, client: Client, actor_id: str, execution_id: str) -> None:
    """Lose the worker under a running call: the container (node loss), or the process."""
    if runtime == "docker":
        import docker

        api = docker.from_env().api
        found = api.containers(filters={"label": f"abaco-nb.actor_id={actor_id}"})
        assert found, f"no container runs {execution_id}"
        for container in found:  # the call's warm container and the spare: the node is gone
            api.kill(container["Id"])
        return
    marker = f"_abaco_execution_id={execution_id}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in entries:
            os.kill(int(pid), signal.SIGKILL)
            return
    raise AssertionError(f"no process runs {execution_id}")


def test_retries_rerun_calls_whose_worker_was_lost(client: Client, runtime: str) -> None:
    ex = AbacoExecutor(client, progress=False)
    try:
        call = ex.submit(lambda: _nap(4) and 42, retries=2)
        first = call.execution_id
        _running(client, ex.actor_id, first)
        _kill_worker(runtime, client, ex.actor_id, first)
        assert call.result(timeout=120) == [42]
        assert call.execution_id != first  # it ran again, in a new execution
        # Without retries the loss is the call's error.
        lone = ex.submit(_nap, 30)
        _running(client, ex.actor_id, lone.execution_id)
        _kill_worker(runtime, client, ex.actor_id, lone.execution_id)
        with pytest.raises(Exception, match="no result for this call"):
            lone.result(timeout=120)
    finally:
        ex.delete()


class SampleError(Exception):
    pass


def _raises(x: int) -> int:
    raise SampleError(f"bad sample {x}")


def test_retries_never_rerun_a_call_that_raised(client: Client) -> None:
    ex = AbacoExecutor(client, progress=False, retries=3)
    try:
        responses = ex.map(_raises, [1, 2, 3], chunksize=3)
        for r in responses:
            with pytest.raises(SampleError):
                r.result(timeout=60)
        assert _executions(client, ex.actor_id) == 1
    finally:
        ex.delete()


def test_a_deleted_executor_actor_is_recreated_or_named(client: Client) -> None:
    ex = AbacoExecutor(client, progress=False)
    first = ex.actor_id
    client.delete(first)  # from the dashboard, or the idle clean-up
    with pytest.warns(UserWarning, match=f"actor {first} was deleted"):
        assert ex.submit(f, 3).result(timeout=60) == [14]
    assert ex.actor_id != first
    # Deleted under a pending call: the call says so instead of a raw 404.
    call = ex.submit(_nap, 60)
    _running(client, ex.actor_id, call.execution_id)
    client.delete(ex.actor_id)
    with pytest.raises(ExecutorActorGone, match="was deleted"):
        call.result(timeout=60)
    # An executor on someone else's actor cannot re-create it: it names what happened.
    other = AbacoExecutor(client, progress=False)
    borrowed = AbacoExecutor(client, actor_id=other.actor_id, progress=False)
    other.delete()
    with warnings.catch_warnings(), pytest.raises(ExecutorActorGone, match="no longer exists"):
        warnings.simplefilter("error")
        borrowed.submit(f, 1)
    ex.delete()


def test_plain_values(client: Client) -> None:
    ex = AbacoExecutor(client, progress=False)
    plain = AbacoExecutor(client, actor_id=ex.actor_id, progress=False, plain_results=True)
    try:
        call = ex.submit(f, 3)
        assert call.result() == [14] and call.value() == 14  # the seed's list, and the value itself
        assert [r.value() for r in ex.map(f, [1, 2])] == [8, 11]
        assert plain.submit(f, 3).result() == 14 and plain.submit(f, 3).value() == 14
    finally:
        ex.delete()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_retries_rerun_a_call_the_service_restart_interrupted(runtime: str, tmp_path: Path) -> None:
    port = ["--port", str(_free_port())]  # the same address after the restart, as a real deployment's
    first = start_serve(tmp_path / "first", runtime, extra=port)
    second = None
    try:
        ex = AbacoExecutor(Client(first.url, first.token), progress=False)
        call = ex.submit(_nap, 3, retries=1)
        interrupted = call.execution_id
        _running(ex.client, ex.actor_id, interrupted)
        first.kill9()  # the service dies under the running call
        second = start_serve(tmp_path / "second", runtime, extra=port, db=first.db)
        assert call.result(timeout=180) == [3]  # recovery ended it "Interrupted"; the retry ran it again
        assert call.execution_id != interrupted
        assert ex.client.execution(ex.actor_id, interrupted).status == "ERROR"
        ex.delete()
    finally:
        first.stop()
        if second is not None:
            second.stop()
