"""The embedded Abaco service: one object that owns the store, the runtime and the dispatcher.

Every operation of the API is a method here, taking and returning plain data, so the HTTP layers
(standalone Tornado, the Jupyter extension) stay thin and the whole service can be driven in-process.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from . import engine, lifecycle, private_files, privilege, retention, strict_json
from .access_control import Access
from .actor_configs import ActorConfigs
from .automation import Automation
from .cron import CRON_EXECUTOR
from .dispatcher import Dispatcher
from .errors import AbacoError, NotFound, StoreUnavailable
from .events import EVENT_EXECUTOR
from .ids import new_id, now
from .lifecycle import Stop
from .models import (
    COMPLETE,
    ERROR,
    READY,
    RUNNING,
    SHUTTING_DOWN,
    SUBMITTED,
    Actor,
    Execution,
    Worker,
    parse_bool,
    parse_int,
    parse_registration,
)
from .runtimes.base import API_SOCKET_PATH, ImageCheck, Runtime, RuntimeUnreachable
from .settings import ServiceConfig
from .store import Store
from .tokens import Scope, TokenBook
from .users_ops import Users

log = logging.getLogger("abaco_nb.service")
LOW_DISK_BYTES = 1 << 20  # below this free on the database's disk, the start says it is full
EXECUTOR_HINT = "abaco_nb_executor"  # actors an AbacoExecutor registers; removed when idle
SYSTEM_SENDERS = frozenset({CRON_EXECUTOR, EVENT_EXECUTOR})  # who sends cron and link-event messages


def make_runtime(config: ServiceConfig) -> Runtime:
    """``auto`` picks Docker when an engine answers, else the process runtime."""
    choice = config.runtime
    if choice == "swarm":
        try:
            from .runtimes.swarm import SwarmRuntime

            return SwarmRuntime(
                registry=config.swarm_registry,
                callback=config.swarm_callback,
                agent_port=config.swarm_agent_port,
                agent_dir=config.swarm_agent_dir,
                agent_image=config.swarm_agent_image,
                agent_docker_socket=config.swarm_node_docker_socket,
                # kept across restarts (the run dir is fresh per start), private beside the database
                state_dir=config.db_path + ".state",
                default_mem_limit=config.default_mem_limit or "2g",
                warm_idle_seconds=config.warm_idle_seconds,
            )
        except Exception as exc:
            raise AbacoError(f"--runtime swarm, but no Docker engine answers: {exc}", 500) from exc
    if choice in ("auto", "docker"):
        try:
            import docker

            client = docker.from_env(timeout=10)
            client.ping()
            from .runtimes.docker import DockerRuntime

            return DockerRuntime(
                client=client,
                default_mem_limit=config.default_mem_limit or "2g",
                warm_dir=os.path.join(config.resolved_run_dir(), "warm"),
                warm_idle_seconds=config.warm_idle_seconds,
            )
        except Exception as exc:
            if choice == "docker":
                raise AbacoError(f"--runtime docker, but no Docker engine answers: {exc}", 500) from exc
    from .runtimes.process import ProcessRuntime

    uids = execution_uids(config)
    return ProcessRuntime(os.path.join(config.resolved_run_dir(), "proc"), config.default_mem_limit, uids)


def execution_uids(config: ServiceConfig) -> Any:
    """The process runtime's uids, one per execution, when the service is root (runtimes/sandbox.py).
    ``auto`` first checks that such a uid can run this service's Python: when it cannot (a Python under
    a private home), it says so and executions run as the service's user; ``on`` isolates anyway (then
    only programs other users can run work)."""
    from .runtimes.sandbox import UidPool, cannot_run_python, isolating

    if not isolating(config.execution_uids):
        if os.geteuid() == 0:
            log.warning("process runtime: execution_uids is off; executions run as root (no boundary)")
        return None
    uids = UidPool(config.execution_uid_base, config.execution_uid_count)
    if config.execution_uids == "auto":
        probe = uids.acquire()
        why = cannot_run_python(probe)
        uids.release(probe)
        if why is not None:
            log.warning(
                "process runtime: executions run as root (no boundary), because another user cannot run "
                "this service's Python (%s); install it where others can read it, or set execution_uids "
                "to 'on' to isolate anyway",
                why,
            )
            return None
    return uids


class Service:
    """The Abaco execution service. ``start()`` recovers and begins dispatching; ``close()`` stops."""

    def __init__(
        self, config: ServiceConfig, runtime: Runtime | None = None, api_socket: str | None = None
    ) -> None:
        self.config = config
        os.makedirs(os.path.dirname(os.path.abspath(config.db_path)), mode=0o700, exist_ok=True)
        private_files.private_dir(config.resolved_run_dir())  # unique per service, unless configured
        self._run_lock = private_files.lock_run_dir(config.run_dir)
        private_files.private_database(config.db_path)
        self.store = Store(config.db_path)
        secret = self.store.get_meta("token_secret")
        if secret is None:
            secret = TokenBook.new_secret().hex()
            self.store.set_meta("token_secret", secret)
        service_id = self.store.get_meta("service_id")
        if service_id is None:
            service_id = new_id()
            self.store.set_meta("service_id", service_id)
        self.service_id = service_id
        self.tokens = TokenBook(bytes.fromhex(secret))
        self.runtime = runtime or make_runtime(config)
        self.api_socket = api_socket  # host path of the server's HTTP unix socket, if it serves one
        self.access = Access(self.store)  # aliases, nonces, permissions
        self.configs = ActorConfigs(self.store)  # actor configs, injected as _actor_configs
        # events to links and webhooks, and the cron pass
        self.automation = Automation(self.store, self.send, self._find_actor, config.cron_interval)
        self.dispatcher = Dispatcher(
            self.store,
            self.runtime,
            config,
            self.tokens,
            service_id,
            self._api_for_executions,
            configs_for=self.configs.values_for,
            listeners=[self.automation.execution_finished],
        )
        self._preparing = ThreadPoolExecutor(max_workers=4, thread_name_prefix="image")
        self._janitor_stop = threading.Event()
        self.users = Users(self.store, config)  # who is who in a multi-user service

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Recover from the last run (re-check images, reconcile executions) and start dispatching.
        A full disk does not stop the start: it is said in the log, and writes are refused with 507
        until there is room (the workers pick up once there is)."""
        self._say_if_disk_full()
        self.dispatcher.recover()
        for actor in self.store.list_actors():
            if actor.status in (SUBMITTED, READY):
                self._preparing.submit(self._prepare, actor.id, actor.revision, False)
        threading.Thread(target=self._janitor, name="janitor", daemon=True).start()
        self.automation.start()

    def _say_if_disk_full(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.config.db_path))
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return
        if free < LOW_DISK_BYTES:
            log.error(
                "the disk holding the service's database (%s) is full (%d bytes free): messages and "
                "changes are refused (507) until space is freed there",
                folder,
                free,
            )

    def close(self) -> None:
        self._janitor_stop.set()
        self.automation.close()
        self.dispatcher.shutdown()
        self._preparing.shutdown(wait=False, cancel_futures=True)
        self.runtime.close()  # the zygote, warm containers
        self.store.close()
        if self.config.run_dir_is_temporary:  # sockets and message files: nothing left after SIGTERM
            shutil.rmtree(self.config.run_dir, ignore_errors=True)
        os.close(self._run_lock)

    def _janitor(self) -> None:
        """Expire logs and old results, and remove idle executor actors, once a minute (more often when
        the executor idle time is configured shorter than a few minutes)."""
        interval = max(0.5, min(60.0, self.config.executor_idle_seconds / 4))
        while not self._janitor_stop.wait(interval):
            try:
                t = now()
                self.store.purge_expired_logs(t)
                self.store.purge_results_before(t - self.config.results_ttl)
                self.store.purge_orphan_executions()
                self.prune_executions(t)
                self.remove_idle_executors(t)
            except Exception:
                log.exception("janitor pass failed")

    def prune_executions(self, t: float) -> int:
        """Apply the execution retention (``retention``): count and age per actor, totals kept."""
        rule = retention.Retention(self.config.executions_kept_per_actor, self.config.executions_max_age)
        pruned = 0
        for actor in self.store.list_actors():
            doomed = retention.to_prune(self.store.list_executions(actor.id), rule, t)
            if doomed:
                self.store.prune_executions(actor.id, [e.id for e in doomed], retention.totals_of(doomed))
                pruned += len(doomed)
        return pruned

    def remove_idle_executors(self, t: float) -> list[str]:
        """Delete actors registered by an AbacoExecutor (hint ``abaco_nb_executor``) that have had
        nothing queued or running for ``executor_idle_seconds``: the seed's promised idle clean-up."""
        removed = []
        for actor in self.store.list_actors():
            if EXECUTOR_HINT not in actor.reg.hints or actor.status == SHUTTING_DOWN:
                continue
            active, last = self.store.actor_activity(actor.id)
            idle_since = max(last or 0.0, actor.last_update_time or 0.0, actor.create_time or 0.0)
            if active == 0 and t - idle_since > self.config.executor_idle_seconds:
                log.info("removing executor actor %s, idle for %.0f s", actor.id, t - idle_since)
                try:
                    self.delete(actor.id)
                except NotFound:
                    continue
                removed.append(actor.id)
        return removed

    def _api_for_executions(self) -> tuple[str, str | None]:
        """What an execution gets as ``_abaco_api_server``: our unix socket, at the container path for
        Docker and at the host path for a process."""
        if self.api_socket is None:
            return "", None
        if self.runtime.name in ("docker", "swarm"):  # swarm: the node's agent relays the socket
            return "http+unix://" + quote(API_SOCKET_PATH, safe=""), self.api_socket
        return "http+unix://" + quote(self.api_socket, safe=""), self.api_socket

    # -- actors -------------------------------------------------------------------------------------

    def _prepare(self, actor_id: str, revision: int, pull: bool) -> None:
        """Make the image available, then READY (and run what is queued) or ERROR with the reason."""
        actor = self.store.get_actor(actor_id)
        if actor is None or actor.revision != revision:
            return
        attempt = 0
        while True:  # a runtime that does not answer: the actor stays SUBMITTED until it does
            try:
                check = self.runtime.check_image(actor.reg.image, pull=pull)
                break
            except RuntimeUnreachable as exc:
                if attempt % 20 == 0:
                    log.warning("image check of %s waits for the runtime: %s", actor_id, exc)
            except Exception as exc:
                check = ImageCheck(False, f"Checking the image failed: {exc}")
                break
            if self._janitor_stop.wait(lifecycle.backoff(attempt)):
                return
            attempt += 1
            actor = self.store.get_actor(actor_id)
            if actor is None or actor.revision != revision:
                return
        attempt = 0
        while True:  # a locked or full database: the outcome waits, it is not lost
            try:
                actor = self.store.get_actor(actor_id)
                if actor is None or actor.revision != revision:
                    return
                before = actor.status
                actor.status = READY if check.ok else ERROR
                actor.status_message = "" if check.ok else check.message
                if not self.store.set_actor_status(actor_id, revision, actor.status, actor.status_message):
                    return  # deleted or updated to a new revision meanwhile
                break
            except StoreUnavailable as exc:
                if self._janitor_stop.wait(lifecycle.backoff(attempt)):
                    return
                attempt += 1
                log.warning("image check of %s not stored yet: %s", actor_id, exc.message)
        self.automation.actor_checked(actor, before)
        if check.ok:
            self.dispatcher.notify(actor_id)

    def register(self, body: Any, owner: str, *, host_caller: bool = True) -> Actor:
        """``host_caller``: the service token, the only caller that may set ``local:``/privileged."""
        reg = parse_registration(
            body, queues=self.runtime.name == "swarm", default_token=self.config.default_token
        )
        privilege.check_host_fields(
            reg, host_caller=host_caller, allow_privileged=self.config.allow_privileged
        )
        t = now()
        actor = Actor(id=new_id(), owner=owner, reg=reg, create_time=t, last_update_time=t)
        actor.cron_next_ex = self.automation.check(None, reg, body)  # link, webhook, cron_schedule
        self.store.put_actor(actor)
        self.automation.saved(actor)
        self._preparing.submit(self._prepare, actor.id, actor.revision, False)
        return actor

    def _find_actor(self, name: str) -> str:
        """The id of the actor an id or alias names; NotFound when there is none (event links)."""
        return self.get_actor(self.access.resolve(name)).id

    def get_actor(self, actor_id: str) -> Actor:
        actor = self.store.get_actor(actor_id)
        if actor is None:
            raise NotFound(f"No actor found with id: {actor_id}.")
        return actor

    def list_actors(self) -> list[Actor]:
        return self.store.list_actors()

    def update(self, actor_id: str, body: Any, *, limited: bool = False, host_caller: bool = True) -> Actor:
        """PUT: full replacement; ``name`` and ``owner`` are kept; a new image or ``force`` makes a new
        revision whose image is checked (pulled) again, and the old workers are replaced."""
        actor = self.get_actor(actor_id)
        force = False
        if isinstance(body, dict):
            raw_force = body.get("force")
            if raw_force is not None:
                force = parse_bool(raw_force, "force")
        reg = parse_registration(
            body, is_update=True, queues=self.runtime.name == "swarm", default_token=self.config.default_token
        )
        if limited:  # a nonce keeps what runs and its limits as they are
            reg = privilege.keep_protected(actor.reg, reg, body)
        elif reg.image != actor.reg.image or reg.privileged != actor.reg.privileged:
            privilege.check_host_fields(
                reg, host_caller=host_caller, allow_privileged=self.config.allow_privileged
            )
        if not actor.reg.stateless and reg.stateless:
            raise AbacoError(
                "Invalid actor description: a stateful actor cannot be made stateless "
                '(send "stateless": false on every PUT of a stateful actor).'
            )
        reg.name = actor.reg.name
        new_revision = force or reg.image != actor.reg.image
        actor.cron_next_ex = self.automation.check(actor, reg, body)  # link, webhook, cron_schedule
        actor.reg = reg
        actor.last_update_time = now()
        if new_revision:
            actor.revision += 1
            actor.status = SUBMITTED
            actor.status_message = ""
        self.store.put_actor(actor)
        self.automation.saved(actor)
        if new_revision:  # its replacement worker is listed at once and starts when the image is READY
            self.dispatcher.stop_actor(actor_id, Stop.REVISION, keep=1)
            self._preparing.submit(self._prepare, actor.id, actor.revision, True)
        return actor

    def delete(self, actor_id: str) -> None:
        actor = self.get_actor(actor_id)
        actor.status = SHUTTING_DOWN
        self.store.put_actor(actor)
        self.dispatcher.stop_actor(actor_id, Stop.DELETED)
        for eid in self.store.delete_actor(actor_id):
            execution = self.store.get_execution(eid)
            if execution is not None:
                self.dispatcher.drop(execution, lifecycle.DELETED_QUEUED)

    # -- messages -----------------------------------------------------------------------------------

    def send(
        self, actor_id: str, content_type: str | None, body: bytes, query: dict[str, list[str]], sender: str
    ) -> tuple[Execution, engine.Message]:
        """Accept a message: committed (execution SUBMITTED + mailbox entry) before this returns. An
        actor in ERROR refuses it (400 with the actor's status message): it could not run it, and a
        PUT that makes it READY runs what was queued before the error."""
        actor = self.get_actor(actor_id)
        if actor.status == ERROR:
            raise AbacoError(
                f"Actor {actor_id} is in ERROR status and does not take messages: {actor.status_message} "
                "Update the actor (PUT) to try again."
            )
        message = engine.classify_message(content_type, body, query, self.config.max_body_bytes)
        environment = engine.query_environment(query)
        timeout = (query.get("_abaco_nb_timeout") or [""])[-1]
        execution = Execution(
            id=new_id(),
            actor_id=actor.id,
            executor=sender,
            status=SUBMITTED,
            message_received_time=now(),
            content_type=message.content_type,
            message=message.value,
            environment=environment,
            revision=actor.revision,
            max_run_time=parse_int(timeout, "_abaco_nb_timeout", minimum=1) if timeout else None,
        )
        self.store.submit(execution, message.payload)
        self.dispatcher.notify(actor.id)
        return execution, message

    def queue_length(self, actor_id: str) -> int:
        self.get_actor(actor_id)
        return self.store.queue_length(actor_id)

    def purge_mailbox(self, actor_id: str) -> int:
        self.get_actor(actor_id)
        dropped = self.store.drop_queued(actor_id)
        for eid in dropped:
            self._cancel_queued(eid, lifecycle.PURGED)
        return len(dropped)

    def _cancel_queued(self, execution_id: str, reason: str) -> None:
        execution = self.store.get_execution(execution_id)
        if execution is not None and execution.status == SUBMITTED:
            self.dispatcher.drop(execution, reason)

    # -- executions ---------------------------------------------------------------------------------

    def get_execution(self, actor_id: str, execution_id: str) -> Execution:
        self.get_actor(actor_id)
        execution = self.store.get_execution(execution_id)
        if execution is None or execution.actor_id != actor_id:
            raise AbacoError(f"Execution not found: {execution_id}.", 400)
        return execution

    def list_executions(self, actor_id: str) -> list[Execution]:
        self.get_actor(actor_id)
        return self.store.list_executions(actor_id)

    def force_quit(self, actor_id: str, execution_id: str) -> str:
        """Stop a RUNNING execution (it ends COMPLETE, as in Abaco). A still-queued one is dropped from
        the mailbox and ends ERROR (Abaco refuses that with a 400; our executor's cancel needs it)."""
        execution = self.get_execution(actor_id, execution_id)
        if execution.status == SUBMITTED:
            if self.store.drop_queued(actor_id, execution_id):
                self._cancel_queued(execution_id, lifecycle.CANCELLED_QUEUED)
                return f"Cancelled queued execution {execution_id}."
        if execution.status != RUNNING or not self.dispatcher.cancel(execution_id):
            raise AbacoError(
                f"Cannot force quit an execution not in RUNNING status. Execution {execution_id} is "
                f"{execution.status}."
            )
        return f"Issued force quit command for execution {execution_id}."

    def logs(self, actor_id: str, execution_id: str) -> str:
        execution = self.get_execution(actor_id, execution_id)
        if execution.status == RUNNING:
            live = self.dispatcher.live_logs(execution_id)
            if live is not None:
                return live
        return self.store.get_logs(execution_id, now())

    def call_times(self, execution: Execution) -> tuple[int, float] | None:
        """When a finished executor execution's calls ran (``engine.call_times``)."""
        return engine.call_times(self.store.get_logs(execution.id, now()))

    def pop_result(self, actor_id: str, execution_id: str) -> bytes:
        self.get_execution(actor_id, execution_id)
        return self.store.pop_result(execution_id) or b""

    def all_results(self, actor_id: str, execution_id: str) -> list[bytes]:
        self.get_execution(actor_id, execution_id)
        return self.store.all_results(execution_id)

    def wait(
        self, actor_id: str, execution_ids: list[str], timeout: float, newer_than: list[str] | None = None
    ) -> list[Execution]:
        """Long-poll until one of ``execution_ids`` ends; with ``newer_than`` also wake for any of the
        actor's executions submitted after the newest of those ids (ours, for the executor)."""
        self.get_actor(actor_id)
        also = None
        if newer_than:
            marks = list(newer_than)
            also = lambda: self.store.finished_newer_than(actor_id, marks)  # noqa: E731
        return self.dispatcher.wait_finished(execution_ids, timeout, also)

    def image_versions(self, actor_id: str) -> dict[str, str] | None:
        """Python and cloudpickle of the actor's image (ours, for the executor's pre-flight check), as
        its runtime reads them; None when the image declares nothing."""
        return self.runtime.image_versions(self.get_actor(actor_id).reg.image)

    # -- state and workers --------------------------------------------------------------------------

    def get_state(self, actor_id: str) -> Any:
        actor = self.get_actor(actor_id)
        if actor.reg.stateless:
            raise NotFound("actor is stateless.")
        return actor.state

    def set_state(self, actor_id: str, body: bytes) -> Actor:
        actor = self.get_actor(actor_id)
        if actor.reg.stateless:
            raise NotFound("actor is stateless.")
        # Abaco refuses falsy JSON (0, false, {}); we accept any JSON value, so an accumulator can
        # start at 0. An empty or non-JSON body is still a 400.
        try:
            value = strict_json.loads(body, "The state")
        except (ValueError, UnicodeDecodeError):
            raise AbacoError("Invalid actor state description: state must be JSON serializable.") from None
        actor.state = value
        self.store.put_actor(actor)
        return actor

    def list_workers(self, actor_id: str) -> list[Any]:
        self.get_actor(actor_id)
        return self.store.list_workers(actor_id)

    def add_workers(self, actor_id: str, num: int) -> str:
        """``POST /workers {num}``: at least ``num`` workers, never more than the actor may have (each
        is a thread: 969,398,429 once started ~22,000 of them and the actor could not be deleted)."""
        actor = self.get_actor(actor_id)
        limit = engine.worker_limit(
            actor.reg.stateless, actor.reg.max_workers, self.config.max_workers_per_actor
        )
        if num > limit:
            raise AbacoError(f"Invalid num: {num} is more than this actor's max_workers ({limit}).")
        if actor.status not in (READY, SUBMITTED):  # SUBMITTED: they start when the image check ends
            raise AbacoError(f"Actor {actor_id} is {actor.status}; workers start once it is READY.")
        before, after = self.dispatcher.ensure_workers(actor_id, num)
        if after == before:
            return f"Actor {actor_id} already had {before} worker(s)."
        return f"Scheduled {after - before} new worker(s) to start. Previously, there were {before} workers."

    def get_worker(self, actor_id: str, worker_id: str) -> Any:
        for worker in self.list_workers(actor_id):
            if worker.id == worker_id:
                return worker
        raise NotFound(f"No worker found with id: {worker_id}.")

    def delete_worker(self, actor_id: str, worker_id: str) -> None:
        self.get_worker(actor_id, worker_id)
        self.dispatcher.stop_worker(actor_id, worker_id)

    # -- what the admin, search and synchronous routes read ----------------------------------------

    def all_workers(self) -> list[Worker]:
        return self.store.list_workers()

    def all_executions(self) -> list[Execution]:
        """Every execution record, those of deleted actors included (Abaco keeps them)."""
        return self.store.all_executions()

    def busy(self) -> bool:
        """Work runs or waits: a message queued or an execution RUNNING (Jupyter's idle shutdown asks)."""
        return bool(self.store.queued_actor_ids() or self.store.executions_with_status(RUNNING))

    def queued_total(self) -> int:
        """Messages waiting in all mailboxes."""
        return int(self.store.stats()["queued"])

    def log_records(self, actor_id: str | None = None) -> list[tuple[str, str, str]]:
        """(execution id, actor id, logs) of the logs not yet expired, of one actor or all."""
        return self.store.log_records(now(), actor_id)

    def synchronous_output(self, execution: Execution) -> tuple[bytes | None, str]:
        """What a synchronous message answers: its first result (taken), else None and its logs."""
        result = self.store.pop_result(execution.id)
        return result, "" if result is not None else self.store.get_logs(execution.id, 0)

    # -- scoped tokens ------------------------------------------------------------------------------

    def execution_user(self, scope: Scope) -> str:
        """Whom an execution's token acts for: the user who sent its message. A cron or event message
        (sender ``cron`` or ``Abaco Event``) acts for the actor's owner."""
        execution = self.store.get_execution(scope.execution_id)
        actor = self.store.get_actor(scope.actor_id)
        owner = actor.owner if actor is not None else self.config.username
        if execution is None or execution.executor in SYSTEM_SENDERS:
            return owner
        return execution.executor

    def check_scoped_token(self, token: str) -> Scope | None:
        """An execution's token is good while it is unexpired and its execution is still running."""
        scope = self.tokens.check(token, now())
        if scope is None:
            return None
        execution = self.store.get_execution(scope.execution_id)
        if execution is None or execution.status in (COMPLETE, ERROR):
            return None
        return scope
