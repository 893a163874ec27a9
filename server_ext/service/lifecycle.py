"""The life of one execution, as a pure state machine: ``step(run, event) -> (run, instructions)``.

This module is the only code that decides an execution's status. The dispatcher, the runtimes and
the store carry its instructions out and feed back what happened as events, in the manner of dask's
``worker_state_machine.py``: events and instructions are small frozen dataclasses, the machine holds
no threads, sockets or SQL, and ``tests/server_ext/service/test_lifecycle.py`` drives every
transition and race directly.

A ``Run`` is what the machine knows about an execution a worker holds (claimed and not finished).
A queued execution has no ``Run``: its state is its mailbox row. The phases and what moves them:

=================  ===============================  ========================================================
phase              event                            -> new phase: instructions
=================  ===============================  ========================================================
(queued)           Claimed                          CLAIMED: StartRuntime  (``claim`` wrote it RUNNING)
(queued)           Claimed, runtime unreachable     (queued): Requeue, RetryAfter
(queued)           Dropped (purge, cancel, delete)  (done): Finish ERROR(why), Notify
CLAIMED            Started(ref)                     RUNNING: Record(runtime_ref)
CLAIMED            Started, a stop already asked    STOPPING: Record, StopRuntime  (cancel while creating)
CLAIMED            StartFailed(error)               (done): Finish ERROR("could not start: ..."), Notify
CLAIMED            StartFailed(unreachable)         CLAIMED: Reconcile (the runtime may have created it)
CLAIMED            StartFailed(ran=False)           (queued): Requeue, RetryAfter (store/disk error)
CLAIMED            StopAsked(why)                   CLAIMED, the stop remembered (honoured at Started)
RUNNING            Tick, over max_run_time          STOPPING(TIMEOUT): StopRuntime
RUNNING            StopAsked(why)                   STOPPING(why); the next Tick: StopRuntime
STOPPING           Tick, stop unanswered            STOPPING: StopRuntime again (after the grace)
RUNNING/STOPPING   Exited(code, oom)                (done): Finish COMPLETE(why or OOM), Remove, Notify
RUNNING/STOPPING   Exited after Stop.SHUTDOWN       (done): Finish ERROR(SHUTDOWN), Remove, Notify
RUNNING/STOPPING   Unreachable                      unchanged: RetryAfter (read its exit when it answers)
RUNNING/STOPPING   Lost(error)                      (done): Finish ERROR("runtime failed: ..."), Remove, Notify
CLAIMED..STOPPING  Failed(error) (a service bug)    (done): Finish ERROR("Internal error: ..."), Remove, Notify
any                StoreFailed(instruction)         unchanged: RetryAfter(backoff, instruction)
RUNNING (stored)   Recovered: started, attached     RUNNING: Attach  (after a restart or an outage)
RUNNING (stored)   Recovered: created, not started  (queued): Remove, Requeue
RUNNING (stored)   Recovered: nothing, no ref yet   (queued): Requeue  (it never reached the runtime)
RUNNING (stored)   Recovered: ran, gone             (done): Finish ERROR("Interrupted ..."), [Remove], Notify
=================  ===============================  ========================================================

Why these rules (and not others):

- A container that ran and exited ends COMPLETE whatever its exit code, as in Abaco; force-quit and
  timeouts also end COMPLETE, with the reason in ``status_message`` (Abaco's behaviour). Only what the
  service, not the actor, failed ends ERROR: it could not start, the runtime lost it, the service shut
  down under it, the actor was deleted before it ran.
- A message that never reached a runtime goes back to the *head* of its mailbox, never ERROR: it has
  not run, so running it is not a repeat (Abaco nacks with requeue before the container starts).
  Once a container or process may have started we never run the message again: it may have had side
  effects. When the runtime cannot tell (it was unreachable during the start), the dispatcher asks it
  again when it answers (``Reconcile``) instead of guessing.
- A runtime or store outage is not the execution's fault: it stays where it is and the instruction
  is retried with backoff; the execution's status is decided by what the runtime says once it
  answers (its real exit code and logs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from .models import COMPLETE, ERROR, RUNNING, SUBMITTED, Execution

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when the service stops an execution
RETRY_FIRST, RETRY_MAX = 0.2, 5.0  # backoff of retried instructions (seconds)


class Stop(Enum):
    """Why the service stops a running execution; the value is its ``status_message``."""

    USER = "Force quit requested by the user."
    TIMEOUT = "Stopped: the execution ran longer than max_run_time ({max_run_time} s)."
    REVISION = "Stopped: the actor was updated to a new revision."
    DELETED = "Stopped: the actor was deleted."
    SHUTDOWN = "The service shut down while this execution was running."


class Phase(Enum):
    CLAIMED = "claimed"  # a worker holds it; no container/process yet
    RUNNING = "running"  # the runtime started it
    STOPPING = "stopping"  # the service asked the runtime to stop it


NEVER_STARTED = "The execution could not start: {error}"
RUNTIME_FAILED = "The runtime failed while supervising the execution: {error}"
OOM = "Killed: the execution ran out of memory (mem_limit {mem_limit})."
INTERRUPTED = (
    "Interrupted: the service stopped while this execution was running and its {what} was gone "
    "on restart; the message was not run again, to avoid running it twice."
)
INTERNAL = "Internal error while running the execution: {error}"
ACTOR_GONE = "The actor was deleted while the service was down."
DELETED_QUEUED = "The actor was deleted before this message ran."
CANCELLED_QUEUED = "Cancelled by the user before it started."
PURGED = "Purged from the mailbox before it ran."


@dataclass(frozen=True)
class Run:
    """What the machine knows of one execution a worker holds."""

    execution: Execution
    phase: Phase
    max_run_time: int | None = None  # seconds, None: no limit
    mem_limit: str | None = None
    stop: Stop | None = None  # why the service is stopping it (first reason, SHUTDOWN overrides)
    stop_sent_at: float | None = None  # when StopRuntime was last handed out
    grace: float = STOP_GRACE


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A worker took the execution from the head of its mailbox (``claim`` already wrote it)."""

    execution: Execution
    at: float
    max_run_time: int | None = None
    mem_limit: str | None = None
    runtime_unreachable: bool = False  # the runtime is known down: give it back, try later


@dataclass(frozen=True)
class Started:
    execution_id: str
    ref: str  # container id / pid
    at: float
    node: str | None = None  # the swarm node it runs on (swarm runtime)


@dataclass(frozen=True)
class StartFailed:
    execution_id: str
    error: str
    at: float
    unreachable: bool = False  # the runtime did not answer: it may or may not have created it
    ran: bool = True  # False: failed before anything reached the runtime (a store or disk error)


@dataclass(frozen=True)
class Tick:
    """One supervision slice of a running execution passed without an exit."""

    execution_id: str
    at: float


@dataclass(frozen=True)
class StopAsked:
    execution_id: str
    why: Stop
    grace: float = STOP_GRACE


@dataclass(frozen=True)
class Exited:
    execution_id: str
    exit_code: int | str
    final_state: dict[str, Any]
    cpu: int
    io: int
    logs: str | None
    log_expires: float | None
    at: float
    oom: bool = False


@dataclass(frozen=True)
class Unreachable:
    """The runtime did not answer while supervising; the execution keeps its state."""

    execution_id: str
    error: str
    attempt: int = 0


@dataclass(frozen=True)
class Lost:
    """The runtime answered that it has lost the execution (no exit status can be had)."""

    execution_id: str
    error: str
    at: float


@dataclass(frozen=True)
class Failed:
    """A bug in the service while it held the execution (the worker survives it)."""

    execution_id: str
    error: str
    at: float


@dataclass(frozen=True)
class StoreFailed:
    """Carrying out ``instruction`` failed in the store (locked, disk full): try again later."""

    execution_id: str
    instruction: Instruction
    error: str
    attempt: int = 0


@dataclass(frozen=True)
class Dropped:
    """A queued execution left its mailbox without running (purged, cancelled, actor deleted)."""

    execution: Execution
    why: str
    at: float


@dataclass(frozen=True)
class Recovered:
    """After a restart (or a runtime outage): what the runtime still has of a RUNNING execution.

    ``leftover``: None when the runtime has nothing; else whether it was started and whether the
    dispatcher could attach to it (supervise it again)."""

    execution: Execution
    at: float
    leftover_started: bool | None = None  # None: nothing of it in the runtime
    attached: bool = False
    actor_exists: bool = True
    runtime_name: str = "docker"
    max_run_time: int | None = None
    mem_limit: str | None = None


Event = (
    Claimed | Started | StartFailed | Tick | StopAsked | Exited | Unreachable | Lost | Failed
    | StoreFailed | Dropped | Recovered
)  # fmt: skip


# -- instructions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartRuntime:
    """Create and start the container/process of the execution."""

    execution_id: str


@dataclass(frozen=True)
class StopRuntime:
    execution_id: str
    grace: float = STOP_GRACE


@dataclass(frozen=True)
class Remove:
    """Release what the runtime holds for it (after its terminal status is stored)."""

    execution_id: str


@dataclass(frozen=True)
class Record:
    """Store this (non-terminal) state of the execution (its runtime_ref, for recovery)."""

    execution: Execution


@dataclass(frozen=True)
class Requeue:
    """Put the execution back at the head of its mailbox, SUBMITTED (it never ran)."""

    execution: Execution


@dataclass(frozen=True)
class Finish:
    """Store the terminal status (with the final logs) in one transaction."""

    execution: Execution
    logs: str | None = None
    log_expires: float | None = None


@dataclass(frozen=True)
class Notify:
    """Wake the waiters on this execution and emit EXECUTION_COMPLETE."""

    execution: Execution


@dataclass(frozen=True)
class Attach:
    """Supervise an execution the runtime still runs (after a restart or an outage)."""

    execution: Execution


@dataclass(frozen=True)
class Reconcile:
    """Ask the runtime, after ``delay``, what it has of the execution, and feed ``Recovered``."""

    execution_id: str
    delay: float


@dataclass(frozen=True)
class RetryAfter:
    """Carry ``instruction`` out again after ``delay`` seconds (None: just wait, then go on)."""

    delay: float
    instruction: Instruction | None = None


Instruction = (
    StartRuntime | StopRuntime | Remove | Record | Requeue | Finish | Notify | Attach | Reconcile | RetryAfter
)


# -- pure decisions -------------------------------------------------------------------------------


def backoff(attempt: int) -> float:
    """Delay before the ``attempt``-th retry (0-based): 0.2 s doubling to at most 5 s."""
    return float(min(RETRY_MAX, RETRY_FIRST * (2 ** min(attempt, 10))))


def run_limit(message: int | None, actor: int | None, service: int | None) -> int | None:
    """The ``max_run_time`` (seconds) an execution gets: its message's ``_abaco_nb_timeout``, else its
    actor's ``max_run_time``, else the service's; 0, negative or missing means no limit."""
    for limit in (message, actor, service):
        if limit:
            return limit if limit > 0 else None
    return None


def claim(execution: Execution, worker_id: str, at: float) -> Execution:
    """The execution a claim writes (inside the store's transaction): RUNNING on this worker."""
    return replace(execution, status=RUNNING, worker_id=worker_id, start_time=at, runtime_ref=None)


def requeued(execution: Execution) -> Execution:
    """The execution as it goes back to the head of its mailbox: as if never claimed."""
    return replace(execution, status=SUBMITTED, worker_id=None, start_time=None, runtime_ref=None)


def stop_message(why: Stop, max_run_time: int | None) -> str:
    return why.value.format(max_run_time=max_run_time)


def completed(execution: Execution, event: Exited, status_message: str) -> Execution:
    """A container that ran and exited: COMPLETE whatever its exit code, runtime in whole seconds."""
    started = execution.start_time or event.at
    return replace(
        execution,
        status=COMPLETE,
        exit_code=event.exit_code,
        final_state=event.final_state,
        cpu=event.cpu,
        io=event.io,
        finish_time=event.at,
        runtime=max(0, int(round(event.at - started))),
        status_message=status_message,
    )


def errored(execution: Execution, reason: str, at: float) -> Execution:
    """The service, not the actor, failed this execution: ERROR with the reason."""
    runtime = execution.runtime
    if execution.start_time is not None:
        runtime = max(0, int(round(at - execution.start_time)))
    return replace(execution, status=ERROR, status_message=reason, finish_time=at, runtime=runtime)


def _ended(
    run: Run, execution: Execution, logs: str | None = None, expires: float | None = None, remove: bool = True
) -> tuple[None, list[Instruction]]:
    out: list[Instruction] = [Finish(execution, logs, expires)]
    if remove:
        out.append(Remove(execution.id))
    out.append(Notify(execution))
    return None, out


def _asked(run: Run, why: Stop) -> Stop:
    """The first reason wins, except that the service shutting down decides the final status."""
    if run.stop is None or why is Stop.SHUTDOWN:
        return why
    return run.stop


def step(run: Run | None, event: Event) -> tuple[Run | None, list[Instruction]]:
    """The transition table of the module docstring. ``run`` is None for an execution no worker
    holds (queued, or already finished); the result is None once it is no longer held."""
    if isinstance(event, Claimed):
        if event.runtime_unreachable:
            return None, [Requeue(requeued(event.execution)), RetryAfter(backoff(0))]
        new = Run(event.execution, Phase.CLAIMED, event.max_run_time, event.mem_limit)
        return new, [StartRuntime(event.execution.id)]
    if isinstance(event, Dropped):
        execution = errored(event.execution, event.why, event.at)
        return None, [Finish(execution), Notify(execution)]
    if isinstance(event, Recovered):
        return recover(event, run)
    if isinstance(event, StoreFailed):  # also for an execution no longer held (its Finish failed)
        return run, [RetryAfter(backoff(event.attempt), event.instruction)]
    if run is None:  # an event about an execution that is no longer held: nothing to decide
        return None, []
    execution = run.execution
    if isinstance(event, StopAsked):
        why = _asked(run, event.why)
        grace = min(run.grace, event.grace) if run.stop is not None else event.grace
        phase = Phase.STOPPING if run.phase is Phase.RUNNING else run.phase
        if run.stop is not None and grace < run.grace:  # a shorter grace (shutdown): send it again now
            return replace(run, phase=phase, stop=why, grace=grace, stop_sent_at=None), []
        return replace(run, phase=phase, stop=why, grace=grace), []
    if isinstance(event, Started):
        execution = replace(execution, runtime_ref=event.ref, node=event.node or execution.node)
        if run.stop is not None:
            new = replace(run, execution=execution, phase=Phase.STOPPING, stop_sent_at=event.at)
            return new, [Record(execution), StopRuntime(execution.id, run.grace)]
        return replace(run, execution=execution, phase=Phase.RUNNING), [Record(execution)]
    if isinstance(event, StartFailed):
        if not event.ran and not event.unreachable:
            return None, [Requeue(requeued(execution)), RetryAfter(backoff(0))]
        if event.unreachable:
            return run, [Reconcile(execution.id, backoff(0))]
        reason = NEVER_STARTED.format(error=event.error)
        if run.stop is Stop.SHUTDOWN:
            reason = stop_message(Stop.SHUTDOWN, None)
        return _ended(run, errored(execution, reason, event.at), remove=False)
    if isinstance(event, Tick):
        if run.phase is Phase.CLAIMED:
            return run, []
        limit = run.max_run_time
        if run.stop is None and limit and event.at - (execution.start_time or event.at) > limit:
            run = replace(run, phase=Phase.STOPPING, stop=Stop.TIMEOUT)
        if run.stop is not None and (run.stop_sent_at is None or event.at - run.stop_sent_at > run.grace + 5):
            new = replace(run, phase=Phase.STOPPING, stop_sent_at=event.at)
            return new, [StopRuntime(execution.id, run.grace)]
        return run, []
    if isinstance(event, Exited):
        if run.stop is Stop.SHUTDOWN:
            done = errored(execution, stop_message(Stop.SHUTDOWN, None), event.at)
            done = replace(
                done, exit_code=event.exit_code, final_state=event.final_state, cpu=event.cpu, io=event.io
            )
            return _ended(run, done, event.logs, event.log_expires)
        message = stop_message(run.stop, run.max_run_time) if run.stop is not None else ""
        if not message and event.oom:
            message = OOM.format(mem_limit=run.mem_limit or "default")
        return _ended(run, completed(execution, event, message), event.logs, event.log_expires)
    if isinstance(event, Unreachable):
        return run, [RetryAfter(backoff(event.attempt))]
    if isinstance(event, Lost):
        reason = RUNTIME_FAILED.format(error=event.error)
        if run.stop is Stop.SHUTDOWN:
            reason = stop_message(Stop.SHUTDOWN, None)
        return _ended(run, errored(execution, reason, event.at))
    if isinstance(event, Failed):
        return _ended(run, errored(execution, INTERNAL.format(error=event.error), event.at))
    raise TypeError(f"not a lifecycle event: {event!r}")  # pragma: no cover


def recover(event: Recovered, held: Run | None = None) -> tuple[Run | None, list[Instruction]]:
    """A RUNNING execution met again after a restart or a runtime outage, by what the runtime has:

    1. a container/process that started and can be attached -> supervise it again (its real exit
       code and logs decide), unless its actor is gone (ERROR, and it is removed);
    2. one created but never started -> remove it; requeue at the head (it has not run);
    3. nothing, and no ``runtime_ref`` was ever recorded -> it never reached the runtime: requeue;
    4. otherwise it ran and is gone (or cannot be attached): ERROR "Interrupted", never run again.

    In 2 and 3 a message whose actor is gone, or that the user cancelled meanwhile, ends ERROR
    instead (``held``: what the machine knew before, during an outage)."""
    execution = event.execution
    stop = held.stop if held is not None else None
    what = "container" if event.runtime_name in ("docker", "swarm") else "process"
    run = Run(execution, Phase.RUNNING, event.max_run_time, event.mem_limit, stop=stop)
    if event.leftover_started is True and event.attached:
        if not event.actor_exists:
            return _ended(run, errored(execution, ACTOR_GONE, event.at))
        return run, [Attach(execution)]
    never_ran = event.leftover_started is False or (
        event.leftover_started is None and execution.runtime_ref is None
    )
    if not never_ran:
        remove = event.leftover_started is not None
        return _ended(run, errored(execution, INTERRUPTED.format(what=what), event.at), remove=remove)
    cleanup: list[Instruction] = [Remove(execution.id)] if event.leftover_started is False else []
    reason = ""
    if not event.actor_exists or stop is Stop.DELETED:
        reason = DELETED_QUEUED
    elif stop is Stop.USER:
        reason = CANCELLED_QUEUED
    if reason:
        done = errored(requeued(execution), reason, event.at)
        return None, [*cleanup, Finish(done), Notify(done)]
    return None, [*cleanup, Requeue(requeued(execution))]


class Executions:
    """The runs the workers hold, changed only through ``handle``. Not thread-safe by itself: the
    dispatcher calls it under one lock (each call is a few dict operations)."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    def handle(self, event: Event) -> list[Instruction]:
        key = _execution_id(event)
        new, instructions = step(self.runs.get(key), event)
        if new is None:
            self.runs.pop(key, None)
        else:
            self.runs[key] = new
        return instructions

    def get(self, execution_id: str) -> Run | None:
        return self.runs.get(execution_id)


def _execution_id(event: Event) -> str:
    if isinstance(event, Claimed | Dropped | Recovered):
        return event.execution.id
    return event.execution_id
