"""Events (link, webhook) and cron schedules over HTTP, against a real ``abaco-nb serve``.

Mirrors Abaco's own tests (reference/abaco-api.md §6.2 "Events", checklist items 30 and 31): an actor
linked to another gives the target one execution per event, whose logs show the event's Python repr;
a webhook receives the JSON events in order; cycles and bad URLs are 400; a ``now`` schedule runs.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.serve import Served, start_serve, wait_ready, wait_status

FAST = {"SLEEP": "0"}  # abaco-nb/test prints MSG and its environment, then sleeps $SLEEP


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One service for the module, with a cron pass every second instead of Abaco's 50."""
    s = start_serve(tmp_path_factory.mktemp("events"), extra=["--cron-interval", "1"])
    yield s
    s.stop()


def register(served: Served, **body: Any) -> dict[str, Any]:
    body.setdefault("image", "abaco-nb/test")
    body.setdefault("default_environment", FAST)
    r = served.session.post(served.api("/actors"), json=body)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def send(served: Served, actor_id: str, message: str) -> str:
    r = served.session.post(served.api(f"/actors/{actor_id}/messages"), data={"message": message})
    assert r.status_code == 200, r.text
    return r.json()["result"]["execution_id"]


def executions(served: Served, actor_id: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The actor's first ``count`` executions, once there are that many and all have ended."""
    deadline = time.monotonic() + timeout
    while True:
        listed = served.session.get(served.api(f"/actors/{actor_id}/executions")).json()["result"]
        ids = [e["id"] for e in listed["executions"]]
        if len(ids) >= count:
            return [wait_status(served, actor_id, eid) for eid in ids[:count]]
        assert time.monotonic() < deadline, f"{actor_id} has {len(ids)} executions, expected {count}"
        time.sleep(0.1)


def logs(served: Served, actor_id: str, eid: str) -> str:
    r = served.session.get(served.api(f"/actors/{actor_id}/executions/{eid}/logs"))
    assert r.status_code == 200, r.text
    return str(r.json()["result"]["logs"])


def test_a_linked_actor_gets_ready_and_execution_complete_events(served: Served) -> None:
    target = register(served, name="event-target")
    source = register(served, name="event-source", link=target["id"])
    assert source["link"] == target["id"]
    assert wait_ready(served, source["id"])["status"] == "READY"
    eid = send(served, source["id"], "hello events")
    assert wait_status(served, source["id"], eid)["status"] == "COMPLETE"

    ready, complete = executions(served, target["id"], 2)
    assert ready["executor"] == complete["executor"] == "Abaco Event"
    ready_logs = logs(served, target["id"], ready["id"])
    assert "'event_type': 'ACTOR_READY'" in ready_logs
    for name in ("event_time_utc", "event_time_display", "actor_dbid", "_abaco_link", "_abaco_webhook"):
        assert f"'{name}'" in ready_logs
    assert f"'actor_id': '{source['id']}'" in ready_logs
    assert "_abaco_username=Abaco Event" in ready_logs
    assert "_abaco_Content_Type=application/json" in ready_logs
    complete_logs = logs(served, target["id"], complete["id"])
    assert "'event_type': 'EXECUTION_COMPLETE'" in complete_logs
    assert f"'execution_id': '{eid}'" in complete_logs
    assert "'status': 'COMPLETE'" in complete_logs and "'exit_code': 0" in complete_logs


def test_a_link_may_name_an_alias(served: Served) -> None:
    target = register(served, name="alias-target")
    r = served.session.post(
        served.api("/actors/aliases"), json={"alias": "event-sink", "actor_id": target["id"]}
    )
    assert r.status_code == 200, r.text
    source = register(served, name="alias-source", link="event-sink")
    assert wait_ready(served, source["id"])["status"] == "READY"
    (ready,) = executions(served, target["id"], 1)
    assert "'event_type': 'ACTOR_READY'" in logs(served, target["id"], ready["id"])
    r = served.session.put(
        served.api(f"/actors/{target['id']}"), json={"image": "abaco-nb/test", "link": source["id"]}
    )
    assert r.status_code == 400 and "cycle of linked actors" in r.json()["message"]


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    arrived: threading.Condition

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.arrived:
            self.received.append({"content_type": self.headers.get("Content-Type"), **json.loads(body)})
            self.arrived.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Hook]]]:
    """A small HTTP server on 127.0.0.1 that keeps the JSON bodies POSTed to it, in arrival order."""
    handler = type("Hook", (_Hook,), {"received": [], "arrived": threading.Condition()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def test_a_webhook_receives_the_json_events_in_order(
    served: Served, webhook: tuple[str, type[_Hook]]
) -> None:
    url, hook = webhook
    actor = register(served, name="event-webhook", webhook=url, stateless=False)  # runs in order
    assert wait_ready(served, actor["id"])["status"] == "READY"
    sent = [send(served, actor["id"], f"message {i}") for i in range(3)]
    for eid in sent:
        wait_status(served, actor["id"], eid)
    with hook.arrived:
        assert hook.arrived.wait_for(lambda: len(hook.received) >= 4, timeout=60), hook.received
        received = list(hook.received)
    assert [e["event_type"] for e in received] == ["ACTOR_READY"] + ["EXECUTION_COMPLETE"] * 3
    assert [e["execution_id"] for e in received[1:]] == sent
    assert {e["content_type"] for e in received} == {"application/json"}
    assert all(e["actor_id"] == actor["id"] and e["_abaco_webhook"] == url for e in received)
    assert received[0]["status_message"] == "" and received[1]["status"] == "COMPLETE"


def test_links_that_would_make_a_cycle_are_400(served: Served) -> None:
    a = register(served, name="cycle-a")
    b = register(served, name="cycle-b", link=a["id"])
    c = register(served, name="cycle-c", link=b["id"])
    r = served.session.put(served.api(f"/actors/{a['id']}"), json={"image": "abaco-nb/test", "link": c["id"]})
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error"
    assert "this update would result in a cycle of linked actors" in r.json()["message"]
    r = served.session.put(served.api(f"/actors/{a['id']}"), json={"image": "abaco-nb/test", "link": a["id"]})
    assert r.status_code == 400 and "cycle of linked actors" in r.json()["message"]
    r = served.session.post(served.api("/actors"), json={"image": "abaco-nb/test", "link": "NoSuchActor"})
    assert r.status_code == 400 and "link" in r.json()["message"]
    r = served.session.put(
        served.api(f"/actors/{a['id']}"), json={"image": "abaco-nb/test", "link": b["id"] + "x"}
    )
    assert r.status_code == 400 and "link" in r.json()["message"]
    assert served.session.get(served.api(f"/actors/{a['id']}")).json()["result"]["link"] == ""


@pytest.mark.parametrize("url", ["not a url", "ftp://example.org/hook", "127.0.0.1:8080/hook"])
def test_a_bad_webhook_url_is_400(served: Served, url: str) -> None:
    r = served.session.post(served.api("/actors"), json={"image": "abaco-nb/test", "webhook": url})
    assert r.status_code == 400, r.text
    assert "webhook" in r.json()["message"] and r.json()["result"] is None


def test_a_now_schedule_runs_a_cron_execution(served: Served) -> None:
    actor = register(served, name="cron-now", cron_schedule="now + 1 hour")
    this_hour = dt.datetime.strptime(actor["cron_next_ex"], "%Y-%m-%d %H")
    assert actor["cron_on"] is True and actor["cron_schedule"] == "now + 1 hour"
    (run,) = executions(served, actor["id"], 1)
    assert run["executor"] == "cron" and run["status"] == "COMPLETE"
    text = logs(served, actor["id"], run["id"])
    assert "Contents of MSG: This is your cron execution" in text
    assert "_abaco_Content_Type=str" in text and "_abaco_username" not in text
    shown = served.session.get(served.api(f"/actors/{actor['id']}")).json()["result"]
    assert dt.datetime.strptime(shown["cron_next_ex"], "%Y-%m-%d %H") > this_hour

    # A PUT that keeps the schedule and switches cron off keeps the next run and stops the runs.
    body = {"image": "abaco-nb/test", "cron_schedule": "now + 1 hour", "cron_on": False}
    r = served.session.put(served.api(f"/actors/{actor['id']}"), json=body)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["cron_on"] is False
    assert r.json()["result"]["cron_next_ex"] == shown["cron_next_ex"]


def test_cron_schedule_validation(served: Served) -> None:
    for bad in ("every hour", "2030-01-01 00 + 1 minute", "2030-02-30 00 + 1 day"):
        r = served.session.post(served.api("/actors"), json={"image": "abaco-nb/test", "cron_schedule": bad})
        assert r.status_code == 400 and "cron_schedule" in r.json()["message"], r.text
    r = served.session.post(
        served.api("/actors"), json={"image": "abaco-nb/test", "cron_schedule": "2000-01-01 00 + 1 day"}
    )
    assert r.status_code == 400
    assert "The starting datetime is old. The current UTC time is" in r.json()["message"]
    future = register(served, name="cron-later", cron_schedule="2099-12-31 23 + 2 months")
    assert (future["cron_on"], future["cron_next_ex"]) == (True, "2099-12-31 23")
    assert register(served, name="no-cron")["cron_next_ex"] is None
