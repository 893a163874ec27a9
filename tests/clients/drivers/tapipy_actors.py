"""tapipy (Tapis v3 client) against abaco-nb: actors, messages (str, dict, binary), executions, logs,
results, state, workers and delete.

The client (a throw-away JWT plus the service token, or the token itself when it is a JWT) comes
from _tapipy.py.
Usage: ABACO_URL=... ABACO_TOKEN=... python tapipy_actors.py <stateless image> <stateful image>
"""

from __future__ import annotations

import sys
import time

from _tapipy import client, emit, error_of, plain, wait_ready

image, stateful_image = sys.argv[1], sys.argv[2]
t = client()


def wait_complete(actor_id, execution_id):
    for _ in range(600):
        execution = t.actors.get_execution(actor_id=actor_id, execution_id=execution_id)
        if execution.status in ("COMPLETE", "ERROR"):
            return execution
        time.sleep(0.1)
    return execution


out: dict = {}
created = t.actors.create_actor(
    image=image, stateless=True, description="from tapipy", default_environment={"key1": "value1"}
)
out["created_type"] = type(created).__name__
aid = created.id
out["created"] = plain(created)
out["ready"] = plain(wait_ready(t, aid))
out["listed_ids"] = [a.id for a in t.actors.list_actors()]
sent = {
    "string": t.actors.send_message(actor_id=aid, message="hello"),
    "dict": t.actors.send_message(actor_id=aid, message={"a": 1}),
    "binary": t.actors.send_binary_message(actor_id=aid, message=b"\x00tapipy-bytes"),
}
out["sent"] = {k: plain(v) for k, v in sent.items()}
for name, receipt in sent.items():
    eid = receipt.executionId
    execution = wait_complete(aid, eid)
    logs = t.actors.get_execution_logs(actor_id=aid, execution_id=eid)
    out[name] = {
        "execution": plain(execution),
        "logs": logs.logs,
        "results": [plain(t.actors.get_execution_result(actor_id=aid, execution_id=eid)) for _ in range(2)],
    }
out["executions"] = plain(t.actors.list_executions(actor_id=aid))
out["messages"] = plain(t.actors.get_messages(actor_id=aid))
out["workers"] = plain(t.actors.list_workers(actor_id=aid))
out["unknown_actor"] = error_of(lambda: t.actors.get_actor(actor_id="NOPE"))

stateful = t.actors.create_actor(image=stateful_image, stateless=False, token=True)
sid = stateful.id
wait_ready(t, sid)
out["state_initial"] = plain(t.actors.get_state(actor_id=sid))
out["state_updated"] = plain(t.actors.update_state(actor_id=sid, request_body={"count": 2}))
out["state_after_update"] = plain(t.actors.get_state(actor_id=sid))
eid = t.actors.send_message(actor_id=sid, message="3").executionId
out["state_execution"] = plain(wait_complete(sid, eid))
out["state_after_execution"] = plain(t.actors.get_state(actor_id=sid))

out["deleted"] = plain(t.actors.delete_actor(actor_id=aid))
t.actors.delete_actor(actor_id=sid)
out["get_deleted"] = error_of(lambda: t.actors.get_actor(actor_id=aid))
emit(out)
