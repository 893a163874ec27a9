"""Mailboxes, workers and the supervision of each execution: the I/O half of the engine.

Each actor has one FIFO mailbox (rows in the store) and a pool of worker threads. A worker claims the
oldest message (atomically, in the store), runs it through the runtime, supervises it (partial logs,
force-quit, ``max_run_time``), stores logs, results and the final status, then claims the next. A
stateful actor has one worker, so its messages run strictly in order; a stateless one grows to
``max_workers`` as soon as its queue asks for it (``engine.target_workers``), and extra workers stop
after ``worker_idle_seconds`` idle. Workers are threads because every runtime call blocks.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import engine
from .ids import new_id, now
from .models import READY, WORKER_BUSY, WORKER_READY, Actor, Execution, Worker
from .results import ResultCollector
from .runtimes.base import ExitInfo, RunningRef, RunSpec, Runtime, RuntimeFailure
from .settings import ServiceConfig
from .store import Store
from .tokens import TokenBook

log = logging.getLogger("abaco_nb.service")

LIVE_LOG_INTERVAL = 2.0  # seconds between partial-log writes to the store
WAIT_SLICE = 0.5  # seconds per runtime.wait call while supervising


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
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.config = config
        self.tokens = tokens
        self.service_id = service_id
        # (value of _abaco_api_server inside an execution, host path of the API socket to mount)
        self._api_server_for_runtime = api_server_for_runtime
        # {name: value} of the actor configs an actor's executions get (Service sets Configs.values_for)
        self.configs_for: Callable[[str], dict[str, Any]] = lambda actor_id: {}
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.RLock()
        self._runs: dict[str, RunningRef] = {}  # execution id -> its started execution
        self._finished = threading.Condition()
        self._closing = threading.Event()
        self._stop_reason: dict[str, str] = {}  # execution id -> why it is being stopped
        self.files_dir = os.path.join(config.resolved_run_dir(), "messages")
        os.makedirs(self.files_dir, mode=0o700, exist_ok=True)
        self.sock_dir = os.path.join(config.resolved_run_dir(), "results")
        if len(self.sock_dir) > 70:  # AF_UNIX paths are limited to 108 bytes
            self.sock_dir = tempfile.mkdtemp(prefix="abnb-")
        os.makedirs(self.sock_dir, mode=0o755, exist_ok=True)
        self.completion_listeners: list[Callable[[Execution], None]] = []

    # -- start, recovery and shutdown ---------------------------------------------------------------

    def recover(self) -> None:
        """Reconcile executions a previous run left RUNNING, then resume every queued mailbox."""
        self.store.clear_workers()
        running = self.store.executions_with_status("RUNNING")
        leftovers = {lo.execution_id: lo for lo in self.runtime.find_leftovers(self.service_id)}
        alive: dict[str, str] = {}
        never_started = frozenset(eid for eid, lo in leftovers.items() if not lo.started)
        for eid, leftover in leftovers.items():
            if eid in never_started:
                self.runtime.remove(RunningRef(eid, leftover.ref))
                continue
            try:
                run = self.runtime.attach(leftover)
            except RuntimeFailure:
                continue
            alive[eid] = run.ref
            self._runs[eid] = run
        plan = engine.plan_recovery(running, alive, self.runtime.name, never_started)
        for execution in plan.requeue:
            self.store.requeue_first(execution)
        for execution in plan.fail:
            engine.finish_error(execution, execution.status_message, now())
            self.store.finish_execution(execution, None, None)
            self.announce(execution)
        for execution, _ref in plan.reattach:  # each in a worker slot, so a stateful actor stays at one
            actor = self.store.get_actor(execution.actor_id)
            if actor is None:
                threading.Thread(target=self._resupervise, args=(execution,), daemon=True).start()
                continue
            pool = self._pool(actor.id)
            with pool.wake:
                self._spawn(pool, actor, resume=execution)
        for eid, leftover in leftovers.items():  # leftovers whose execution is not RUNNING: remove
            if eid not in alive and eid not in never_started and eid not in {e.id for e in running}:
                try:
                    self.runtime.remove(RunningRef(eid, leftover.ref))
                except RuntimeFailure:
                    pass
        for actor_id in self.store.queued_actor_ids():
            self.notify(actor_id)

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
        reason = "The service shut down while this execution was running."
        for pool in pools:
            for slot in list(pool.slots.values()):
                eid = slot.worker.current_execution
                if eid:  # also one whose process is still starting (no RunningRef yet): _supervise honours it
                    self._stop_reason[eid] = reason
        for eid, run in list(self._runs.items()):
            self._stop_reason[eid] = reason
            try:
                self.runtime.stop(run, grace=grace)
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
            pool.wake.notify(max(1, queued))

    def ensure_workers(self, actor_id: str, num: int) -> tuple[int, int]:
        """Admin ``POST /workers {num}``: have at least ``num`` workers. Returns (before, after)."""
        actor = self.store.get_actor(actor_id)
        pool = self._pool(actor_id)
        with pool.wake:
            before = len(pool.slots)
            if actor is not None and actor.status == READY:
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

    def stop_actor(self, actor_id: str, reason: str) -> None:
        """Stop the actor's workers and force-quit what they run (DELETE, or a new revision)."""
        pool = self._pool(actor_id)
        with pool.wake:
            slots = list(pool.slots.values())
            for slot in slots:
                slot.stop.set()
            pool.wake.notify_all()
        for slot in slots:
            eid = slot.worker.current_execution
            if eid and not self.cancel(eid, reason):
                # Claimed but its process is still starting (no RunningRef yet): _supervise honours the
                # reason on its first slice, so the DELETE neither waits 30 s nor leaves it running.
                self._stop_reason[eid] = reason
        for slot in slots:
            if slot.thread is not None and slot.thread is not threading.current_thread():
                slot.thread.join(timeout=30)
        with self._lock:
            self._pools.pop(actor_id, None)

    def _spawn(self, pool: _Pool, actor: Actor, resume: Execution | None = None) -> None:
        worker = Worker(
            id=new_id(), actor_id=actor.id, status=WORKER_READY, image=actor.reg.image, create_time=now()
        )
        if resume is not None:  # a re-attached execution keeps this worker busy until it ends
            worker.status, worker.current_execution = WORKER_BUSY, resume.id
        slot = _WorkerSlot(worker, resume=resume)
        pool.slots[worker.id] = slot
        self.store.put_worker(worker)
        slot.thread = threading.Thread(
            target=self._work, args=(pool, slot), name=f"worker-{actor.id}-{worker.id}", daemon=True
        )
        slot.thread.start()

    def _work(self, pool: _Pool, slot: _WorkerSlot) -> None:
        worker = slot.worker
        idle_since = time.monotonic()
        try:
            if slot.resume is not None:
                self._resupervise(slot.resume)
                worker.status, worker.current_execution = WORKER_READY, None
                worker.last_execution_time = now()
                self.store.put_worker(worker)
            while not slot.stop.is_set() and not self._closing.is_set():
                actor = self.store.get_actor(pool.actor_id)
                if actor is None or actor.status != READY:
                    break
                execution = self.store.claim_next(actor.id, worker.id, now())
                if execution is None:
                    with pool.wake:
                        if slot.stop.is_set():
                            break
                        extra = len(pool.slots) > 1
                        if extra and time.monotonic() - idle_since > self.config.worker_idle_seconds:
                            break
                        pool.wake.wait(timeout=5.0)
                    continue
                worker.status, worker.current_execution = WORKER_BUSY, execution.id
                self.store.put_worker(worker)
                try:
                    self._run(actor, execution, worker)
                except Exception as exc:  # a bug must not kill the worker or lose the execution
                    log.exception("execution %s failed inside the service", execution.id)
                    engine.finish_error(
                        execution, f"Internal error while running the execution: {exc}", now()
                    )
                    self.store.finish_execution(execution, None, None)
                    self.announce(execution)
                worker.status, worker.current_execution = WORKER_READY, None
                worker.last_execution_time = now()
                self.store.put_worker(worker)
                idle_since = time.monotonic()
        finally:
            with pool.wake:
                pool.slots.pop(worker.id, None)
            self.store.delete_worker(worker.id)

    # -- one execution ------------------------------------------------------------------------------

    def cancel(self, execution_id: str, reason: str = "Force quit requested by the user.") -> bool:
        """Force-quit a running execution; returns False when it is not running here."""
        run = self._runs.get(execution_id)
        if run is None:
            return False
        self._stop_reason[execution_id] = reason
        return True

    def live_logs(self, execution_id: str) -> str | None:
        """The logs of a running execution straight from the runtime (None when not running here)."""
        run = self._runs.get(execution_id)
        if run is None:
            return None
        try:
            return engine.truncate_logs(self.runtime.logs(run))
        except RuntimeFailure:
            return None

    def _run(self, actor: Actor, execution: Execution, worker: Worker) -> None:
        started = now()
        expires = started + (self._max_run_time(actor, execution) or self.config.max_run_time or 86400) + 600
        token = self.tokens.issue(actor.id, execution.id, expires) if actor.reg.token else ""
        api_server, api_socket = self._api_server_for_runtime()
        env = engine.execution_environment(
            actor, execution, worker_id=worker.id, api_server=api_server, access_token=token,
            username=execution.executor, actor_configs=self.configs_for(actor.id),
        )  # fmt: skip
        binary_path = None
        if execution.content_type == engine.CT_BINARY:
            payload = self.store.get_payload(execution.id) or b""
            binary_path = os.path.join(self.files_dir, execution.id)
            with open(binary_path, "wb") as f:
                f.write(payload)
            os.chmod(binary_path, 0o444)
        collector = ResultCollector(
            os.path.join(self.sock_dir, f"{execution.id}.sock"),
            lambda frames: self.store.add_results(execution.id, frames, now()),
        )
        spec = RunSpec(
            execution_id=execution.id, actor_id=actor.id, worker_id=worker.id, image=actor.reg.image,
            environment=env, service_id=self.service_id, binary_path=binary_path,
            results_socket=collector.path, api_socket=api_socket,
            mem_limit=actor.reg.mem_limit or self.config.default_mem_limit,
            max_cpus=actor.reg.max_cpus or self.config.default_max_cpus,
            network=self.config.container_network, privileged=actor.reg.privileged and self.config.allow_privileged,
        )  # fmt: skip
        try:
            try:
                run = self.runtime.start(spec)
            except RuntimeFailure as exc:
                collector.close()
                engine.finish_error(execution, f"The execution could not start: {exc}", now())
                self.store.finish_execution(execution, None, None)
                self.announce(execution)
                return
            execution.runtime_ref = run.ref
            self.store.update_execution(execution)
            self._runs[execution.id] = run
            self._supervise(actor, execution, run, collector)
        finally:
            if binary_path:
                try:
                    os.unlink(binary_path)
                except FileNotFoundError:
                    pass

    def _max_run_time(self, actor: Actor, execution: Execution) -> int | None:
        return execution.max_run_time or actor.reg.max_run_time or self.config.max_run_time or None

    def _supervise(
        self, actor: Actor, execution: Execution, run: RunningRef, collector: ResultCollector | None
    ) -> None:
        """Wait for the end while writing partial logs and honouring force-quit and max_run_time."""
        started = execution.start_time or now()
        max_run_time = self._max_run_time(actor, execution)
        next_logs = time.monotonic() + LIVE_LOG_INTERVAL
        stopped_because = ""
        info: ExitInfo | None = None
        try:
            while info is None:
                info = self.runtime.wait(run, WAIT_SLICE)
                if info is not None:
                    break
                reason = self._stop_reason.get(execution.id) or engine.stop_reason(
                    execution, started, now(), max_run_time
                )
                if reason and not stopped_because:
                    stopped_because = reason
                    self.runtime.stop(run, grace=10.0)
                if time.monotonic() >= next_logs:
                    self.store.set_logs(execution.id, engine.truncate_logs(self.runtime.logs(run)), None)
                    next_logs = time.monotonic() + LIVE_LOG_INTERVAL
            logs = engine.truncate_logs(self.runtime.logs(run))
        except RuntimeFailure as exc:
            logs, info = None, None
            stopped_because = f"The runtime failed while supervising the execution: {exc}"
        finally:
            if collector is not None:
                collector.close()
            self._runs.pop(execution.id, None)
        finished = now()
        shutdown_reason = self._stop_reason.pop(execution.id, "")
        if info is None:
            engine.finish_error(execution, stopped_because, finished)
        elif shutdown_reason.startswith("The service shut down"):
            engine.finish_error(execution, shutdown_reason, finished)
        else:
            engine.finish_complete(
                execution, exit_code=info.exit_code, final_state=info.final_state, cpu=info.cpu, io=info.io,
                finished=finished, status_message=stopped_because,
            )  # fmt: skip
        expiry = engine.log_expiry(actor.reg.log_ex, self.config.log_ex, self.config.log_ex_limit, finished)
        self.store.finish_execution(execution, logs, expiry)
        try:
            self.runtime.remove(run)
        except RuntimeFailure:
            log.warning("could not remove the runtime resources of %s", execution.id)
        self.announce(execution)

    def _resupervise(self, execution: Execution) -> None:
        """Keep supervising an execution a previous run of the service started (docker only)."""
        actor = self.store.get_actor(execution.actor_id)
        run = self._runs.get(execution.id)
        if run is None:
            return
        if actor is None:
            self.runtime.stop(run, grace=1.0)
            engine.finish_error(execution, "The actor was deleted while the service was down.", now())
            self.store.finish_execution(execution, None, None)
            self.announce(execution)
            return
        collector = None
        sock = os.path.join(self.sock_dir, f"{execution.id}.sock")
        try:  # rebind the results socket at the same path, so later datagrams still arrive
            collector = ResultCollector(
                sock, lambda frames: self.store.add_results(execution.id, frames, now())
            )
        except OSError:
            collector = None
        self._supervise(actor, execution, run, collector)

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
