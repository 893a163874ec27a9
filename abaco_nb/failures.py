"""Why an executor call ended without a result, and whether running it again can help (pure code).

A sweep meets failures of two different natures. A call that *raised* failed on its own terms: running
it again would raise again, so it is never retried. A call whose *worker was lost* — its container or
process killed by the memory limit, its node gone, the service restarted under it — did not fail on its
own terms: ``retries=`` runs it again. This module reads an ended execution (the record the service
returns) and says which case it is, so :mod:`abaco_nb.executor` only does the I/O.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Ending(Enum):
    """How an execution that left some calls without a result ended."""

    OUT_OF_MEMORY = "oom"  # killed by its memory limit: a lost worker (retried), then OutOfMemoryError
    LOST = "lost"  # its container/process/node/service went away: retried
    TIMEOUT = "timeout"  # its time limit stopped it: not retried
    STOPPED = "stopped"  # force-quit (by a user, the dashboard) or its actor deleted/updated: not retried
    FAILED = "failed"  # it ended on its own (a crash of the runner, a bug): not retried


RETRYABLE = frozenset({Ending.OUT_OF_MEMORY, Ending.LOST})

# Beginnings of the service's status messages (server_ext.service.lifecycle) for a deliberate stop.
_STOPPED = ("Force quit", "Stopped: the actor", "The actor was deleted")
_LOST = ("Interrupted", "The service shut down", "The runtime failed", "The execution could not start")


def _get(execution: dict[str, Any], snake: str, camel: str) -> Any:
    return execution.get(snake, execution.get(camel))


def ending(execution: dict[str, Any]) -> Ending:
    """Classify an ended execution (our service's record or a real Abaco's, snake or camel case)."""
    state = _get(execution, "final_state", "finalState") or {}
    message = str(_get(execution, "status_message", "statusMessage") or "")
    code = _get(execution, "exit_code", "exitCode")
    if isinstance(state, dict) and state.get("OOMKilled"):
        return Ending.OUT_OF_MEMORY
    if "max_run_time" in message:
        return Ending.TIMEOUT
    if message.startswith(_STOPPED):
        return Ending.STOPPED
    if message.startswith(_LOST) or execution.get("status") == "ERROR":
        return Ending.LOST
    try:
        killed = int(code) in (137, -9)  # SIGKILL from outside the call: the OOM killer of a host, a node
    except (TypeError, ValueError):
        killed = False
    return Ending.LOST if killed else Ending.FAILED


def memory_advice(mem_limit: str | None) -> str:
    """What an out-of-memory error says about the limit and how to raise it."""
    limit = f"mem_limit={mem_limit}" if mem_limit else "the service's default mem_limit"
    return (
        f"the call ran out of memory under the executor's memory limit ({limit}); give it more with "
        "AbacoExecutor(mem_limit='4g') (a new executor actor), or use less per call (smaller chunks "
        "with map(..., chunksize=1))"
    )
