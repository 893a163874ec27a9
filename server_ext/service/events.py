"""Abaco's events: which ones happen, what they say, and which links and webhooks are acceptable.

Abaco 1.2 publishes three events (reference/abaco-api.md §5.6): ``ACTOR_READY`` and ``ACTOR_ERROR``
when an actor's image check ends, ``EXECUTION_COMPLETE`` when one of its executions ends. An actor's
``link`` gets each event as a JSON message (executor ``Abaco Event``), its ``webhook`` gets it as a
JSON POST. Users asked for exactly this to stop polling (TACC/abaco #16, #46, #79). Pure code: the
decisions and the event dicts; ``delivery`` does the sending and ``automation`` wires it in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .errors import AbacoError
from .ids import display_time
from .models import ERROR, READY, Actor, Execution

ACTOR_READY, ACTOR_ERROR, EXECUTION_COMPLETE = "ACTOR_READY", "ACTOR_ERROR", "EXECUTION_COMPLETE"
EVENT_EXECUTOR = "Abaco Event"  # ``executor`` and ``_abaco_username`` of a linked actor's execution
TENANT = "local"
CYCLE_MESSAGE = "Error: this update would result in a cycle of linked actors."


def wants_events(actor: Actor) -> bool:
    """Only actors with a link or a webhook produce events (nothing would receive them otherwise)."""
    return bool(actor.reg.link or actor.reg.webhook)


def status_event_type(before: str, after: str) -> str | None:
    """The event an image check's outcome publishes: on a change of status only, so a service restart
    that re-checks a READY actor's image does not tell its link again."""
    if after == before:
        return None
    return {READY: ACTOR_READY, ERROR: ACTOR_ERROR}.get(after)


def _common(actor: Actor, event_type: str, t: float) -> dict[str, Any]:
    when = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return {
        "tenant_id": TENANT,
        "event_type": event_type,
        "event_time_utc": when.replace(tzinfo=None).isoformat(),
        "event_time_display": display_time(t),
        "actor_id": actor.id,
        "actor_dbid": f"LOCAL_{actor.id}",  # as _abaco_actor_dbid
        "_abaco_link": actor.reg.link,
        "_abaco_webhook": actor.reg.webhook,
    }


def status_event(actor: Actor, event_type: str, t: float) -> dict[str, Any]:
    """``ACTOR_READY`` / ``ACTOR_ERROR``, with the actor's ``status_message``."""
    return {**_common(actor, event_type, t), "status_message": actor.status_message}


def execution_event(actor: Actor, execution: Execution, t: float) -> dict[str, Any]:
    """``EXECUTION_COMPLETE`` for an execution that ended (COMPLETE or ERROR: ``status`` says which)."""
    return {
        **_common(actor, EXECUTION_COMPLETE, t),
        "execution_id": execution.id,
        "status": execution.status,
        "exit_code": execution.exit_code,
    }


def check_webhook(url: str) -> str:
    """A webhook is an absolute http(s) URL with a host; empty means none. Else 400 naming the field."""
    if not url:
        return ""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url.strip()):
        raise AbacoError(f"Invalid webhook: {url!r} is not an http:// or https:// URL.")
    return url.strip()


def check_link(actor_id: str | None, target: str | None, link_of: Callable[[str], str | None]) -> None:
    """Refuse a link to an unknown actor, to itself, or one closing a cycle (Abaco's 400).

    ``actor_id`` is the actor being registered (None: it is new, so nothing links to it yet) and
    ``target`` the actor id its link resolves to (None: no such actor). ``link_of(id)`` is the actor
    id another actor links to, or None. Following links from the target must never come back to
    ``actor_id``; a cycle among other actors (made before this rule) cannot loop forever here."""
    if target is None:
        raise AbacoError("Invalid link: no actor with that id (or alias) exists to receive the events.")
    if actor_id is None:
        return
    seen: set[str] = set()
    current: str | None = target
    while current is not None and current not in seen:
        if current == actor_id:
            raise AbacoError(CYCLE_MESSAGE)
        seen.add(current)
        current = link_of(current)
