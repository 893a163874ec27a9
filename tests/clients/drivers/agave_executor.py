"""agavepy 0.9.5's own AbacoExecutor against abaco-nb's function runner (image abaco-nb/py3-func).

Functions are defined here, in ``__main__``, so cloudpickle sends them by value, as from a notebook.
Usage: ABACO_URL=... ABACO_TOKEN=... python agave_executor.py
"""

from __future__ import annotations

from _agave import client, emit
from agavepy.actors import AbacoExecutor


def f(a, b, c=0):
    return a + b + c


def boom():
    raise ValueError("boom from the executor")


ag = client()
out: dict = {}
ex = AbacoExecutor(ag, image="abaco-nb/py3-func")
out["actor_id"] = ex.actor_id
out["status"] = ex.status
out["submit"] = ex.submit(f, 1, 2, c=10).result(timeout=60)
out["blocking"] = ex.blocking_call(f, 5, 6)
out["map"] = [r.result(timeout=60) for r in ex.map(f, [(1, 1), (2, 3)])]
failing = ex.submit(boom)
out["failing_done_poll"] = failing.result(timeout=60)  # exits 1, still COMPLETE, no result frame
logs = ag.actors.getExecutionLogs(actorId=ex.actor_id, executionId=failing.execution_id)["logs"]
out["failing_logs"] = logs
ex.delete()
emit(out)
