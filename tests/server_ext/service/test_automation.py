"""The cron pass of a real Service (process runtime), driven at chosen hours instead of the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from server_ext.service.service import Service
from server_ext.service.settings import ServiceConfig


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(ServiceConfig(db_path=str(tmp_path / "abaco.db"), runtime="process"))
    yield svc  # not started: no cron thread, so only the passes the test runs happen
    svc.close()


def test_cron_pass_fires_once_per_run_and_cron_on_pauses(service: Service) -> None:
    body = {
        "image": "abaco-nb/test",
        "cron_schedule": "2099-01-31 05 + 1 month",
        "default_environment": {"SLEEP": "0"},
    }
    actor = service.register(body, "me")
    assert (actor.reg.cron_on, actor.cron_next_ex) == (True, "2099-01-31 05")
    at = dt.datetime(2099, 1, 31, 5, 10, tzinfo=dt.timezone.utc)

    assert service.automation.cron_pass(at - dt.timedelta(hours=1)) == []  # not yet
    (eid,) = service.automation.cron_pass(at)
    execution = service.store.get_execution(eid)
    assert (
        execution is not None
        and execution.executor == "cron"
        and execution.message == "This is your cron execution"
    )
    assert service.get_actor(actor.id).cron_next_ex == "2099-02-28 05"
    assert service.automation.cron_pass(at) == []  # the same hour again: already done

    # Switched off: the runs still advance (as Abaco), nothing is queued.
    service.update(actor.id, {**body, "cron_on": False})
    assert service.automation.cron_pass(dt.datetime(2099, 2, 28, 5, tzinfo=dt.timezone.utc)) == []
    assert service.get_actor(actor.id).cron_next_ex == "2099-03-31 05"

    # Back on after a long outage: the missed runs are skipped, the one due this hour fires once.
    service.update(actor.id, {**body, "cron_on": True})
    assert len(service.automation.cron_pass(dt.datetime(2099, 7, 31, 5, 59, tzinfo=dt.timezone.utc))) == 1
    assert service.get_actor(actor.id).cron_next_ex == "2099-08-31 05"


def test_a_put_with_a_new_schedule_restarts_it(service: Service) -> None:
    body = {"image": "abaco-nb/test", "cron_schedule": "2099-01-01 00 + 1 day"}
    actor = service.register(body, "me")
    updated = service.update(actor.id, {**body, "cron_schedule": "2099-06-01 12 + 2 weeks"})
    assert updated.cron_next_ex == "2099-06-01 12"
    cleared = service.update(actor.id, {"image": "abaco-nb/test"})  # a PUT replaces everything
    assert (cleared.reg.cron_schedule, cleared.cron_next_ex) == (None, None)
