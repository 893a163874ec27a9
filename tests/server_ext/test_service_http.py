"""The service over HTTP: a real ``abaco-nb serve`` subprocess on the process runtime."""

from __future__ import annotations

import shlex
import sys
import time

import pytest

from tests.serve import Served, start_serve, wait_ready, wait_status

PY = sys.executable


def local(code: str) -> str:
    """A ``local:`` image running a Python snippet with this interpreter."""
    return "local:" + shlex.join([PY, "-c", code])


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    s = start_serve(tmp_path_factory.mktemp("http"), extra=["--max-body-bytes", "200000"])
    yield s
    s.stop()


def register(served: Served, **body) -> dict:
    r = served.session.post(served.api("/actors"), json=body)
    assert r.status_code == 200, r.text
    actor = r.json()["result"]
    assert actor["status"] == "SUBMITTED" and actor["revision"] == 1
    assert wait_ready(served, actor["id"])["status"] == "READY"
    return actor


def send(served: Served, actor_id: str, path_suffix: str = "", **kwargs) -> str:
    r = served.session.post(served.api(f"/actors/{actor_id}/messages{path_suffix}"), **kwargs)
    assert r.status_code == 200, r.text
    return r.json()["result"]["execution_id"]


def check_envelope(body: dict, status: str) -> None:
    assert set(body) >= {"message", "result", "status", "version"} and body["status"] == status


def test_actor_crud_and_prefixes(served):
    actor = register(
        served, image="abaco-nb/test", name="crud", description="d", default_environment={"key1": "value1"}
    )
    aid = actor["id"]
    for prefix in ("/actors", "/actors/v2", "/v3/actors", "//actors"):
        r = served.session.get(served.url + f"{prefix}/{aid}")
        assert r.status_code == 200 and r.json()["result"]["id"] == aid, prefix
        assert r.headers["Content-Type"] == "application/json"
    assert aid in [a["id"] for a in served.session.get(served.api("/actors")).json()["result"]]
    # PUT is a full replacement; name and owner are kept; same image and no force: same revision
    r = served.session.put(
        served.api(f"/actors/{aid}"), json={"image": "abaco-nb/test", "description": "new"}
    )
    updated = r.json()["result"]
    assert updated["name"] == "crud" and updated["description"] == "new"
    assert updated["default_environment"] == {} and updated["revision"] == 1
    r = served.session.put(served.api(f"/actors/{aid}"), json={"image": "abaco-nb/test", "force": True})
    assert r.json()["result"]["revision"] == 2
    assert wait_ready(served, aid)["status"] == "READY"
    r = served.session.delete(served.api(f"/actors/{aid}"))
    check_envelope(r.json(), "success")
    assert r.json()["result"] is None
    assert served.session.get(served.api(f"/actors/{aid}")).status_code == 404


def test_camel_case_on_request(served):
    actor = register(served, image="abaco-nb/test", defaultEnvironment={"SLEEP": "0"})
    assert actor["default_environment"] == {"SLEEP": "0"}
    r = served.session.get(served.api(f"/actors/{actor['id']}?case=camel"))
    assert r.json()["result"]["defaultEnvironment"] == {"SLEEP": "0"}


def test_string_json_and_query_override(served):
    actor = register(
        served, image="abaco-nb/test", default_environment={"key1": "value1", "key2": "value2", "SLEEP": "0"}
    )
    aid = actor["id"]
    eid = send(served, aid, "?key1=valueABC", data={"message": "some test message"})
    result = wait_status(served, aid, eid)
    assert result["status"] == "COMPLETE" and result["exit_code"] == 0
    for key in (
        "actor_id",
        "worker_id",
        "exit_code",
        "final_state",
        "message_received_time",
        "start_time",
        "finish_time",
        "runtime",
        "cpu",
        "io",
        "executor",
        "_links",
    ):
        assert key in result, key
    logs = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/logs")).json()["result"]["logs"]
    assert "Contents of MSG: some test message" in logs
    assert "key1=valueABC" in logs and "key2=value2" in logs and "_abaco_execution_id=" + eid in logs
    eid = send(served, aid, json={"username": "jdoe", "application_id": "app"})
    wait_status(served, aid, eid)
    logs = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/logs")).json()["result"]["logs"]
    assert "Contents of MSG: {'username': 'jdoe', 'application_id': 'app'}" in logs
    assert "_abaco_Content_Type=application/json" in logs
    summary = served.session.get(served.api(f"/actors/{aid}/executions")).json()["result"]
    assert summary["total_executions"] == 2 and [e["id"] for e in summary["executions"]][-1] == eid


def test_stateful_fifo_and_state_from_inside(served):
    code = (
        "import time, abaco_nb.actors as a; c = a.get_context(); s = c['state'] or {}; "
        "s['seen'] = s.get('seen', []) + [c['raw_message']]; a.update_state(s); print('ran', c['raw_message'])"
    )
    actor = register(served, image=local(code), stateless=False, token=True)
    aid = actor["id"]
    r = served.session.post(served.api(f"/actors/{aid}/state"), json={"seen": []})
    assert r.status_code == 200
    eids = [send(served, aid, data={"message": f"m{i}"}) for i in range(4)]
    results = [wait_status(served, aid, eid) for eid in eids]
    assert all(r["status"] == "COMPLETE" and r["exit_code"] == 0 for r in results), results
    starts = [r["start_time"] for r in results]
    assert starts == sorted(starts)  # strictly in order: one worker
    state = served.session.get(served.api(f"/actors/{aid}/state")).json()["result"]["state"]
    assert state == {"seen": ["m0", "m1", "m2", "m3"]}


def test_stateless_workers_run_in_parallel(served):
    actor = register(served, image=local("import time; time.sleep(1.5)"), max_workers=3)
    aid = actor["id"]
    eids = [send(served, aid, data={"message": str(i)}) for i in range(3)]
    results = [wait_status(served, aid, eid) for eid in eids]
    workers = {r["worker_id"] for r in results}
    assert len(workers) == 3  # three workers took one message each
    latest_start = max(r["start_time"] for r in results)
    earliest_finish = min(r["finish_time"] for r in results)
    assert latest_start < earliest_finish  # their runs overlapped


def test_binary_in_results_out(served):
    code = (
        "import abaco_nb.actors as a; data = a.get_binary_message(); "
        "a.send_bytes_result(data[::-1]); a.send_bytes_result(b'x' * 200000)"
    )
    actor = register(served, image=local(code))
    aid = actor["id"]
    r = served.session.post(
        served.api(f"/actors/{aid}/messages"),
        data=b"\x00abc\xff",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.json()["result"]["msg"] == "binary - omitted"
    eid = r.json()["result"]["executionId"]
    assert wait_status(served, aid, eid)["exit_code"] == 0
    first = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/results"))
    assert first.headers["Content-Type"] == "application/octet-stream" and first.content == b"\xffcba\x00"
    second = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/results"))
    assert second.content == b"x" * 200000  # not truncated at Abaco's 128 KiB
    assert served.session.get(served.api(f"/actors/{aid}/executions/{eid}/results")).content == b""


def test_failures_force_quit_and_time_limit(served):
    failing = register(served, image=local("import sys; print('bad'); sys.exit(3)"))
    eid = send(served, failing["id"], data={"message": "x"})
    result = wait_status(served, failing["id"], eid)
    assert (result["status"], result["exit_code"]) == ("COMPLETE", 3)
    sleeper = register(served, image=local("import time; print('start', flush=True); time.sleep(60)"))
    aid = sleeper["id"]
    eid = send(served, aid, data={"message": "x"})
    wait_status(served, aid, eid, ("RUNNING",))
    time.sleep(0.5)
    logs = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/logs")).json()["result"]["logs"]
    assert "start" in logs  # partial logs while running
    r = served.session.delete(served.api(f"/actors/{aid}/executions/{eid}"))
    assert r.status_code == 200 and "Issued force quit command" in r.json()["message"]
    result = wait_status(served, aid, eid)
    assert result["status"] == "COMPLETE" and "Force quit" in result["status_message"]
    r = served.session.delete(served.api(f"/actors/{aid}/executions/{eid}"))
    assert r.status_code == 400 and "RUNNING" in r.json()["message"]
    eid = send(served, aid, "?_abaco_nb_timeout=1", data={"message": "x"})
    result = wait_status(served, aid, eid)
    assert result["status"] == "COMPLETE" and "max_run_time" in result["status_message"]


def test_synchronous_message_returns_logs(served):
    actor = register(served, image="abaco-nb/test", default_environment={"SLEEP": "0"})
    r = served.session.post(
        served.api(f"/actors/{actor['id']}/messages?_abaco_synchronous=true"), data={"message": "sync please"}
    )
    assert r.status_code == 200 and "Contents of MSG: sync please" in r.text


def test_workers_and_queue(served):
    actor = register(served, image=local("import time; time.sleep(2)"), stateless=False)
    aid = actor["id"]
    eids = [send(served, aid, data={"message": str(i)}) for i in range(3)]
    wait_status(served, aid, eids[0], ("RUNNING",))
    messages = served.session.get(served.api(f"/actors/{aid}/messages")).json()["result"]
    assert messages["messages"] == 2
    workers = served.session.get(served.api(f"/actors/{aid}/workers")).json()["result"]
    assert len(workers) == 1 and workers[0]["status"] == "BUSY"
    r = served.session.delete(served.api(f"/actors/{aid}/messages"))
    assert r.status_code == 200
    assert served.session.get(served.api(f"/actors/{aid}/messages")).json()["result"]["messages"] == 0
    wid = workers[0]["id"]
    assert served.session.get(served.api(f"/actors/{aid}/workers/{wid}")).json()["result"]["id"] == wid


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        ("GET", "/actors/nope", {}, 404, "nope"),
        ("PUT", "/actors", {}, 405, "PUT"),
        (
            "POST",
            "/actors",
            {"data": b"{bad json", "headers": {"Content-Type": "application/json"}},
            400,
            "JSON",
        ),
        ("POST", "/actors", {"json": {"name": "no image"}}, 400, "image"),
        ("POST", "/actors", {"json": {"image": "i", "stateless": "abcd"}}, 400, "stateless"),
        ("POST", "/actors", {"json": {"image": "i", "default_environment": [1]}}, 400, "default_environment"),
        (
            "POST",
            "/actors",
            {"data": b"x" * 300000, "headers": {"Content-Type": "application/json"}},
            413,
            "large",
        ),
        ("GET", "/nothing/here", {}, 404, "route"),
    ],
)
def test_bad_input_gets_an_envelope(served, method, path, kwargs, status, needle):
    r = served.session.request(method, served.api(path), **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    check_envelope(body, "error")
    assert body["result"] is None and needle.lower() in body["message"].lower()


def test_unknown_execution_and_stateless_state(served):
    actor = register(served, image="abaco-nb/test")
    r = served.session.get(served.api(f"/actors/{actor['id']}/executions/NOPE"))
    assert r.status_code == 400 and "NOPE" in r.json()["message"]
    r = served.session.get(served.api(f"/actors/{actor['id']}/state"))
    assert r.status_code == 404 and r.json()["message"] == "actor is stateless."
    r = served.session.post(
        served.api(f"/actors/{actor['id']}/messages"),
        data=b"plain text",
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 400 and "message" in r.json()["message"]


def test_missing_token_is_refused(served):
    r = served.session.get(served.api("/actors"), headers={"Authorization": ""})
    assert r.status_code == 401
    check_envelope(r.json(), "error")
    r = served.session.get(served.api("/actors"), headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_image_the_runtime_cannot_run_goes_error(served):
    r = served.session.post(served.api("/actors"), json={"image": "abacosamples/wc"})
    actor = wait_ready(served, r.json()["result"]["id"])
    assert actor["status"] == "ERROR" and "process runtime" in actor["status_message"]


def test_default_memory_limit_applies_to_processes(tmp_path):
    limited = start_serve(tmp_path, extra=["--mem-limit", "256m"])
    try:
        actor = register(limited, image=local("x = bytearray(600 * 1024 * 1024); print('allocated')"))
        eid = send(limited, actor["id"], data={"message": "x"})
        result = wait_status(limited, actor["id"], eid)
        logs = limited.session.get(limited.api(f"/actors/{actor['id']}/executions/{eid}/logs")).json()
        assert result["exit_code"] != 0 and "MemoryError" in logs["result"]["logs"]
    finally:
        limited.stop()
