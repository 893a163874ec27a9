"""Docker faults against a real ``abaco-nb serve --runtime docker``, through a Docker endpoint the test
controls: ``DOCKER_HOST`` points at a unix-socket proxy to the machine's engine (tests/docker_proxy.py)
that the test cuts, stalls and restores. The machine's daemon is never stopped, and only containers
carrying this test's actor labels are looked at.

What must hold (issue 10): during an outage messages stay queued and nothing in flight is failed;
executions whose containers are still there are reconciled when Docker answers (their real exit code
and logs); nothing is left behind. A claimed execution whose container was never created goes back to
its mailbox after a ``kill -9`` and runs once. An actor in ERROR refuses messages with its status
message; a PUT that makes it READY runs what was queued. While a PUT's new image is checked the
actor's workers are listed and more can be asked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker_proxy import DockerProxy, docker_proxy
from tests.serve import Served, start_serve, wait_ready, wait_status

pytestmark = pytest.mark.docker

SH = "abaco-nb/test"  # busybox: prints MSG, sleeps $SLEEP, prints its environment


@pytest.fixture
def proxy(tmp_path: Path, docker_client: Any, built_images: Any) -> Iterator[DockerProxy]:
    with docker_proxy(tmp_path / "docker.sock") as p:
        yield p


def _serve(tmp_path: Path, proxy: DockerProxy, name: str = "svc", db: Path | None = None) -> Served:
    return start_serve(tmp_path / name, runtime="docker", db=db, env={"DOCKER_HOST": proxy.docker_host})


def _register(served: Served, **body: Any) -> str:
    r = served.session.post(served.api("/actors"), json=body, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["result"]["id"])


def _send(served: Served, aid: str, message: str = "x") -> str:
    r = served.session.post(served.api(f"/actors/{aid}/messages"), data={"message": message}, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["result"]["execution_id"])


def _execution(served: Served, aid: str, eid: str) -> dict[str, Any]:
    r = served.session.get(served.api(f"/actors/{aid}/executions/{eid}"), timeout=30)
    return dict(r.json()["result"])


def _logs(served: Served, aid: str, eid: str) -> str:
    r = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/logs"), timeout=30)
    return str(r.json()["result"]["logs"])


def _containers_of(docker_client: Any, aid: str) -> list[str]:
    """Ids of the containers labelled with this actor (one listing call: no inspect that races removal)."""
    found = docker_client.api.containers(all=True, filters={"label": f"abaco-nb.actor_id={aid}"})
    return [c["Id"] for c in found]


def _none_left(docker_client: Any, aid: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _containers_of(docker_client, aid) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _containers_of(docker_client, aid) == [], "containers left behind"


def test_docker_unreachable_then_back(tmp_path, proxy, docker_client):
    served = _serve(tmp_path, proxy)
    try:
        aid = _register(served, image=SH, default_environment={"SLEEP": "5"}, max_workers=3)
        assert wait_ready(served, aid)["status"] == "READY"
        in_flight = [_send(served, aid, f"before {i}") for i in range(5)]  # three run, two queued
        for eid in in_flight[:3]:
            wait_status(served, aid, eid, ("RUNNING",))
        proxy.cut()
        during = [_send(served, aid, f"during {i}") for i in range(3)]  # accepted: the store is fine
        later = _register(served, image=SH, default_environment={"SLEEP": "0"})  # its check waits
        time.sleep(8)  # the running containers exit while the service cannot see them
        states = {eid: _execution(served, aid, eid)["status"] for eid in in_flight + during}
        assert "ERROR" not in states.values(), states  # nothing in flight is failed
        assert all(states[eid] == "SUBMITTED" for eid in in_flight[3:] + during), states  # queued
        assert served.session.get(served.api(f"/actors/{later}")).json()["result"]["status"] == "SUBMITTED"
        proxy.restore()
        for eid in in_flight + during:  # reconciled from Docker: the real exit code and logs
            result = wait_status(served, aid, eid, timeout=120)
            why = f"{eid}: {result['status_message']!r} (before {in_flight}, during {during})"
            assert (result["status"], result["exit_code"]) == ("COMPLETE", 0), why
            assert "Contents of MSG: " in _logs(served, aid, eid)
        assert f"Contents of MSG: {'before 0'}" in _logs(served, aid, in_flight[0])
        _none_left(docker_client, aid)  # every container removed, also those that ended unseen
        assert wait_ready(served, later)["status"] == "READY"  # not ERROR: Docker was only away
    finally:
        served.stop()


def test_kill9_after_a_claim_whose_container_was_never_created(tmp_path, proxy, docker_client):
    served = _serve(tmp_path, proxy)
    restarted = None
    try:
        aid = _register(served, image=SH, default_environment={"SLEEP": "0"}, stateless=False)
        assert wait_ready(served, aid)["status"] == "READY"
        proxy.cut()
        eid = _send(served, aid, "claimed, never created")
        wait_status(served, aid, eid, ("RUNNING",))  # claimed; its create cannot reach Docker
        assert _containers_of(docker_client, aid) == []
        served.kill9()
        proxy.restore()
        restarted = _serve(tmp_path, proxy, "svc2", db=served.db)
        result = wait_status(restarted, aid, eid, timeout=120)
        assert (result["status"], result["exit_code"]) == ("COMPLETE", 0), result  # run, once
        assert "Interrupted" not in result["status_message"]
        assert "Contents of MSG: claimed, never created" in _logs(restarted, aid, eid)
        _none_left(docker_client, aid)
    finally:
        served.stop()
        if restarted is not None:
            restarted.stop()


def test_workers_while_a_new_image_is_checked(tmp_path, proxy, docker_client):
    served = _serve(tmp_path, proxy)
    try:
        aid = _register(served, image=SH, default_environment={"SLEEP": "0"})
        assert wait_ready(served, aid)["status"] == "READY"
        proxy.stall()  # the image check of the PUT waits on Docker
        r = served.session.put(served.api(f"/actors/{aid}"), json={"image": f"{SH}:latest"}, timeout=30)
        assert r.status_code == 200 and r.json()["result"]["status"] == "SUBMITTED", r.text
        workers = served.session.get(served.api(f"/actors/{aid}/workers"), timeout=30)
        assert workers.status_code == 200 and workers.json()["result"], workers.text  # listed, as Abaco
        more = served.session.post(served.api(f"/actors/{aid}/workers"), json={"num": 2}, timeout=30)
        assert more.status_code == 200, more.text
        eid = _send(served, aid, "after the PUT")
        assert _execution(served, aid, eid)["status"] == "SUBMITTED"
        listed = served.session.get(served.api(f"/actors/{aid}/workers"), timeout=30).json()["result"]
        assert len(listed) == 2 and {w["status"] for w in listed} == {"REQUESTED"}, listed
        proxy.restore()  # the check ends: the workers start and the message runs
        assert wait_ready(served, aid)["status"] == "READY"
        result = wait_status(served, aid, eid, timeout=120)
        assert (result["status"], result["exit_code"]) == ("COMPLETE", 0), result
        listed = served.session.get(served.api(f"/actors/{aid}/workers"), timeout=30).json()["result"]
        assert len(listed) >= 2 and "REQUESTED" not in {w["status"] for w in listed}, listed
        _none_left(docker_client, aid)
    finally:
        served.stop()


def test_an_actor_in_error_refuses_messages_and_a_put_runs_what_was_queued(tmp_path, proxy, docker_client):
    served = _serve(tmp_path, proxy)
    try:
        proxy.stall()  # queue two messages while its image is still being checked
        aid = _register(served, image="abaco-nb/none-such:1", default_environment={"SLEEP": "0"})
        queued = [_send(served, aid, f"queued {i}") for i in range(2)]
        proxy.restore()
        actor = wait_ready(served, aid)
        assert actor["status"] == "ERROR" and "not present" in actor["status_message"], actor
        r = served.session.post(
            served.api(f"/actors/{aid}/messages"), data={"message": "refused"}, timeout=30
        )
        assert r.status_code == 400, r.text
        assert "ERROR" in r.json()["message"] and actor["status_message"] in r.json()["message"]
        assert [_execution(served, aid, e)["status"] for e in queued] == ["SUBMITTED", "SUBMITTED"]
        r = served.session.put(
            served.api(f"/actors/{aid}"), json={"image": SH, "default_environment": {"SLEEP": "0"}}
        )
        assert r.status_code == 200, r.text
        assert wait_ready(served, aid)["status"] == "READY"
        for eid in queued:
            assert wait_status(served, aid, eid, timeout=120)["status"] == "COMPLETE"
        _none_left(docker_client, aid)
    finally:
        served.stop()
