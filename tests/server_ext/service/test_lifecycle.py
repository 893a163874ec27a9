"""The execution lifecycle, driven event by event with no threads, sockets, Docker or SQLite.

Each test feeds ``Executions.handle`` what a worker would see and asserts the instructions it gets
back (dask's ``ws`` fixture style): every transition of the table in ``lifecycle``'s docstring, and
the races (cancel while creating, exit after cancel, a crash in each state, a claim with no runtime).
"""

from __future__ import annotations

import typing

import pytest

from server_ext.service import lifecycle as lc
from server_ext.service.lifecycle import Stop
from server_ext.service.models import Execution


def _queued(eid: str = "E", **kw: typing.Any) -> Execution:
    return Execution(
        id=eid,
        actor_id="A",
        executor="me",
        status="SUBMITTED",
        message_received_time=1.0,
        content_type="str",
        message="hi",
        **kw,
    )


@pytest.fixture
def ex() -> lc.Executions:
    return lc.Executions()


def _claimed(ex: lc.Executions, eid: str = "E", at: float = 10.0, **kw: typing.Any) -> Execution:
    execution = lc.claim(_queued(eid), "W", at)
    assert ex.handle(lc.Claimed(execution, at, **kw)) == [lc.StartRuntime(eid)]
    return execution


def _running(ex: lc.Executions, eid: str = "E", **kw: typing.Any) -> None:
    _claimed(ex, eid, **kw)
    (record,) = ex.handle(lc.Started(eid, "cid", 10.5))
    assert isinstance(record, lc.Record) and record.execution.runtime_ref == "cid"
    assert record.execution.status == "RUNNING"


def _exit(eid: str = "E", code: int = 0, at: float = 13.0, oom: bool = False) -> lc.Exited:
    return lc.Exited(eid, code, {"ExitCode": code, "OOMKilled": oom}, 5, 6, "the logs", 99.0, at, oom)


def _finished(instructions: list[lc.Instruction]) -> Execution:
    """The execution of a Finish, checking the one finishing sequence: Finish, [Remove], Notify."""
    kinds = [type(i) for i in instructions]
    assert kinds in ([lc.Finish, lc.Remove, lc.Notify], [lc.Finish, lc.Notify]), kinds
    finish, notify = instructions[0], instructions[-1]
    assert isinstance(finish, lc.Finish) and isinstance(notify, lc.Notify)
    assert notify.execution is finish.execution  # waiters see exactly what was stored
    return finish.execution


def test_claim_writes_running_on_the_worker():
    e = lc.claim(_queued(), "W", 10.0)
    assert (e.status, e.worker_id, e.start_time, e.runtime_ref) == ("RUNNING", "W", 10.0, None)
    back = lc.requeued(e)
    assert (back.status, back.worker_id, back.start_time) == ("SUBMITTED", None, None)


def test_a_run_that_exits_is_complete_whatever_its_code(ex):
    _running(ex)
    out = ex.handle(_exit(code=3, at=13.4))
    done = _finished(out)
    assert isinstance(out[1], lc.Remove)
    assert (done.status, done.exit_code, done.runtime, done.status_message) == ("COMPLETE", 3, 3, "")
    assert (done.cpu, done.io, done.final_state["ExitCode"]) == (5, 6, 3)
    assert isinstance(out[0], lc.Finish) and out[0].logs == "the logs" and out[0].log_expires == 99.0
    assert ex.get("E") is None  # no longer held


def test_a_tick_without_reason_does_nothing(ex):
    _running(ex, max_run_time=100)
    assert ex.handle(lc.Tick("E", 50.0)) == []


def test_max_run_time_stops_it_and_it_ends_complete_with_the_reason(ex):
    _running(ex, max_run_time=2)
    (stop,) = ex.handle(lc.Tick("E", 12.5))
    assert stop == lc.StopRuntime("E", lc.STOP_GRACE)
    assert ex.handle(lc.Tick("E", 13.0)) == []  # asked once per grace period
    done = _finished(ex.handle(_exit(code=137)))
    assert done.status == "COMPLETE" and "max_run_time (2 s)" in done.status_message


def test_force_quit_of_a_running_execution(ex):
    _running(ex)
    assert ex.handle(lc.StopAsked("E", Stop.USER)) == []  # the worker stops it at its next tick
    assert ex.handle(lc.Tick("E", 11.0)) == [lc.StopRuntime("E")]
    done = _finished(ex.handle(_exit(code=143)))
    assert (done.status, done.status_message) == ("COMPLETE", Stop.USER.value)


def test_a_stop_the_runtime_does_not_answer_is_asked_again_after_the_grace(ex):
    _running(ex)
    ex.handle(lc.StopAsked("E", Stop.USER))
    assert ex.handle(lc.Tick("E", 11.0)) == [lc.StopRuntime("E")]
    assert ex.handle(lc.Tick("E", 11.0 + lc.STOP_GRACE)) == []
    assert ex.handle(lc.Tick("E", 11.0 + lc.STOP_GRACE + 6)) == [lc.StopRuntime("E")]


def test_cancel_while_creating_is_honoured_once_started(ex):
    _claimed(ex)
    assert ex.handle(lc.StopAsked("E", Stop.USER)) == []
    assert ex.handle(lc.Tick("E", 10.2)) == []  # nothing to stop yet
    out = ex.handle(lc.Started("E", "cid", 10.5))
    assert [type(i) for i in out] == [lc.Record, lc.StopRuntime]
    done = _finished(ex.handle(_exit(code=137)))
    assert done.status_message == Stop.USER.value and done.runtime_ref == "cid"


def test_exit_after_cancel_is_complete_and_a_late_cancel_is_ignored(ex):
    _running(ex)
    done = _finished(ex.handle(_exit(code=0)))
    assert done.status == "COMPLETE" and done.status_message == ""
    assert ex.handle(lc.StopAsked("E", Stop.USER)) == []  # arrives after the exit: nothing held
    assert ex.handle(lc.Tick("E", 20.0)) == []


def test_the_first_reason_wins_but_shutdown_decides_an_error(ex):
    _running(ex)
    ex.handle(lc.StopAsked("E", Stop.TIMEOUT))
    ex.handle(lc.StopAsked("E", Stop.USER))
    run = ex.get("E")
    assert run is not None and run.stop is Stop.TIMEOUT
    ex.handle(lc.StopAsked("E", Stop.SHUTDOWN, grace=5.0))
    done = _finished(ex.handle(_exit(code=143)))
    assert (done.status, done.status_message) == ("ERROR", Stop.SHUTDOWN.value)
    assert done.exit_code == 143  # what the container said is kept


def test_shutdown_sends_the_stop_again_with_its_shorter_grace(ex):
    _running(ex)
    ex.handle(lc.StopAsked("E", Stop.USER))
    assert ex.handle(lc.Tick("E", 11.0)) == [lc.StopRuntime("E", lc.STOP_GRACE)]
    ex.handle(lc.StopAsked("E", Stop.SHUTDOWN, grace=5.0))
    assert ex.handle(lc.Tick("E", 11.5)) == [lc.StopRuntime("E", 5.0)]


@pytest.mark.parametrize("why", [Stop.REVISION, Stop.DELETED])
def test_stopped_by_a_new_revision_or_a_delete_ends_complete(ex, why):
    _running(ex)
    ex.handle(lc.StopAsked("E", why))
    assert ex.handle(lc.Tick("E", 11.0)) == [lc.StopRuntime("E")]
    assert _finished(ex.handle(_exit(code=137))).status_message == why.value


def test_out_of_memory_says_so(ex):
    _running(ex, mem_limit="32m")
    done = _finished(ex.handle(_exit(code=137, oom=True)))
    assert done.status == "COMPLETE" and "out of memory (mem_limit 32m)" in done.status_message


def test_a_start_the_runtime_refuses_ends_error_and_has_nothing_to_remove(ex):
    _claimed(ex)
    out = ex.handle(lc.StartFailed("E", "image gone", 10.2))
    done = _finished(out)
    assert len(out) == 2  # Finish, Notify: no container to remove
    assert done.status == "ERROR" and "could not start: image gone" in done.status_message


def test_a_start_the_runtime_did_not_answer_is_reconciled_not_failed(ex):
    _claimed(ex)
    assert ex.handle(lc.StartFailed("E", "connection refused", 10.2, unreachable=True)) == [
        lc.Reconcile("E", lc.backoff(0))
    ]
    run = ex.get("E")
    assert run is not None  # still held, still RUNNING in the store, until the runtime answers
    # it answers and has nothing of it: it never reached the runtime, so it goes back to the head
    (requeue,) = ex.handle(lc.Recovered(run.execution, 20.0))
    assert isinstance(requeue, lc.Requeue) and requeue.execution.status == "SUBMITTED"


def test_a_start_the_runtime_did_not_answer_but_ran_is_supervised(ex):
    execution = _claimed(ex)
    ex.handle(lc.StartFailed("E", "connection reset", 10.2, unreachable=True))
    assert ex.handle(lc.Recovered(execution, 20.0, leftover_started=True, attached=True)) == [
        lc.Attach(execution)
    ]
    done = _finished(ex.handle(_exit(code=7, at=21.0)))  # its real exit code
    assert (done.status, done.exit_code) == ("COMPLETE", 7)


def test_cancelled_while_the_runtime_was_down_and_never_started(ex):
    execution = _claimed(ex)
    ex.handle(lc.StartFailed("E", "refused", 10.2, unreachable=True))
    ex.handle(lc.StopAsked("E", Stop.USER))
    done = _finished(ex.handle(lc.Recovered(execution, 20.0)))
    assert done.status == "ERROR" and done.status_message == lc.CANCELLED_QUEUED


def test_a_failure_before_the_runtime_saw_it_requeues(ex):
    _claimed(ex)
    requeue, retry = ex.handle(lc.StartFailed("E", "No space left on device", 10.2, ran=False))
    assert isinstance(requeue, lc.Requeue) and requeue.execution.status == "SUBMITTED"
    assert isinstance(retry, lc.RetryAfter) and retry.delay > 0
    assert ex.get("E") is None


def test_a_claim_with_no_runtime_goes_back_to_the_head(ex):
    execution = lc.claim(_queued(), "W", 10.0)
    requeue, retry = ex.handle(lc.Claimed(execution, 10.0, runtime_unreachable=True))
    assert isinstance(requeue, lc.Requeue) and requeue.execution.status == "SUBMITTED"
    assert isinstance(retry, lc.RetryAfter)
    assert ex.get("E") is None


def test_an_unreachable_runtime_while_running_keeps_the_execution(ex):
    _running(ex)
    delays = []
    for attempt in range(8):
        (retry,) = ex.handle(lc.Unreachable("E", "connection refused", attempt))
        assert isinstance(retry, lc.RetryAfter) and retry.instruction is None
        delays.append(retry.delay)
    assert delays == sorted(delays) and delays[-1] == lc.RETRY_MAX
    run = ex.get("E")
    assert run is not None and run.phase is lc.Phase.RUNNING
    done = _finished(ex.handle(_exit(code=0)))  # read once the runtime answers again
    assert done.status == "COMPLETE"


def test_lost_by_the_runtime_is_an_error(ex):
    _running(ex)
    done = _finished(ex.handle(lc.Lost("E", "zygote died", 12.0)))
    assert (
        done.status == "ERROR"
        and "runtime failed" in done.status_message
        and "zygote died" in done.status_message
    )


def test_a_bug_while_held_is_an_error_naming_it(ex):
    _claimed(ex)
    done = _finished(ex.handle(lc.Failed("E", "KeyError: 'x'", 12.0)))
    assert done.status == "ERROR" and "Internal error" in done.status_message


def test_a_store_refusal_is_retried_even_once_the_run_is_gone(ex):
    _running(ex)
    finish = ex.handle(_exit())[0]
    assert ex.get("E") is None
    (retry,) = ex.handle(lc.StoreFailed("E", finish, "database is locked", attempt=3))
    assert retry == lc.RetryAfter(lc.backoff(3), finish)


def test_a_dropped_queued_execution_ends_error_and_is_announced(ex):
    for why in (lc.PURGED, lc.CANCELLED_QUEUED, lc.DELETED_QUEUED):
        done = _finished(ex.handle(lc.Dropped(_queued(), why, 5.0)))
        assert (done.status, done.status_message, done.finish_time) == ("ERROR", why, 5.0)


# -- a crash of the service in each state: what the restart decides -------------------------------


def _left_running(ref: str | None = None) -> Execution:
    execution = lc.claim(_queued(), "W", 10.0)
    execution.runtime_ref = ref
    return execution


def test_crash_after_the_claim_before_the_create_requeues():
    """The Docker case of the issue: claimed, killed before any container existed."""
    run, out = lc.step(None, lc.Recovered(_left_running(), 30.0, leftover_started=None))
    assert run is None and [type(i) for i in out] == [lc.Requeue]
    assert "Interrupted" not in out[0].execution.status_message


def test_crash_after_the_create_before_the_start_removes_and_requeues():
    run, out = lc.step(None, lc.Recovered(_left_running(), 30.0, leftover_started=False))
    assert run is None and [type(i) for i in out] == [lc.Remove, lc.Requeue]


def test_crash_while_running_reattaches():
    execution = _left_running("cid")
    run, out = lc.step(
        None, lc.Recovered(execution, 30.0, leftover_started=True, attached=True, max_run_time=60)
    )
    assert out == [lc.Attach(execution)] and run is not None and run.max_run_time == 60


def test_crash_while_running_on_a_runtime_that_cannot_reattach_is_interrupted():
    run, out = lc.step(
        None, lc.Recovered(_left_running("4242"), 30.0, leftover_started=True, runtime_name="process")
    )
    done = _finished(out)
    assert isinstance(out[1], lc.Remove)  # what is left of it goes
    assert (
        done.status == "ERROR" and "Interrupted" in done.status_message and "process" in done.status_message
    )


def test_crash_after_it_ran_and_its_container_went_is_interrupted_never_rerun():
    run, out = lc.step(None, lc.Recovered(_left_running("cid"), 30.0, leftover_started=None))
    done = _finished(out)
    assert len(out) == 2 and "Interrupted" in done.status_message and "container" in done.status_message


def test_crash_then_the_actor_was_deleted():
    running = lc.step(
        None,
        lc.Recovered(_left_running("cid"), 30.0, leftover_started=True, attached=True, actor_exists=False),
    )
    assert _finished(running[1]).status_message == lc.ACTOR_GONE
    never = lc.step(None, lc.Recovered(_left_running(), 30.0, actor_exists=False))
    assert _finished(never[1]).status_message == lc.DELETED_QUEUED


def test_every_event_and_instruction_is_in_the_documented_table():
    """The table in the module docstring is the documentation: it names every event and instruction."""
    doc = lc.__doc__ or ""
    for kind in (*typing.get_args(lc.Event), *typing.get_args(lc.Instruction)):
        assert kind.__name__ in doc, kind.__name__


def test_backoff_grows_and_is_capped():
    delays = [lc.backoff(i) for i in range(20)]
    assert delays[0] == lc.RETRY_FIRST and delays == sorted(delays) and max(delays) == lc.RETRY_MAX


@pytest.mark.parametrize(
    ("message", "actor", "service", "expected"),
    [
        (5, 60, 3600, 5),
        (None, 60, 3600, 60),
        (None, None, 3600, 3600),
        (None, None, 0, None),
        (None, None, -1, None),
        (None, 0, 10, 10),
    ],
)
def test_run_limit_precedence(message, actor, service, expected):
    assert lc.run_limit(message, actor, service) == expected
