"""Identifiers and times in Abaco's formats.

Ids are Hashids with Abaco's salt over ``uuid1().int >> 64`` (13 characters, e.g. ``JWpkNmBwKewYo``),
so any identifier that decodes is an id and anything else can be an alias, as in Abaco.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid

from hashids import Hashids

_HASHIDS = Hashids(salt="eJa5wZlEX4eWU")


def new_id() -> str:
    """A fresh actor, execution or worker id."""
    return str(_HASHIDS.encode(uuid.uuid1().int >> 64))


@functools.lru_cache(maxsize=8192)
def is_id(value: str) -> bool:
    """True when ``value`` decodes as an Abaco id (so it is not an alias). Cached: every request on an
    actor route asks, and decoding costs more than the rest of routing."""
    if len(value) > 32:  # ours are 13 characters; decoding a long one costs seconds of CPU
        return False
    try:
        return bool(_HASHIDS.decode(value))
    except Exception:
        return False


def now() -> float:
    """Seconds since the epoch; the store keeps times as floats."""
    return dt.datetime.now(dt.timezone.utc).timestamp()


def display_time(ts: float | None) -> str | None:
    """ISO-8601 in UTC with a trailing Z, or None (Abaco's clients parse loosely)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
