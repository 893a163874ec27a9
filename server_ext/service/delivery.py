"""Sending events to links and webhooks, off every hot path, in order per actor.

``publish`` only appends to the actor's queue and returns: the dispatcher's worker threads and the API
threads never wait on a webhook. One short-lived thread per actor with pending events drains its queue
(so one actor's slow webhook delays only that actor's events, and each actor's events arrive in the
order they happened), then exits. Delivery is at most once, as in Abaco: a failure is logged, kept in
``failures()`` and dropped; events still queued when the service stops are lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger("abaco_nb.service.events")
WEBHOOK_TIMEOUT = 5.0  # seconds for connect and for read: a stuck endpoint costs its actor little


@dataclass(frozen=True)
class Failure:
    """One event that did not reach its link or webhook."""

    actor_id: str
    event_type: str
    target: str  # "link:<actor>" or the webhook URL
    error: str
    time: float


@dataclass(frozen=True)
class Outgoing:
    """An event and where it goes: ``link`` (an actor id or alias) and/or ``webhook`` (a URL)."""

    actor_id: str
    event: dict[str, Any]
    link: str = ""
    webhook: str = ""


class EventDelivery:
    """Per-actor FIFO queues drained by per-actor threads. ``send_link(link, event)`` queues the event
    as a message on the linked actor (raising on failure); webhooks are POSTed with ``requests``."""

    def __init__(self, send_link: Callable[[str, dict[str, Any]], None], max_failures: int = 200) -> None:
        self._send_link = send_link
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Outgoing]] = {}  # actor id -> events not yet sent
        self._failures: deque[Failure] = deque(maxlen=max_failures)
        self._closed = False

    def publish(self, item: Outgoing) -> None:
        """Queue an event for its actor; start the actor's sender if it is not running. Never blocks."""
        with self._lock:
            if self._closed:
                return
            queue = self._queues.get(item.actor_id)
            if queue is not None:  # its sender is running and will take this one too
                queue.append(item)
                return
            self._queues[item.actor_id] = deque([item])
        threading.Thread(
            target=self._drain, args=(item.actor_id,), name=f"events-{item.actor_id}", daemon=True
        ).start()

    def _drain(self, actor_id: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[actor_id]
                if not queue or self._closed:
                    del self._queues[actor_id]
                    return
                item = queue.popleft()
            self._deliver(item)

    def _deliver(self, item: Outgoing) -> None:
        event_type = str(item.event.get("event_type"))
        if item.link:
            try:
                self._send_link(item.link, item.event)
            except Exception as exc:
                self._fail(item, event_type, f"link:{item.link}", exc)
        if item.webhook:
            try:
                response = requests.post(item.webhook, json=item.event, timeout=WEBHOOK_TIMEOUT)
                if response.status_code >= 400:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            except Exception as exc:
                self._fail(item, event_type, item.webhook, exc)

    def _fail(self, item: Outgoing, event_type: str, target: str, exc: Exception) -> None:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        log.warning(
            "event %s of actor %s not delivered to %s: %s", event_type, item.actor_id, target, message
        )
        with self._lock:
            self._failures.append(Failure(item.actor_id, event_type, target, message, time.time()))

    def failures(self) -> list[Failure]:
        """The most recent delivery failures, oldest first."""
        with self._lock:
            return list(self._failures)

    def pending(self) -> int:
        """Events queued and not yet sent (for tests and shutdown)."""
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def close(self) -> None:
        """Stop sending: queued events are dropped (at most once), the sender threads end."""
        with self._lock:
            self._closed = True
