"""Execution retention and the paged executions list, against a real ``abaco-nb serve`` (issue 9),
and the pure rule (``service/retention.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server_ext.service.models import COMPLETE, RUNNING, SUBMITTED, Execution
from server_ext.service.retention import Retention, to_prune
from tests import serve
from tests.server_ext.serve_fixture import Served, ok, python_command

QUICK = python_command('print("ok")')


def _execution(eid: str, status: str, finished: float | None) -> Execution:
    return Execution(
        id=eid,
        actor_id="A",
        executor="u",
        status=status,
        message_received_time=0.0,
        content_type="str",
        finish_time=finished,
        cpu=1,
        io=2,
        runtime=3,
    )


def test_the_rule_keeps_the_newest_and_the_young_and_never_prunes_what_is_queued_or_running() -> None:
    listed = [_execution(f"E{i}", COMPLETE, float(i)) for i in range(6)]
    listed += [_execution("Q", SUBMITTED, None), _execution("R", RUNNING, None)]
    assert [e.id for e in to_prune(listed, Retention(keep=2, max_age=0), now=100.0)] == [
        "E0",
        "E1",
        "E2",
        "E3",
    ]
    assert [e.id for e in to_prune(listed, Retention(keep=0, max_age=97.5), now=100.0)] == ["E0", "E1", "E2"]
    assert to_prune(listed, Retention(keep=0, max_age=0), now=100.0) == []


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data: Path = tmp_path_factory.mktemp("retention")
    # --executor-idle-seconds 4: the janitor then runs every second
    s = serve.start_serve(data, extra=["--executions-kept-per-actor", "3", "--executor-idle-seconds", "4"])
    yield Served(url=s.url, token=s.token, proc=s.proc, db=s.db, log=s.log)
    s.stop()


def test_finished_executions_are_pruned_and_the_totals_kept(served: Served) -> None:
    actor = served.register({"image": QUICK})
    aid = actor["id"]
    sent = [
        ok(served.request("POST", f"/actors/{aid}/messages", data={"message": str(i)}))["execution_id"]
        for i in range(6)
    ]
    for eid in sent:
        served.wait_execution(aid, eid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = ok(served.request("GET", f"/actors/{aid}/executions"))
        if len(listing["ids"]) <= 3:
            break
        time.sleep(0.2)
    assert listing["ids"] == sent[-3:]  # the newest three, oldest first
    assert listing["total_executions"] == 6  # pruned ones still count
    assert listing["total_runtime"] >= 0 and listing["total_cpu"] > 0
    assert served.request("GET", f"/actors/{aid}/executions/{sent[0]}").status_code == 400  # gone
    page = ok(served.request("GET", f"/actors/{aid}/executions?_abaco_nb_offset=1&_abaco_nb_limit=1"))
    assert page["ids"] == sent[-2:-1] and len(page["executions"]) == 1 and page["total_executions"] == 6
    camel = ok(served.request("GET", f"/actors/{aid}/executions?case=camel&_abaco_nb_limit=2"))
    assert camel["totalExecutions"] == 6 and len(camel["ids"]) == 2
    ok(served.request("DELETE", f"/actors/{aid}"))
