"""Events and cron inside the service: the glue between the pure rules and the Service.

``events`` decides which events happen and what they say, ``delivery`` sends them, ``cron`` does the
schedule arithmetic; this module checks a registration's ``link``, ``webhook`` and ``cron_schedule``,
turns image checks and finished executions into events, and runs the cron pass (a thread, every
``config.cron_interval`` seconds, Abaco's 50 by default). The Service calls it at four points:
registration/PUT (``check`` then ``saved``), the end of an image check (``actor_checked``), start and
close; finished executions arrive through ``execution_finished``, a listener the dispatcher is built
with. It holds the store and three narrow callables, not the Service.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from . import cron, events
from .delivery import EventDelivery, Failure, Outgoing
from .errors import AbacoError
from .ids import now
from .models import SHUTTING_DOWN, Actor, Execution, Registration, normalise_keys
from .store import Store

log = logging.getLogger("abaco_nb.service")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Automation:
    """Links, webhooks and cron schedules of one Service."""

    def __init__(
        self,
        store: Store,
        send: Callable[[str, str | None, bytes, dict[str, list[str]], str], Any],
        find_actor: Callable[[str], str],
        cron_interval: float,
    ) -> None:
        """``send``: ``Service.send`` (queue a message as a user); ``find_actor``: the id of the actor an id
        or alias names, or AbacoError; ``cron_interval``: seconds between cron passes."""
        self.store = store
        self._send = send
        self._find_actor = find_actor
        self.cron_interval = cron_interval
        self.delivery = EventDelivery(self._send_link)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._fired: dict[str, str] = {}  # actor id -> the hour its cron message was last queued
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._cron_loop, name="cron", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.delivery.close()

    def failures(self) -> list[Failure]:
        """Events that could not be delivered lately (also logged)."""
        return self.delivery.failures()

    # -- registration -------------------------------------------------------------------------------

    def resolve(self, name: str) -> str | None:
        """The actor id a link names (an actor id, or an alias where the service has aliases), or None
        when there is no such actor. Resolved at each use, so a re-pointed alias moves the link too."""
        try:
            return self._find_actor(name)
        except AbacoError:
            return None

    def _link_of(self, actor_id: str) -> str | None:
        actor = self.store.get_actor(actor_id)
        if actor is None or not actor.reg.link:
            return None
        return self.resolve(actor.reg.link)

    def check(self, previous: Actor | None, reg: Registration, body: Any) -> str | None:
        """Validate ``link``, ``webhook`` and ``cron_schedule`` of a registration (``previous``: the
        actor a PUT replaces) and return its ``cron_next_ex``. Setting a schedule switches ``cron_on``
        on unless the body says otherwise; a PUT that keeps the schedule keeps its next run."""
        if reg.link:
            events.check_link(previous.id if previous else None, self.resolve(reg.link), self._link_of)
        reg.webhook = events.check_webhook(reg.webhook)
        if not reg.cron_schedule:
            return None
        explicit_on = isinstance(body, dict) and normalise_keys(body).get("cron_on") is not None
        if not explicit_on:
            reg.cron_on = True
        if previous is not None and previous.reg.cron_schedule == reg.cron_schedule and previous.cron_next_ex:
            cron.parse_schedule(reg.cron_schedule)
            return previous.cron_next_ex
        return cron.first_run(reg.cron_schedule, utc_now())

    def saved(self, actor: Actor) -> None:
        """After a registration or PUT is stored: a schedule due this hour (``now + ...``) runs at the
        next pass, so wake the pass instead of waiting up to ``cron_interval``."""
        if actor.reg.cron_schedule and actor.reg.cron_on and actor.cron_next_ex:
            if actor.cron_next_ex <= cron.format_hour(cron.hour_of(utc_now())):
                self._wake.set()

    # -- events -------------------------------------------------------------------------------------

    def actor_checked(self, actor: Actor, before: str) -> None:
        """The image check of ``actor`` ended; ``before`` is its status while it was checked."""
        event_type = events.status_event_type(before, actor.status)
        if event_type is not None and events.wants_events(actor):
            self._publish(actor, events.status_event(actor, event_type, now()))

    def execution_finished(self, execution: Execution) -> None:
        """A completion listener: runs on a worker thread, so it only reads the actor and queues."""
        actor = self.store.get_actor(execution.actor_id)
        if actor is not None and events.wants_events(actor):
            self._publish(actor, events.execution_event(actor, execution, now()))

    def _publish(self, actor: Actor, event: dict[str, Any]) -> None:
        self.delivery.publish(Outgoing(actor.id, event, actor.reg.link, actor.reg.webhook))

    def _send_link(self, link: str, event: dict[str, Any]) -> None:
        """Queue the event on the linked actor as a JSON message, sent by ``Abaco Event`` (so ``MSG`` is
        the event's Python repr and ``_abaco_username`` is ``Abaco Event``)."""
        target = self.resolve(link)
        if target is None:
            raise AbacoError(f"the linked actor {link} no longer exists")
        body = json.dumps(event).encode()
        self._send(target, "application/json", body, {}, events.EVENT_EXECUTOR)

    # -- cron ---------------------------------------------------------------------------------------

    def _cron_loop(self) -> None:
        interval = max(0.05, float(self.cron_interval))
        while not self._stop.is_set():
            try:
                self.cron_pass(utc_now())
            except Exception:
                log.exception("cron pass failed")
            self._wake.wait(interval)
            self._wake.clear()

    def cron_pass(self, at: dt.datetime) -> list[str]:
        """One pass over every scheduled actor (§5.4); returns the ids of the executions it queued.
        ``cron_next_ex`` moves with a compare-and-set, so a PUT that changed the schedule meanwhile
        wins, and an actor fires at most once per hour even if its row is rewritten with a stale value."""
        queued: list[str] = []
        hour = cron.format_hour(cron.hour_of(at))
        for actor in self.store.list_actors():
            if not actor.reg.cron_schedule or not actor.cron_next_ex or actor.status == SHUTTING_DOWN:
                continue
            try:
                step = cron.step(actor.reg.cron_schedule, actor.cron_next_ex, at)
            except (AbacoError, ValueError) as exc:
                log.warning("actor %s has an unusable cron schedule: %s", actor.id, exc)
                continue
            if step.next_ex != actor.cron_next_ex and not self.store.set_cron_next_ex(
                actor.id, actor.cron_next_ex, step.next_ex
            ):
                continue
            if not step.fire or not actor.reg.cron_on or self._fired.get(actor.id) == hour:
                continue
            self._fired[actor.id] = hour
            try:
                execution, _ = self._send(
                    actor.id, None, b"", {"message": [cron.CRON_MESSAGE]}, cron.CRON_EXECUTOR
                )
            except AbacoError:  # gone, or in ERROR (refuses messages)
                continue
            queued.append(execution.id)
        return queued
