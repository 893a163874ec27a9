"""The lifecycle inside a real in-process Service (process runtime, SQLite, worker threads; no HTTP):
every way an execution ends goes through the one finishing path, so waiters and EXECUTION_COMPLETE
listeners hear of each, a DELETE of the actor included; force-quit reaches an execution at once."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server_ext.service import lifecycle
from server_ext.service.models import Execution
from server_ext.service.service import Service
from server_ext.service.settings import ServiceConfig

SLEEPER = f"local:{sys.executable} -c 'import time; time.sleep(60)'"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(ServiceConfig(db_path=str(tmp_path / "abaco.db"), runtime="process", max_run_time=0))
    svc.start()
    try:
        yield svc
    finally:
        svc.close()


def _ready(service: Service, body: dict[str, object]) -> str:
    actor = service.register(body, "me")
    deadline = time.monotonic() + 30
    while service.get_actor(actor.id).status != "READY":
        assert time.monotonic() < deadline, service.get_actor(actor.id)
        time.sleep(0.02)
    return actor.id


def _until(service: Service, aid: str, eid: str, status: str) -> Execution:
    deadline = time.monotonic() + 30
    while (execution := service.get_execution(aid, eid)).status != status:
        assert time.monotonic() < deadline, execution
        time.sleep(0.02)
    return execution


def test_delete_announces_every_execution_it_ends(service):
    heard: list[Execution] = []
    service.dispatcher.completion_listeners.append(heard.append)
    aid = _ready(service, {"image": SLEEPER, "stateless": False})
    eids = [service.send(aid, None, b"", {"message": [str(i)]}, "me")[0].id for i in range(3)]
    _until(service, aid, eids[0], "RUNNING")
    waiter: list[list[Execution]] = []
    thread = threading.Thread(target=lambda: waiter.append(service.wait(aid, [eids[2]], 60)))
    thread.start()
    service.delete(aid)
    thread.join(timeout=60)
    assert waiter and [e.id for e in waiter[0]] == [eids[2]]  # the waiter on a queued one woke
    by_id = {e.id: e for e in heard}
    assert set(by_id) == set(eids)  # every end announced once
    assert len(heard) == 3
    assert (
        by_id[eids[0]].status == "COMPLETE" and by_id[eids[0]].status_message == lifecycle.Stop.DELETED.value
    )
    for eid in eids[1:]:
        assert (by_id[eid].status, by_id[eid].status_message) == ("ERROR", lifecycle.DELETED_QUEUED)


def test_force_quit_ends_a_running_execution_complete(service):
    aid = _ready(service, {"image": SLEEPER, "stateless": False})
    eid = service.send(aid, None, b"", {"message": ["x"]}, "me")[0].id
    _until(service, aid, eid, "RUNNING")
    assert "Issued force quit" in service.force_quit(aid, eid)
    done = _until(service, aid, eid, "COMPLETE")
    assert done.status_message == lifecycle.Stop.USER.value and done.exit_code != 0


def test_each_start_attempt_binds_its_own_results_socket(service):
    """An attempt the runtime did not answer is closed only after the lifecycle requeued it; meanwhile
    another worker may claim it again. Its late close must leave the new attempt's socket in place (CI
    saw Docker bind-mount a directory it created where the socket had been unlinked: results lost)."""
    first = service.dispatcher._collector("AnExecution1")
    second = service.dispatcher._collector("AnExecution1")
    try:
        assert first.path != second.path
        first.close()
        assert Path(second.path).is_socket()
    finally:
        second.close()
    assert not Path(second.path).exists()
