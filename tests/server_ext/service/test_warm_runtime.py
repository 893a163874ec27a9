"""Warm containers on the real engine: executions forked inside one long-lived container keep Abaco's
contract per execution (environment, binary message, results socket, logs), its limits and OOM facts,
stop within a second by the container's own clock, fall back to a fresh container where a warm one
cannot serve, and never outlive their runtime (idle stop, actor release, close, leftovers by label).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from test_docker_runtime import FUNC_IMAGE, TEST_IMAGE, ResultsSocket, make_spec, pickled_call

from server_ext.service.runtimes.base import LABEL_SERVICE, ExitInfo, RunningRef, RunSpec
from server_ext.service.runtimes.docker import DockerRuntime
from server_ext.service.runtimes.warm import LABEL_WARM, image_facts

pytestmark = pytest.mark.docker
RUN = uuid.uuid4().hex[:8]  # this run's service ids: cleaning up never touches another run's containers
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def runtime(docker_client, built_images, tmp_path) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(client=docker_client, warm_dir=str(tmp_path / "warm"), warm_idle_seconds=600)
    yield rt
    rt.close()
    for c in docker_client.api.containers(all=True, filters={"label": LABEL_WARM}):
        if (c.get("Labels") or {}).get(LABEL_SERVICE, "").startswith(f"svc-{RUN}-"):
            docker_client.api.remove_container(c["Id"], force=True)


def warm_spec(
    tmp_path: Path, service_id: str, func: Any, *args: Any, **kw: Any
) -> tuple[RunSpec, ResultsSocket]:
    """An executor-style execution (agavepy's protocol: one pickled call, one result datagram)."""
    results = ResultsSocket(tmp_path / f"r{os.urandom(4).hex()}.sock")
    spec = make_spec(
        FUNC_IMAGE,
        env=kw.pop("env", {}),
        service_id=service_id,
        warm=True,
        binary_path=pickled_call(tmp_path, func, *args),
        results_socket=results.path,
        **kw,
    )
    return spec, results


def finish(rt: DockerRuntime, handle: RunningRef, timeout: float = 60) -> ExitInfo:
    deadline = time.monotonic() + timeout
    info = None
    while info is None and time.monotonic() < deadline:
        info = rt.wait(handle, 0.5)
    assert info is not None, "the execution did not finish in time"
    return info


def _contract(pad: bytes = b"") -> dict[str, Any]:
    with open("/_abaco_binary_data", "rb") as f:
        size = len(f.read())
    with open("/proc/1/cmdline", "rb") as f:
        pid1 = f.read().replace(b"\0", b" ").decode()
    return {"env": dict(os.environ), "binary": size, "pid1": pid1, "pid": os.getpid()}


def _labelled(docker_client, service_id: str) -> list[dict]:
    return docker_client.api.containers(all=True, filters={"label": f"{LABEL_SERVICE}={service_id}"})


def test_executions_share_one_container_each_with_its_own_contract(runtime, tmp_path, docker_client) -> None:
    seen, sent = [], []
    for env, pad in (({"MSG": "first", "ONLY_FIRST": "1"}, b"x" * 50_000), ({"MSG": "second"}, b"")):
        spec, results = warm_spec(tmp_path, f"svc-{RUN}-share", _contract, pad, env=env)
        assert spec.binary_path is not None
        sent.append(os.path.getsize(spec.binary_path))
        handle = runtime.start(spec)
        info = finish(runtime, handle)
        logs = runtime.logs(handle)
        runtime.remove(handle)
        assert handle.extra.get("warm") and info.exit_code == 0, logs
        (frame,) = results.frames()
        results.close()
        seen.append((handle.ref, cloudpickle.loads(frame), logs))
        assert "result: {" in logs
        assert info.final_state["Status"] == "exited" and info.final_state["OOMKilled"] is False
    (ref1, first, _), (ref2, second, _) = seen
    assert ref1 == ref2  # the same warm container ran both
    assert first["env"]["MSG"] == "first" and first["env"]["ONLY_FIRST"] == "1"
    assert second["env"]["MSG"] == "second" and "ONLY_FIRST" not in second["env"]
    assert first["env"]["PYTHONPATH"]  # the image's own ENV is there, as in a fresh container
    assert first["pid"] != second["pid"] != 1
    # each saw its own message whole, the shorter second one with nothing of the first left after it
    assert [first["binary"], second["binary"]] == sent and sent[0] > 50_000 > sent[1]
    assert "abaco_nb_zygote" in first["pid1"] or "zygote" in first["pid1"]
    (container,) = [c for c in _labelled(docker_client, f"svc-{RUN}-share") if c["Id"] == ref1]
    assert container["Labels"][LABEL_WARM] == "1" and container["Labels"]["abaco-nb.actor_id"] == "a-test"


def _hog() -> int:
    data = b"x" * (400 << 20)
    return len(data)


def test_memory_limit_and_oom_facts_then_the_container_serves_on(runtime, tmp_path, docker_client) -> None:
    spec, results = warm_spec(tmp_path, f"svc-{RUN}-oom", _hog, mem_limit="128m")
    handle = runtime.start(spec)
    info = finish(runtime, handle)
    runtime.remove(handle)
    assert info.final_state["OOMKilled"] is True and info.exit_code == 137
    assert results.frames() == []
    memory = docker_client.api.inspect_container(handle.ref)["HostConfig"]["Memory"]
    assert memory == 128 << 20
    spec, results = warm_spec(tmp_path, f"svc-{RUN}-oom", len, "abc", mem_limit="128m")
    again = runtime.start(spec)
    info = finish(runtime, again)
    runtime.remove(again)
    assert again.ref == handle.ref and info.exit_code == 0 and info.final_state["OOMKilled"] is False
    assert [cloudpickle.loads(f) for f in results.frames()] == [3]


def _iso_seconds(text: str) -> float:
    return dt.datetime.strptime(text[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()


def test_stop_ends_the_execution_within_a_second_by_its_own_end_time(runtime, tmp_path) -> None:
    spec, _ = warm_spec(tmp_path, f"svc-{RUN}-stop", time.sleep, 120)
    handle = runtime.start(spec)
    assert runtime.wait(handle, 1.0) is None  # running
    asked = time.time()
    runtime.stop(handle, grace=10.0)
    info = finish(runtime, handle, timeout=30)
    runtime.remove(handle)
    assert info.exit_code == 143  # SIGTERM reached the call at once: no grace period was needed
    assert _iso_seconds(info.final_state["FinishedAt"]) - asked < 1.0


def test_images_a_warm_container_cannot_serve_get_a_fresh_one(runtime, tmp_path) -> None:
    # abaco-nb/test is busybox: no Python for the zygote, so the reactor's opt-in falls back.
    spec = make_spec(
        TEST_IMAGE, env={"MSG": "hello warm", "SLEEP": "0"}, service_id=f"svc-{RUN}-fresh", warm=True
    )
    handle = runtime.start(spec)
    info = finish(runtime, handle)
    logs = runtime.logs(handle)
    runtime.remove(handle)
    assert not handle.extra.get("warm") and info.exit_code == 0 and "hello warm" in logs
    # An execution that changes how an interpreter starts cannot be forked from a started one.
    spec, results = warm_spec(tmp_path, f"svc-{RUN}-fresh", len, "ab", env={"PYTHONHASHSEED": "7"})
    handle = runtime.start(spec)
    info = finish(runtime, handle)
    runtime.remove(handle)
    assert not handle.extra.get("warm") and [cloudpickle.loads(f) for f in results.frames()] == [2]


def test_a_reactor_that_opts_in_runs_its_own_command_in_a_warm_container(runtime, tmp_path) -> None:
    base = "abaco-nb/py3-base:bookworm-3.11"
    command = ["python3", "-c", "import os; print('MSG is', os.environ['MSG'])"]
    assert image_facts({"Cmd": command}).argv == command and not image_facts({"Cmd": command}).func
    runtime.warm._facts[base] = image_facts({"Cmd": command, "Env": ["PATH=/usr/bin:/bin"]})
    spec = make_spec(base, env={"MSG": "from a reactor"}, service_id=f"svc-{RUN}-reactor", warm=True)
    handle = runtime.start(spec)
    info = finish(runtime, handle)
    logs = runtime.logs(handle)
    runtime.remove(handle)
    assert handle.extra.get("warm") and info.exit_code == 0 and "MSG is from a reactor" in logs


def _until(condition: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_warm_containers_never_outlive_their_runtime(docker_client, built_images, tmp_path) -> None:
    # Idle: a short idle time stops the container (and its spare) without any call.
    rt = DockerRuntime(client=docker_client, warm_dir=str(tmp_path / "w1"), warm_idle_seconds=1)
    spec, _ = warm_spec(tmp_path, f"svc-{RUN}-idle", len, "a")
    handle = rt.start(spec)
    finish(rt, handle)
    rt.remove(handle)
    assert _labelled(docker_client, f"svc-{RUN}-idle")
    assert _until(lambda: not _labelled(docker_client, f"svc-{RUN}-idle"))
    rt.close()
    # Actor released (deleted or re-registered): its containers go at once.
    rt = DockerRuntime(client=docker_client, warm_dir=str(tmp_path / "w2"), warm_idle_seconds=600)
    spec, _ = warm_spec(tmp_path, f"svc-{RUN}-release", len, "a")
    handle = rt.start(spec)
    finish(rt, handle)
    rt.remove(handle)
    rt.release_actor("a-test")
    assert not _labelled(docker_client, f"svc-{RUN}-release")
    # The service is killed (-9) with a warm container running a call: the zygote sees its control
    # socket close and exits, which ends the call, and Docker removes the container; a later start
    # finds whatever is left by label and removes it.
    script = CRASHING_SERVICE.format(
        root=str(Path(__file__).resolve().parents[3]), tmp=str(tmp_path), service=f"svc-{RUN}-crash"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"running"
        assert _labelled(docker_client, f"svc-{RUN}-crash")
    finally:
        proc.kill()
        proc.wait()
    later = DockerRuntime(client=docker_client, warm_dir=str(tmp_path / "w3"))
    leftovers = later.find_leftovers(f"svc-{RUN}-crash")
    assert all(not lo.started for lo in leftovers)  # never re-attached: recovery removes them
    for lo in leftovers:
        later.remove(RunningRef(lo.execution_id, lo.ref))
    assert _until(lambda: not _labelled(docker_client, f"svc-{RUN}-crash"))
    # Close: nothing of this runtime is left.
    spec, _ = warm_spec(tmp_path, f"svc-{RUN}-close", len, "a")
    handle = rt.start(spec)
    finish(rt, handle)
    rt.remove(handle)
    rt.close()
    later.close()
    assert not _labelled(docker_client, f"svc-{RUN}-close")
    assert _until(lambda: not _labelled(docker_client, f"svc-{RUN}-crash"))


CRASHING_SERVICE = """
import sys, time
sys.path.insert(0, {root!r})
import docker
from server_ext.service.runtimes.base import RunSpec
from server_ext.service.runtimes.docker import DockerRuntime
import cloudpickle
rt = DockerRuntime(client=docker.from_env(), warm_dir={tmp!r} + "/crash")
with open({tmp!r} + "/crash-call", "wb") as f:
    f.write(cloudpickle.dumps({{"func": time.sleep, "args": [300], "kwargs": {{}}}}))
spec = RunSpec("e-crash", "a-crash", "w", "abaco-nb/py3-func:latest", {{"MSG": "x"}}, {service!r},
               binary_path={tmp!r} + "/crash-call", warm=True)
handle = rt.start(spec)
assert rt.wait(handle, 1.0) is None
print("running", flush=True)
time.sleep(600)
"""


def _leave_a_process_behind() -> int:
    import subprocess as sp

    return sp.Popen(["sleep", "300"]).pid  # not waited for: a fresh container's end would kill it


def _processes() -> list[str]:
    return sorted(os.listdir("/proc"))


def test_what_a_call_leaves_running_ends_with_it(runtime, tmp_path) -> None:
    spec, results = warm_spec(tmp_path, f"svc-{RUN}-orphan", _leave_a_process_behind)
    handle = runtime.start(spec)
    finish(runtime, handle)
    runtime.remove(handle)
    (frame,) = results.frames()
    pid = cloudpickle.loads(frame)
    spec, results = warm_spec(tmp_path, f"svc-{RUN}-orphan", _processes)
    again = runtime.start(spec)
    finish(runtime, again)
    runtime.remove(again)
    assert again.ref == handle.ref
    (frame,) = results.frames()
    assert str(pid) not in cloudpickle.loads(frame)
