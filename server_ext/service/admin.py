"""Abaco's admin and utilization answers (reference/abaco-api.md §1.3 rows 36-39), computed from plain
data with no I/O, so the sums are tested without a socket; ``api_admin`` gathers the data and serves.

"All" totals cover every execution record, including those of deleted actors (Abaco keeps execution
records after a DELETE); "existing" totals only the actors registered now.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .models import ERROR, READY, WORKER_BUSY, WORKER_READY, Actor, Execution, Worker

WORKER_REQUESTED = "REQUESTED"  # Abaco's status of a worker asked for but not started (ours start at once)


def utilization(actors: list[Actor], workers: list[Worker], queued: int) -> dict[str, int]:
    """``GET /actors/utilization``, always camelCase as in Abaco: actors able to run now (READY),
    actors registered, worker slots, and messages waiting in all mailboxes (our command queue)."""
    return {
        "currentActors": sum(1 for a in actors if a.status == READY),
        "totalActors": len(actors),
        "workers": len(workers),
        "commandQueue": queued,
    }


def admin_actor(
    view: dict[str, Any], workers: int, messages: int, executions: int, runtime: str
) -> dict[str, Any]:
    """One entry of ``GET /actors/admin``: the actor as ``GET /actors/{id}`` shows it, plus counts."""
    return {**view, "workers": workers, "messages": messages, "executions": executions, "runtime": runtime}


def workers_summary(actors: list[Actor], workers: list[Worker]) -> dict[str, int]:
    """The ``summary`` of ``GET /actors/admin/workers``."""
    statuses = Counter(w.status for w in workers)
    with_workers = {w.actor_id for w in workers}
    return {
        "total_workers": len(workers),
        "ready_workers": statuses[WORKER_READY],
        "requested_workers": statuses[WORKER_REQUESTED],
        "error_workers": statuses[ERROR],
        "busy_workers": statuses[WORKER_BUSY],
        "actors_no_workers": sum(1 for a in actors if a.id not in with_workers),
    }


def _totals(executions: list[Execution]) -> tuple[int, int, int, int]:
    return (
        len(executions),
        sum(e.runtime for e in executions),
        sum(e.cpu for e in executions),
        sum(e.io for e in executions),
    )


def executions_summary(actors: list[Actor], executions: list[Execution]) -> dict[str, Any]:
    """``GET /actors/admin/executions``: Abaco's totals over all records and over existing actors, and
    one entry per existing actor (registration order)."""
    existing = {a.id for a in actors}
    by_actor: dict[str, list[Execution]] = {}
    for e in executions:
        by_actor.setdefault(e.actor_id, []).append(e)
    mine = [e for e in executions if e.actor_id in existing]
    count_all, runtime_all, cpu_all, io_all = _totals(executions)
    count_ex, runtime_ex, cpu_ex, io_ex = _totals(mine)
    summary = {
        "total_actors_all": len(existing | set(by_actor)),
        "total_actors_all_with_executions": len(by_actor),
        "total_executions_all": count_all,
        "total_execution_runtime_all": runtime_all,
        "total_execution_cpu_all": cpu_all,
        "total_execution_io_all": io_all,
        "total_actors_existing": len(existing),
        "total_actors_existing_with_executions": len(existing & set(by_actor)),
        "total_executions_existing": count_ex,
        "total_execution_runtime_existing": runtime_ex,
        "total_execution_cpu_existing": cpu_ex,
        "total_execution_io_existing": io_ex,
    }
    per_actor = []
    for actor in actors:
        count, runtime, cpu, io = _totals(by_actor.get(actor.id, []))
        per_actor.append(
            {
                "actor_id": actor.id,
                "owner": actor.owner,
                "image": actor.reg.image,
                "status": actor.status,
                "total_executions": count,
                "total_execution_runtime": runtime,
                "total_execution_cpu": cpu,
                "total_execution_io": io,
            }
        )
    return {"summary": summary, "actors": per_actor}
