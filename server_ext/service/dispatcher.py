"""Mailboxes, workers and the supervision of each execution: the I/O shell of ``lifecycle``.

Each actor has one FIFO mailbox (rows in the store) and a pool of worker threads. A worker claims the
oldest message (atomically, in the store), runs it through the runtime, supervises it (partial logs,
force-quit, ``max_run_time``), then claims the next. A stateful actor has one worker, so its messages
run strictly in order; a stateless one grows to ``max_workers`` as soon as its queue asks for it
(``engine.target_workers``), and extra workers stop after ``worker_idle_seconds`` idle. Workers are
threads because every runtime call blocks.

No status is decided here: every fact (claimed, started, exited, a tick, a stop asked, the runtime or
the store failing) goes to ``lifecycle.Executions.running`` and the instructions it returns are carried
out by ``_apply``, the one place an execution is finished (stored, its container removed, waiters
woken). A store error (database locked, disk full) or an unreachable runtime never kills a worker:
the instruction is retried with backoff, and the execution keeps its state meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import engine, lifecycle
from .errors import StoreUnavailable
from .ids import new_id, now
from .lifecycle import Stop
from .models import READY, RUNNING, SUBMITTED, WORKER_BUSY, WORKER_READY, Actor, Execution, Worker
from .results import ResultCollector
from .runtimes.base import (
    Leftover,
    NotStarted,
    RunningRef,
    RunSpec,
    Runtime,
    RuntimeFailure,
    RuntimeUnreachable,
    wants_warm,
)
from .settings import ServiceConfig
from .store import Store
from .tokens import TokenBook

log = logging.getLogger("abaco_nb.service")

LIVE_LOG_INTERVAL = 2.0  # seconds between partial-log writes to the store
WAIT_SLICE = 0.5  # seconds per runtime.wait call while supervising
WORKER_REQUESTED = "REQUESTED"  # Abaco's status of a worker asked for while the image is checked


@dataclass
class _WorkerSlot:
    worker: Worker
    resume: Execution | None = None  # an execution a previous run started, to supervise first
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Pool:
    actor_id: str
    wake: threading.Condition = field(default_factory=threading.Condition)
    slots: dict[str, _WorkerSlot] = field(default_factory=dict)


class Dispatcher:
    """Runs queued messages. ``notify(actor_id)`` after a message is queued or an actor becomes READY."""

    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        config: ServiceConfig,
        tokens: TokenBook,
        service_id: str,
        api_server_for_runtime: Callable[[], tuple[str, str | None]],
        configs_for: Callable[[str], dict[str, Any]] = lambda actor_id: {},
        listeners: Sequence[Callable[[Execution], None]] = (),
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.config = config
        self.tokens = tokens
        self.service_id = service_id
        # (value of _abaco_api_server inside an execution, host path of the API socket to mount)
        self._api_server_for_runtime = api_server_for_runtime
        # {name: value} of the actor configs an actor's executions get (ActorConfigs.values_for)
        self.configs_for = configs_for
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.RLock()
        self._runs: dict[str, RunningRef] = {}  # execution id -> its container/process
        self._finished = threading.Condition()
        self._closing = threading.Event()
        self.executions = lifecycle.Executions()  # the runs workers hold; decides every status
        self._machine = threading.Lock()
        self._runtime_down = threading.Event()  # set while the runtime does not answer
        self._workers_cleared = False  # the last run's worker rows are gone (recover)
        self._unremoved: dict[str, RunningRef] = {}  # removals the runtime did not answer: retried
        self._attempts = itertools.count(1)  # numbers the results socket of each start attempt
        self.files_dir = os.path.join(config.resolved_run_dir(), "messages")
        os.makedirs(self.files_dir, mode=0o700, exist_ok=True)
        self.sock_dir = os.path.join(config.resolved_run_dir(), "results")
        if len(self.sock_dir) > 70:  # AF_UNIX paths are limited to 108 bytes
            self.sock_dir = tempfile.mkdtemp(prefix="abnb-")
        os.makedirs(self.sock_dir, mode=0o700, exist_ok=True)  # reached through bind mounts and links only
        self.completion_listeners = list(listeners)  # told of every finished execution (events)

    # -- the state machine and its instructions ----------------------------------------------------

    def _feed(self, event: lifecycle.Event) -> list[lifecycle.Instruction]:
        """Hand ``event`` to the lifecycle and carry out what it says; return the instructions only
        the calling worker can carry out (StartRuntime, Attach, Reconcile)."""
        with self._machine:
            instructions = self.executions.handle(event)
        return self._apply(instructions)

    def _apply(self, instructions: list[lifecycle.Instruction]) -> list[lifecycle.Instruction]:
        left: list[lifecycle.Instruction] = []
        for instruction in instructions:
            if isinstance(instruction, lifecycle.StartRuntime | lifecycle.Attach | lifecycle.Reconcile):
                left.append(instruction)
            elif isinstance(instruction, lifecycle.RetryAfter):
                self._pause(instruction.delay)
                if instruction.instruction is not None:
                    left += self._apply([instruction.instruction])
            elif not self._carry_out(instruction):
                break  # a Finish that could not be stored: keep the container, recovery decides
        return left

    def _carry_out(self, instruction: lifecycle.Instruction, attempt: int = 0) -> bool:
        """One store/runtime instruction, retried with backoff while the store refuses (locked, full).
        False when the service closes before the store takes it."""
        while True:
            try:
                self._do(instruction)
                return True
            except StoreUnavailable as exc:
                if self._closing.is_set() and attempt >= 3:
                    log.warning("giving up on %s at shutdown: %s", type(instruction).__name__, exc)
                    return False
                if attempt % 10 == 0:
                    log.warning("store refused %s (retrying): %s", type(instruction).__name__, exc)
                failed = lifecycle.StoreFailed(_about(instruction), instruction, exc.message, attempt)
                with self._machine:
                    (retry,) = self.executions.handle(failed)
                assert isinstance(retry, lifecycle.RetryAfter)
                self._pause(retry.delay)
                attempt += 1

    def _pause(self, delay: float) -> None:
        """Wait before a retry; shorter once the service is closing (it still retries a few times)."""
        if not self._closing.wait(delay):
            return
        time.sleep(min(delay, 0.2))

    def _do(self, instruction: lifecycle.Instruction) -> None:
        if isinstance(instruction, lifecycle.Finish):
            self.store.finish_execution(instruction.execution, instruction.logs, instruction.log_expires)
        elif isinstance(instruction, lifecycle.Record):
            self.store.update_execution(instruction.execution)
        elif isinstance(instruction, lifecycle.Requeue):
            self.store.requeue_first(instruction.execution)
        elif isinstance(instruction, lifecycle.Notify):
            self.announce(instruction.execution)
        elif isinstance(instruction, lifecycle.Remove):
            self._remove(instruction.execution_id)
        elif isinstance(instruction, lifecycle.StopRuntime):
            running = self._runs.get(instruction.execution_id)
            if running is not None:
                try:
                    self.runtime.stop(running, grace=instruction.grace)
                except RuntimeFailure as exc:  # the next tick asks again after the grace
                    log.warning("could not stop %s: %s", instruction.execution_id, exc)
        else:  # pragma: no cover
            raise TypeError(f"not an instruction the dispatcher carries out: {instruction!r}")

    def _remove(self, execution_id: str) -> None:
        running = self._runs.pop(execution_id, None)
        if running is None:
            return
        try:
            self.runtime.remove(running)
        except RuntimeUnreachable:  # removed when the runtime answers again (nothing left behind)
            self._unremoved[execution_id] = running
        except RuntimeFailure:
            log.warning("could not remove the runtime resources of %s", execution_id)

    def _retry_removals(self) -> None:
        for eid, running in list(self._unremoved.items()):
            try:
                self.runtime.remove(running)
            except RuntimeUnreachable:
                return
            except RuntimeFailure:
                pass
            self._unremoved.pop(eid, None)

    # -- start, recovery and shutdown ---------------------------------------------------------------

    def recover(self) -> None:
        """Reconcile executions a previous run left RUNNING, then resume every queued mailbox. When
        the runtime does not answer, a thread does it once it does (the queues wait meanwhile)."""
        try:
            self.store.clear_workers()
            self._workers_cleared = True
            running = self.store.executions_with_status(RUNNING)
        except StoreUnavailable as exc:  # the service still starts and says what is wrong
            log.error("cannot read the database to recover: %s; retrying in the background", exc)
            threading.Thread(target=self._recover_later, name="recover", daemon=True).start()
            return
        try:
            leftovers = {lo.execution_id: lo for lo in self.runtime.find_leftovers(self.service_id)}
        except RuntimeUnreachable as exc:
            log.error("the runtime does not answer (%s): executions are reconciled once it does", exc)
            self._runtime_down.set()
            threading.Thread(target=self._recover_later, name="recover", daemon=True).start()
            return
        self._reconcile(running, leftovers, remove_strays=True)

    def _recover_later(self) -> None:
        """``recover`` once the store takes writes and the runtime answers again."""
        attempt = 0
        while not self._closing.wait(lifecycle.backoff(attempt)):
            attempt += 1
            try:
                if not self._workers_cleared:  # rows of the last run's workers; keep ours
                    self.store.clear_workers()
                    self._workers_cleared = True
                    with self._lock:
                        slots = [slot for pool in self._pools.values() for slot in pool.slots.values()]
                    for slot in slots:
                        self._put_worker(slot.worker)
                running = self.store.executions_with_status(RUNNING)
                leftovers = {lo.execution_id: lo for lo in self.runtime.find_leftovers(self.service_id)}
                self._runtime_down.clear()
                self._reconcile(running, leftovers, remove_strays=True)
            except (StoreUnavailable, RuntimeUnreachable) as exc:
                if attempt % 20 == 1:
                    log.warning("recovery still waiting: %s", exc)
                continue
            log.info("recovered after %d attempts", attempt)
            return

    def _reconcile(
        self, running: list[Execution], leftovers: dict[str, Leftover], remove_strays: bool
    ) -> None:
        for execution in running:
            with self._machine:
                held = self.executions.get(execution.id) is not None
            if held:
                continue
            for instruction in self._recovered(execution, leftovers.get(execution.id)):
                if isinstance(
                    instruction, lifecycle.Attach
                ):  # in a worker slot: a stateful actor stays at one
                    actor = self.store.get_actor(execution.actor_id)
                    if actor is not None:
                        pool = self._pool(actor.id)
                        with pool.wake:
                            self._spawn(pool, actor, resume=instruction.execution)
        if remove_strays:  # containers/processes whose execution is not RUNNING: remove
            ids = {e.id for e in running}
            for eid, leftover in leftovers.items():
                if eid not in ids:
                    try:
                        self.runtime.remove(RunningRef(eid, leftover.ref))
                    except RuntimeFailure:
                        pass
        for actor_id in self.store.queued_actor_ids():
            self.notify(actor_id)

    def _recovered(self, execution: Execution, leftover: Leftover | None) -> list[lifecycle.Instruction]:
        """Tell the lifecycle what the runtime still has of ``execution``; returns what is left to do."""
        attached = False
        if leftover is not None:
            self._runs[execution.id] = RunningRef(execution.id, leftover.ref)
            if leftover.started:
                try:
                    self._runs[execution.id] = self.runtime.attach(leftover)
                    attached = True
                except RuntimeFailure:
                    pass
        actor = self.store.get_actor(execution.actor_id)
        event = lifecycle.Recovered(
            execution,
            now(),
            leftover_started=None if leftover is None else leftover.started,
            attached=attached,
            actor_exists=actor is not None,
            runtime_name=self.runtime.name,
            max_run_time=self._max_run_time(actor, execution) if actor else None,
            mem_limit=self._mem_limit(actor) if actor else None,
        )
        return self._feed(event)

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop every worker: running executions are stopped and end ERROR with the reason; queued
        messages stay queued for the next start."""
        self._closing.set()
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            with pool.wake:
                for slot in pool.slots.values():
                    slot.stop.set()
                pool.wake.notify_all()
        with self._machine:
            held = list(self.executions.runs)
        for eid in held:
            self._feed(lifecycle.StopAsked(eid, Stop.SHUTDOWN, grace))
            running = self._runs.get(eid)
            if running is not None:  # at once, rather than at the worker's next tick
                try:
                    self.runtime.stop(running, grace=grace)
                except RuntimeFailure:
                    pass
        for pool in pools:
            for slot in list(pool.slots.values()):
                if slot.thread is not None:
                    slot.thread.join(timeout=grace + 10)

    # -- scheduling ---------------------------------------------------------------------------------

    def _pool(self, actor_id: str) -> _Pool:
        with self._lock:
            pool = self._pools.get(actor_id)
            if pool is None:
                pool = self._pools[actor_id] = _Pool(actor_id)
            return pool

    def notify(self, actor_id: str) -> None:
        """A message was queued (or the actor became READY): wake a worker, add workers if needed."""
        if self._closing.is_set():
            return
        actor = self.store.get_actor(actor_id)
        if actor is None or actor.status != READY:
            return
        pool = self._pool(actor_id)
        with pool.wake:
            busy = sum(1 for s in pool.slots.values() if s.worker.status == WORKER_BUSY)
            idle = len(pool.slots) - busy
            queued = self.store.queue_length(actor_id)
            max_workers = actor.reg.max_workers or self.config.max_workers_per_actor
            target = engine.target_workers(actor.reg.stateless, max_workers, max(0, queued - idle), busy)
            for _ in range(target - len(pool.slots)):
                self._spawn(pool, actor)
            if any(s.worker.status == WORKER_REQUESTED for s in pool.slots.values()):
                pool.wake.notify_all()  # the image check ended: every waiting worker starts now
            else:
                pool.wake.notify(max(1, queued))

    def ensure_workers(self, actor_id: str, num: int) -> tuple[int, int]:
        """Admin ``POST /workers {num}``: have at least ``num`` workers. Returns (before, after). While
        the actor's image is checked (SUBMITTED) they wait, listed as REQUESTED, and start when it is
        READY, as in Abaco."""
        actor = self.store.get_actor(actor_id)
        pool = self._pool(actor_id)
        with pool.wake:
            before = len(pool.slots)
            if actor is not None and actor.status in (READY, SUBMITTED):
                for _ in range(num - before):
                    self._spawn(pool, actor)
            return before, len(pool.slots)

    def stop_worker(self, actor_id: str, worker_id: str) -> bool:
        pool = self._pool(actor_id)
        with pool.wake:
            slot = pool.slots.get(worker_id)
            if slot is None:
                return False
            slot.stop.set()
            pool.wake.notify_all()
        return True

    def stop_actor(self, actor_id: str, why: Stop, keep: int = 0) -> None:
        """Stop the actor's workers and what they run (DELETE, or a new revision: then ``keep``
        replacement workers are started at once, waiting for the new image's check)."""
        pool = self._pool(actor_id)
        with pool.wake:
            slots = list(pool.slots.values())
            for slot in slots:
                slot.stop.set()
            pool.wake.notify_all()
        with self._machine:
            held = [eid for eid, run in self.executions.runs.items() if run.execution.actor_id == actor_id]
        for eid in held:  # also one still starting: the lifecycle honours it once it has started
            self._feed(lifecycle.StopAsked(eid, why))
        for slot in slots:
            if slot.thread is not None and slot.thread is not threading.current_thread():
                slot.thread.join(timeout=30)
        with self._lock:
            if self._pools.get(actor_id) is pool:
                self._pools.pop(actor_id, None)
        self.runtime.release_actor(actor_id)  # warm containers (docker)
        if keep:
            actor = self.store.get_actor(actor_id)
            if actor is not None:
                self.ensure_workers(actor_id, keep)

    def _spawn(self, pool: _Pool, actor: Actor, resume: Execution | None = None) -> None:
        worker = Worker(
            id=new_id(), actor_id=actor.id, status=WORKER_READY, image=actor.reg.image, create_time=now()
        )
        if actor.status == SUBMITTED:
            worker.status = WORKER_REQUESTED
        if resume is not None:  # a re-attached execution keeps this worker busy until it ends
            worker.status, worker.current_execution = WORKER_BUSY, resume.id
        slot = _WorkerSlot(worker, resume=resume)
        pool.slots[worker.id] = slot
        self._put_worker(worker)
        slot.thread = threading.Thread(
            target=self._work, args=(pool, slot), name=f"worker-{actor.id}-{worker.id}", daemon=True
        )
        slot.thread.start()

    def _put_worker(self, worker: Worker) -> None:
        """Worker rows are for display: a store that refuses them now does not stop the worker."""
        try:
            self.store.put_worker(worker)
        except StoreUnavailable as exc:
            log.debug("worker %s not recorded: %s", worker.id, exc)

    def _work(self, pool: _Pool, slot: _WorkerSlot) -> None:
        worker = slot.worker
        idle_since = time.monotonic()
        failures = 0
        try:
            if slot.resume is not None:
                self._supervise_again(slot.resume)
                worker.status, worker.current_execution = WORKER_READY, None
                worker.last_execution_time = now()
                self._put_worker(worker)
            while not slot.stop.is_set() and not self._closing.is_set():
                try:
                    ran = self._work_once(pool, slot)
                    failures = 0
                except StoreUnavailable as exc:  # locked or full: wait and try again, never die
                    log.warning("worker %s: %s; retrying", worker.id, exc.message)
                    self._closing.wait(lifecycle.backoff(failures))
                    failures += 1
                    continue
                except Exception:  # a bug must not kill the worker
                    log.exception("worker %s failed; going on", worker.id)
                    self._closing.wait(lifecycle.backoff(failures))
                    failures += 1
                    continue
                if ran is None:
                    break
                if ran:
                    idle_since = time.monotonic()
                    continue
                with pool.wake:
                    if slot.stop.is_set():
                        break
                    extra = len(pool.slots) > 1
                    if extra and time.monotonic() - idle_since > self.config.worker_idle_seconds:
                        break
                    pool.wake.wait(timeout=5.0)
        finally:
            with pool.wake:
                pool.slots.pop(worker.id, None)
            try:
                self.store.delete_worker(worker.id)
            except StoreUnavailable:
                pass

    def _work_once(self, pool: _Pool, slot: _WorkerSlot) -> bool | None:
        """Claim and run one message: True when one ran, False when there was nothing to do (wait),
        None when this worker should stop (the actor is gone or in ERROR)."""
        worker = slot.worker
        actor = self.store.get_actor(pool.actor_id)
        if actor is None or actor.status not in (READY, SUBMITTED):
            return None
        if actor.status == SUBMITTED:  # asked for while the image is checked: wait for READY
            return False
        if worker.status == WORKER_REQUESTED:
            worker.status = WORKER_READY
            self._put_worker(worker)
        if self._runtime_down.is_set() and not self._probe():
            return False  # messages stay queued while the runtime does not answer
        at = now()
        execution = self.store.claim_next(actor.id, lambda e: lifecycle.claim(e, worker.id, at))
        if execution is None:
            return False
        worker.status, worker.current_execution = WORKER_BUSY, execution.id
        self._put_worker(worker)
        try:
            self._run(actor, execution, worker)
        except Exception as exc:  # a bug must not kill the worker or leave the execution RUNNING
            log.exception("execution %s failed inside the service", execution.id)
            self._feed(lifecycle.Failed(execution.id, str(exc), now()))
        worker.status, worker.current_execution = WORKER_READY, None
        worker.last_execution_time = now()
        self._put_worker(worker)
        return True

    def _probe(self) -> bool:
        """Does the runtime answer again? Also carries out the removals it missed."""
        try:
            self.runtime.find_leftovers(self.service_id)
        except RuntimeUnreachable:
            return False
        self._runtime_down.clear()
        self._retry_removals()
        return True

    # -- one execution ------------------------------------------------------------------------------

    def cancel(self, execution_id: str, why: Stop = Stop.USER) -> bool:
        """Force-quit an execution a worker holds (starting or running); False when none holds it."""
        with self._machine:
            if self.executions.get(execution_id) is None:
                return False
        self._feed(lifecycle.StopAsked(execution_id, why))
        return True

    def drop(self, execution: Execution, why: str) -> None:
        """A queued execution left its mailbox without running: it ends ERROR, waiters are woken."""
        self._feed(lifecycle.Dropped(execution, why, now()))

    def live_logs(self, execution_id: str) -> str | None:
        """The logs of a running execution straight from the runtime (None when not running here)."""
        running = self._runs.get(execution_id)
        if running is None:
            return None
        try:
            return engine.truncate_logs(self.runtime.logs(running))
        except RuntimeFailure:
            return None

    def _run(self, actor: Actor, execution: Execution, worker: Worker) -> None:
        left = self._feed(
            lifecycle.Claimed(
                execution,
                now(),
                self._max_run_time(actor, execution),
                self._mem_limit(actor),
                runtime_unreachable=self._runtime_down.is_set(),
            )
        )
        if not any(isinstance(i, lifecycle.StartRuntime) for i in left):
            return
        binary_path = None
        collector = None
        try:
            try:
                spec, binary_path, collector = self._prepare(actor, execution, worker)
            except (OSError, StoreUnavailable) as exc:  # before the runtime saw it: it goes back
                self._close(collector)
                self._feed(lifecycle.StartFailed(execution.id, str(exc), now(), ran=False))
                return
            try:
                running = self.runtime.start(spec)
            except NotStarted as exc:  # nothing ran: back to the head of its mailbox
                self._feed(lifecycle.StartFailed(execution.id, str(exc), now(), ran=False))
                return
            except RuntimeFailure as exc:
                unreachable = isinstance(exc, RuntimeUnreachable)
                if unreachable:
                    self._runtime_down.set()
                left = self._feed(lifecycle.StartFailed(execution.id, str(exc), now(), unreachable))
                if unreachable:  # it may exist: ask the runtime once it answers
                    self._reconcile_one(execution.id, actor, collector)
                    collector = None
                return
            self._runs[execution.id] = running
            self._feed(lifecycle.Started(execution.id, running.ref, now(), running.extra.get("node") or None))
            self._supervise(actor, execution.id, running, collector)
            collector = None
        finally:
            self._close(collector)
            if binary_path:
                try:
                    os.unlink(binary_path)
                except FileNotFoundError:
                    pass

    def _prepare(
        self, actor: Actor, execution: Execution, worker: Worker
    ) -> tuple[RunSpec, str | None, ResultCollector]:
        expires = now() + (self._max_run_time(actor, execution) or self.config.max_run_time or 86400) + 600
        token = self.tokens.issue(actor.id, execution.id, expires) if actor.reg.token else ""
        api_server, api_socket = self._api_server_for_runtime()
        env = engine.execution_environment(
            actor,
            execution,
            worker_id=worker.id,
            api_server=api_server,
            access_token=token,
            username=execution.executor,
            actor_configs=self.configs_for(actor.id),
        )
        binary_path = None
        if execution.content_type == engine.CT_BINARY:
            payload = self.store.get_payload(execution.id) or b""
            binary_path = os.path.join(self.files_dir, execution.id)
            with open(binary_path, "wb") as f:
                f.write(payload)
            os.chmod(binary_path, 0o444)
        collector = self._collector(execution.id)
        spec = RunSpec(
            execution_id=execution.id,
            actor_id=actor.id,
            worker_id=worker.id,
            image=actor.reg.image,
            environment=env,
            service_id=self.service_id,
            binary_path=binary_path,
            results_socket=collector.path,
            api_socket=api_socket,
            mem_limit=self._mem_limit(actor),
            max_cpus=actor.reg.max_cpus or self.config.default_max_cpus,
            network=self.config.container_network,
            privileged=actor.reg.privileged and self.config.allow_privileged,
            warm=wants_warm(actor.reg.hints),
            queue=actor.reg.queue,
        )
        return spec, binary_path, collector

    def _collector(self, execution_id: str) -> ResultCollector:
        def store_results(frames: list[bytes]) -> None:
            for attempt in range(1000):  # a refusing store: retry (the socket buffers meanwhile)
                try:
                    self.store.add_results(execution_id, frames, now())
                    return
                except StoreUnavailable as exc:
                    if self._closing.is_set() and attempt >= 3:
                        log.warning("results of %s lost at shutdown: %s", execution_id, exc)
                        return
                    self._pause(lifecycle.backoff(attempt))

        # A path per attempt, never per execution: an attempt the runtime did not answer is closed after
        # the lifecycle requeued it, and its late unlink must not take the socket the next attempt
        # bound at the same path (Docker then bind-mounts a directory it creates there: results lost).
        path = os.path.join(self.sock_dir, f"{execution_id}.{next(self._attempts)}.sock")
        return ResultCollector(path, store_results)

    @staticmethod
    def _close(collector: ResultCollector | None) -> None:
        if collector is not None:
            collector.close()

    def _mem_limit(self, actor: Actor) -> str | None:
        return actor.reg.mem_limit or self.config.default_mem_limit

    def _max_run_time(self, actor: Actor, execution: Execution) -> int | None:
        return lifecycle.run_limit(execution.max_run_time, actor.reg.max_run_time, self.config.max_run_time)

    def _reconcile_one(self, execution_id: str, actor: Actor, collector: ResultCollector | None) -> None:
        """The runtime did not answer while starting: wait until it does, then let the lifecycle
        decide from what it has (requeue, supervise, or ERROR)."""
        attempt = 0
        while True:
            if self._closing.wait(lifecycle.backoff(attempt)) and attempt > 3:
                self._close(collector)  # left RUNNING: the next start reconciles it
                return
            attempt += 1
            try:
                leftovers = [
                    lo
                    for lo in self.runtime.find_leftovers(self.service_id)
                    if lo.execution_id == execution_id
                ]
            except RuntimeUnreachable:
                continue
            self._runtime_down.clear()
            self._retry_removals()
            with self._machine:
                run = self.executions.get(execution_id)
            if run is None:
                self._close(collector)
                return
            left = self._recovered(run.execution, leftovers[0] if leftovers else None)
            if any(isinstance(i, lifecycle.Attach) for i in left):
                running = self._runs[execution_id]
                self._supervise(actor, execution_id, running, collector)
            else:
                self._close(collector)
            return

    def _supervise(
        self, actor: Actor, execution_id: str, running: RunningRef, collector: ResultCollector | None
    ) -> None:
        """Wait for the end in short slices, writing partial logs; each slice is a Tick, so the
        lifecycle can stop it (force-quit, max_run_time, shutdown)."""
        next_logs = time.monotonic() + LIVE_LOG_INTERVAL
        unreachable = 0
        try:
            while True:
                try:
                    info = self.runtime.wait(running, WAIT_SLICE)
                    if info is None:
                        self._feed(lifecycle.Tick(execution_id, now()))
                        if time.monotonic() >= next_logs:
                            next_logs = time.monotonic() + LIVE_LOG_INTERVAL
                            self._partial_logs(execution_id, running)
                        unreachable = 0
                        continue
                    logs = engine.truncate_logs(self.runtime.logs(running))
                except RuntimeUnreachable as exc:  # keep it; read its real exit once the runtime answers
                    self._runtime_down.set()
                    if self._closing.is_set() and unreachable > 3:
                        return  # left RUNNING: the next start reconciles it from what Docker has
                    self._feed(lifecycle.Unreachable(execution_id, str(exc), unreachable))
                    unreachable += 1
                    continue
                except RuntimeFailure as exc:
                    self._close(collector)
                    collector = None
                    self._feed(lifecycle.Lost(execution_id, str(exc), now()))
                    return
                self._runtime_down.clear()
                self._close(collector)  # every result sent before the exit is stored first
                collector = None
                finished = now()
                expiry = engine.log_expiry(
                    actor.reg.log_ex, self.config.log_ex, self.config.log_ex_limit, finished
                )
                oom = bool((info.final_state or {}).get("OOMKilled"))
                self._feed(
                    lifecycle.Exited(
                        execution_id,
                        info.exit_code,
                        info.final_state,
                        info.cpu,
                        info.io,
                        logs,
                        expiry,
                        finished,
                        oom,
                    )
                )
                return
        finally:
            self._close(collector)

    def _partial_logs(self, execution_id: str, running: RunningRef) -> None:
        try:
            self.store.set_logs(execution_id, engine.truncate_logs(self.runtime.logs(running)), None)
        except StoreUnavailable:
            pass  # partial logs only: the final ones are retried until stored
        except RuntimeUnreachable:
            raise  # the supervisor waits for the runtime to answer
        except RuntimeFailure as exc:  # partial logs only: a refused read never ends the execution
            log.debug("partial logs of %s: %s", execution_id, exc)

    def _supervise_again(self, execution: Execution) -> None:
        """Keep supervising an execution a previous run of the service started (docker only)."""
        actor = self.store.get_actor(execution.actor_id)
        running = self._runs.get(execution.id)
        if running is None or actor is None:
            return
        collector = None
        try:  # rebind the results socket at the same path, so later datagrams still arrive
            collector = self._collector(execution.id)
        except OSError:
            collector = None
        if collector is not None:  # the run directory is new at every start: say where we listen now
            self.runtime.reattached(running, collector.path, self._api_server_for_runtime()[1])
        self._supervise(actor, execution.id, running, collector)

    # -- completion ---------------------------------------------------------------------------------

    def announce(self, execution: Execution) -> None:
        with self._finished:
            self._finished.notify_all()
        for listener in list(self.completion_listeners):
            try:
                listener(execution)
            except Exception:
                log.exception("completion listener failed")

    def wait_finished(
        self,
        execution_ids: list[str],
        timeout: float,
        also: Callable[[], list[Execution]] | None = None,
    ) -> list[Execution]:
        """Block until at least one of the executions is terminal (or the timeout); return the terminal
        ones. The long-poll behind our executor: no polling loop in the client. ``also`` adds more
        executions worth waking for (the executor's messages sent after its poll began)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._finished:
                done = self.store.finished_among(execution_ids)
                if also is not None:
                    seen = {e.id for e in done}
                    done += [e for e in also() if e.id not in seen]
                remaining = deadline - time.monotonic()
                if done or remaining <= 0:
                    return done
                self._finished.wait(timeout=min(remaining, 5.0))


def _about(instruction: object) -> str:
    execution = getattr(instruction, "execution", None)
    if execution is not None:
        return str(execution.id)
    return str(getattr(instruction, "execution_id", ""))
