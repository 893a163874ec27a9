"""tapipy as another user of a multi-user service: sees the actor shared with it, sends it a message that
runs as this user, and is refused what it was not given (UPDATE on the shared actor, the owner's other).

Usage: ABACO_URL=... ABACO_TOKEN=<this user's token> python tapipy_team.py <shared actor id> <other's actor id>
"""

from __future__ import annotations

import sys
import time

from _tapipy import client, emit, error_of, plain

shared, others = sys.argv[1], sys.argv[2]
t = client()
out: dict = {}
out["listed"] = [a.id for a in t.actors.list_actors()]
sent = t.actors.send_message(actor_id=shared, request_body={"message": "from tapipy"})
execution = t.actors.get_execution(actor_id=shared, execution_id=sent.execution_id)
for _ in range(600):
    if execution.status in ("COMPLETE", "ERROR"):
        break
    time.sleep(0.1)
    execution = t.actors.get_execution(actor_id=shared, execution_id=sent.execution_id)
out["execution"] = plain(execution)
out["delete_shared"] = error_of(lambda: t.actors.delete_actor(actor_id=shared))
out["get_others"] = error_of(lambda: t.actors.get_actor(actor_id=others))
emit(out)
