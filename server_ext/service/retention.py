"""How long finished executions are kept, and the totals that outlive them.

Execution rows were never pruned (about 1 KB each: the executions list of an actor was 2.1 MB at
10,000). Each janitor pass keeps, per actor, the newest ``executions_kept_per_actor`` finished
executions and none finished more than ``executions_max_age`` seconds ago; queued and running ones
are never pruned. The list's totals (``total_executions``, ``total_cpu``, ``total_io``,
``total_runtime``) still count the pruned ones: the store adds each pruned execution to its actor's
running totals in the transaction that deletes it. ``to_prune`` decides; ``Store.prune_executions``
deletes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .models import COMPLETE, ERROR, Execution

TOTALS = ("total_executions", "total_cpu", "total_io", "total_runtime")


@dataclass(frozen=True)
class Retention:
    keep: int  # finished executions kept per actor (0 or less: no count limit)
    max_age: float  # seconds after it finished (0 or less: no age limit)


def to_prune(executions: Sequence[Execution], rule: Retention, now: float) -> list[Execution]:
    """The finished executions (oldest first, as listed) that the rule no longer keeps."""
    finished = [e for e in executions if e.status in (COMPLETE, ERROR)]
    doomed: dict[str, Execution] = {}
    if rule.keep > 0 and len(finished) > rule.keep:
        for e in finished[: len(finished) - rule.keep]:
            doomed[e.id] = e
    if rule.max_age > 0:
        for e in finished:
            ended = e.finish_time or e.message_received_time
            if ended < now - rule.max_age:
                doomed[e.id] = e
    return [e for e in finished if e.id in doomed]


def totals_of(executions: Sequence[Execution]) -> dict[str, int]:
    """What the pruned executions add to their actor's totals."""
    return {
        "total_executions": len(executions),
        "total_cpu": sum(e.cpu for e in executions),
        "total_io": sum(e.io for e in executions),
        "total_runtime": sum(e.runtime for e in executions),
    }


def page(items: Sequence[str], offset: int, limit: int | None) -> slice:
    """The slice of a list a page shows (``limit`` None: to the end)."""
    start = max(0, offset)
    return slice(start, None if limit is None else start + max(0, limit))
