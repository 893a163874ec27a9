"""DockerRuntime on the real engine: Abaco's container contract, exit facts, limits, stop, leftovers.

Every container runs with networking off and is removed by the test that started it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from server_ext.service.runtimes.base import (
    LABEL_ACTOR,
    LABEL_EXECUTION,
    LABEL_SERVICE,
    LABEL_WORKER,
    ExitInfo,
    RunningRef,
    RunSpec,
    RuntimeFailure,
)
from server_ext.service.runtimes.docker import STATE_KEYS, DockerRuntime

pytestmark = pytest.mark.docker

TEST_IMAGE = "abaco-nb/test:latest"
FUNC_IMAGE = "abaco-nb/py3-func:latest"


@pytest.fixture
def runtime(docker_client, built_images) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(client=docker_client)
    yield rt
    # Whatever a failing test left behind: tests use service ids "svc-...", so clean up by that label.
    for c in docker_client.api.containers(all=True, filters={"label": LABEL_SERVICE}):
        if (c.get("Labels") or {}).get(LABEL_SERVICE, "").startswith("svc-"):
            docker_client.api.remove_container(c["Id"], force=True)


def make_spec(image: str = TEST_IMAGE, env: dict[str, str] | None = None, **kw: Any) -> RunSpec:
    eid = uuid.uuid4().hex[:12]
    return RunSpec(
        execution_id=f"e{eid}",
        actor_id="a-test",
        worker_id="w-test",
        image=image,
        environment=dict(env or {}),
        service_id=kw.pop("service_id", f"svc-{eid}"),
        **kw,
    )


def run_to_end(rt: DockerRuntime, spec: RunSpec, timeout: float = 60) -> tuple[ExitInfo, str, RunningRef]:
    """Start, wait (polling like the dispatcher does), read logs, remove."""
    run = rt.start(spec)
    try:
        deadline = time.monotonic() + timeout
        info = None
        while info is None and time.monotonic() < deadline:
            info = rt.wait(run, 0.5)
        assert info is not None, "container did not finish in time"
        return info, rt.logs(run), run
    finally:
        rt.stop(run, grace=1)
        rt.remove(run)


class ResultsSocket:
    """The host end of an execution's results socket: a bound AF_UNIX SOCK_DGRAM socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)

    def frames(self) -> list[bytes]:
        self.sock.settimeout(0.2)
        out = []
        while True:
            try:
                out.append(self.sock.recv(4 << 20))
            except (TimeoutError, BlockingIOError):
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def results(tmp_path) -> Iterator[ResultsSocket]:
    rs = ResultsSocket(tmp_path / "results.sock")
    yield rs
    rs.close()


def pickled_call(tmp_path: Path, func: Any, *args: Any, **kwargs: Any) -> str:
    path = tmp_path / "binary_message"
    path.write_bytes(cloudpickle.dumps({"func": func, "args": list(args), "kwargs": kwargs}))
    return str(path)


def test_test_image_prints_msg_env_and_root(runtime, docker_client):
    env = {
        "MSG": "testing execution",
        "SLEEP": "0",
        "key1": "value1",
        "_abaco_Content_Type": "str",
        "_abaco-Content-Type": "str",
        "_abaco_actor_state": "{}",
    }
    spec = make_spec(env=env)
    run = runtime.start(spec)
    try:
        labels = docker_client.api.inspect_container(run.ref)["Config"]["Labels"]
        assert labels[LABEL_SERVICE] == spec.service_id
        assert labels[LABEL_ACTOR] == "a-test"
        assert labels[LABEL_EXECUTION] == spec.execution_id
        assert labels[LABEL_WORKER] == "w-test"
        host = docker_client.api.inspect_container(run.ref)["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["Privileged"] is False
        assert host["Memory"] == 1 << 30
        assert host["NanoCpus"] == 1_000_000_000
        assert "no-new-privileges" in host["SecurityOpt"]
        info = runtime.wait(run, 30)
        assert info is not None
        logs = runtime.logs(run)
    finally:
        runtime.remove(run)
    assert info.exit_code == 0
    assert set(STATE_KEYS) <= set(info.final_state)
    assert info.final_state["Status"] == "exited" and info.final_state["OOMKilled"] is False
    assert info.final_state["StartedAt"] and info.final_state["FinishedAt"]
    assert "Contents of MSG: testing execution" in logs
    assert "key1=value1" in logs and "_abaco-Content-Type=str" in logs and "_abaco_Content_Type=str" in logs
    assert "PATH=" in logs
    assert "Contents of root file system:" in logs and "bin" in logs.split("root file system:")[1]
    runtime.remove(run)  # idempotent
    assert runtime.find_leftovers(spec.service_id) == []


def test_partial_logs_cpu_while_running(runtime):
    spec = make_spec(env={"MSG": "partial", "SLEEP": "3"})
    run = runtime.start(spec)
    try:
        time.sleep(1.0)
        assert runtime.wait(run, 0.1) is None
        assert "Contents of MSG: partial" in runtime.logs(run)
        info = runtime.wait(run, 30)
        assert info is not None and info.exit_code == 0
        assert info.cpu > 0, "cpu should have been sampled while the container ran"
        assert runtime.wait(run, 0) is info  # cached
    finally:
        runtime.remove(run)


def test_function_result_over_results_socket(runtime, results, tmp_path):
    def f(a, b, c=0):
        return a * b + c

    spec = make_spec(
        FUNC_IMAGE,
        binary_path=pickled_call(tmp_path, f, 5, 7, c=5),
        results_socket=results.path,
    )
    info, logs, _ = run_to_end(runtime, spec)
    assert info.exit_code == 0, logs
    assert [cloudpickle.loads(fr) for fr in results.frames()] == [40]
    assert "result: 40" in logs


def test_five_megabyte_binary_message(runtime, results, tmp_path):
    payload = os.urandom(5 * 1024 * 1024)

    def digest(data):
        import hashlib

        return len(data), hashlib.sha256(data).hexdigest()

    spec = make_spec(
        FUNC_IMAGE, binary_path=pickled_call(tmp_path, digest, payload), results_socket=results.path
    )
    info, logs, _ = run_to_end(runtime, spec)
    assert info.exit_code == 0, logs
    frames = results.frames()
    assert [cloudpickle.loads(fr) for fr in frames] == [(len(payload), hashlib.sha256(payload).hexdigest())]


def test_binary_file_is_read_only_and_raw_bytes_readable(runtime, results, tmp_path):
    def probe():
        import os

        from abaco_nb.actors import BINARY_DATA_PATH, get_binary_message

        try:
            with open(BINARY_DATA_PATH, "ab"):
                writable = True
        except OSError:
            writable = False
        return os.path.isfile(BINARY_DATA_PATH), writable, len(get_binary_message())

    binary = pickled_call(tmp_path, probe)
    spec = make_spec(FUNC_IMAGE, binary_path=binary, results_socket=results.path)
    info, logs, _ = run_to_end(runtime, spec)
    assert info.exit_code == 0, logs
    assert [cloudpickle.loads(fr) for fr in results.frames()] == [(True, False, os.path.getsize(binary))]


def test_200kb_result_frames_not_truncated(runtime, results, tmp_path):
    def send_big():
        from abaco_nb.actors import send_bytes_result

        send_bytes_result(b"y" * 200_000)
        return b"z" * 200_000

    spec = make_spec(FUNC_IMAGE, binary_path=pickled_call(tmp_path, send_big), results_socket=results.path)
    info, logs, _ = run_to_end(runtime, spec)
    assert info.exit_code == 0, logs
    frames = results.frames()
    assert len(frames) == 2
    assert frames[0] == b"y" * 200_000
    assert cloudpickle.loads(frames[1]) == b"z" * 200_000


def test_non_zero_exit_with_traceback(runtime, results, tmp_path):
    def boom():
        raise ValueError("no good")

    spec = make_spec(FUNC_IMAGE, binary_path=pickled_call(tmp_path, boom), results_socket=results.path)
    info, logs, _ = run_to_end(runtime, spec)
    assert info.exit_code == 1
    assert info.final_state["ExitCode"] == 1 and info.final_state["OOMKilled"] is False
    assert "ValueError: no good" in logs and "Traceback" in logs
    assert results.frames() == []


def test_oom_killed_under_small_memory_limit(runtime, tmp_path):
    def hog():
        blocks = []
        for _ in range(64):
            blocks.append(b"x" * (16 << 20))
        return len(blocks)

    spec = make_spec(FUNC_IMAGE, binary_path=pickled_call(tmp_path, hog), mem_limit="64m")
    info, logs, _ = run_to_end(runtime, spec)
    assert info.final_state["OOMKilled"] is True, (info, logs)
    assert info.exit_code == 137


def test_stop_long_running_container(runtime):
    spec = make_spec(env={"MSG": "long", "SLEEP": "600"})
    run = runtime.start(spec)
    try:
        time.sleep(0.5)
        assert runtime.wait(run, 0.1) is None
        t0 = time.monotonic()
        runtime.stop(run, grace=1)
        info = runtime.wait(run, 15)
        assert info is not None
        assert time.monotonic() - t0 < 10
        assert info.exit_code in (137, 143)
        assert info.final_state["Running"] is False
        runtime.stop(run, grace=1)  # stopping a stopped container is fine
    finally:
        runtime.remove(run)


def test_leftovers_found_by_label_attached_and_removed(runtime, docker_client):
    service_id = f"svc-left-{uuid.uuid4().hex[:8]}"
    spec = make_spec(env={"MSG": "left", "SLEEP": "600"}, service_id=service_id)
    run = runtime.start(spec)
    try:
        other = DockerRuntime(client=docker_client)  # a "restarted service"
        leftovers = other.find_leftovers(service_id)
        assert [(lo.execution_id, lo.ref, lo.running) for lo in leftovers] == [
            (spec.execution_id, run.ref, True)
        ]
        assert other.find_leftovers("some-other-service") == [] or all(
            lo.ref != run.ref for lo in other.find_leftovers("some-other-service")
        )
        attached = other.attach(leftovers[0])
        assert attached.execution_id == spec.execution_id
        assert other.wait(attached, 0.2) is None
        assert "Contents of MSG: left" in other.logs(attached)
        other.stop(attached, grace=0)
        info = other.wait(attached, 15)
        assert info is not None and info.exit_code == 137
        other.remove(attached)
        assert other.find_leftovers(service_id) == []
    finally:
        runtime.remove(run)


def test_check_image(runtime):
    assert runtime.check_image(TEST_IMAGE).ok
    assert runtime.check_image(TEST_IMAGE, pull=True).ok  # local-only image: never pulled

    missing = runtime.check_image("127.0.0.1:5999/none/such")
    assert not missing.ok
    assert "127.0.0.1:5999/none/such" in missing.message and "could not be pulled" in missing.message

    ours = runtime.check_image("abaco-nb/no-such-image")
    assert not ours.ok and "abaco-nb images build" in ours.message


def test_start_missing_image_raises_readable_error(runtime):
    with pytest.raises(RuntimeFailure, match="abaco-nb images build"):
        runtime.start(make_spec("abaco-nb/no-such-image:latest"))
    with pytest.raises(RuntimeFailure, match="not a regular file"):
        runtime.start(make_spec(binary_path="/nonexistent/abaco-nb/binary"))
    # A missing bind source would become an empty directory in the container: refused instead.
    with pytest.raises(RuntimeFailure, match="does not exist"):
        runtime.start(make_spec(results_socket="/nonexistent/abaco-nb/results.sock"))


class _StateHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in for the service's API on a unix socket: records requests, answers with the envelope."""

    seen: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def _reply(self, result: Any) -> None:
        body = json.dumps(
            {"message": "ok", "result": result, "status": "success", "version": "test"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length))
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        self._reply({"id": "a-test", "state": body})

    def do_GET(self) -> None:  # noqa: N802
        self._reply({"state": {"count": 41}})


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)


def test_api_socket_update_state_from_inside_container(runtime, results, tmp_path):
    api_path = str(tmp_path / "api.sock")
    server = _UnixHTTPServer(api_path, _StateHandler)
    os.chmod(api_path, 0o777)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _StateHandler.seen = []

    def accumulate():
        from abaco_nb.actors import get_client, get_context, update_state

        ctx = get_context()
        current = get_client().actors.getState(actorId=ctx["actor_id"])["state"]["count"]
        update_state({"count": current + ctx["message_dict"]["count"]})
        return ctx["state"]

    env = {
        "_abaco_api_server": "http+unix://%2F_abaco_api.sock",
        "_abaco_access_token": "tok-123",
        "_abaco_actor_id": "a-test",
        "_abaco_actor_state": "{'count': 41}",
        "MSG": "{'count': 1}",
    }
    spec = make_spec(
        FUNC_IMAGE,
        env=env,
        binary_path=pickled_call(tmp_path, accumulate),
        results_socket=results.path,
        api_socket=api_path,
    )
    try:
        info, logs, _ = run_to_end(runtime, spec)
    finally:
        server.shutdown()
        server.server_close()
    assert info.exit_code == 0, logs
    assert _StateHandler.seen == [
        {"path": "/actors/a-test/state", "auth": "Bearer tok-123", "body": {"count": 42}}
    ]
    assert [cloudpickle.loads(fr) for fr in results.frames()] == [{"count": 41}]
