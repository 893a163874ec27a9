"""tapipy (Tapis v3 client) against abaco-nb: actors, messages (str, dict, binary), executions, logs,
results, state, workers and delete.

tapipy insists on a JWT (it decodes it; any HS256 JWT with ``exp`` will do) and on a tenant. It sends
the JWT as ``X-Tapis-Token``. abaco-nb's token is not a JWT unless you chose one, so when ABACO_TOKEN
is not a JWT the driver makes a throw-away JWT for tapipy and adds ``Authorization: Bearer <token>``
with tapipy's pre-request plugin hook.
Usage: ABACO_URL=... ABACO_TOKEN=... python tapipy_actors.py <stateless image> <stateful image>
"""

from __future__ import annotations

import json
import os
import sys
import time

import jwt
from tapipy.errors import BaseTapyException
from tapipy.tapis import Tapis

url, token = os.environ["ABACO_URL"], os.environ["ABACO_TOKEN"]
image, stateful_image = sys.argv[1], sys.argv[2]


def looks_like_jwt(value: str) -> bool:
    try:
        jwt.decode(value, options={"verify_signature": False})
        return True
    except jwt.PyJWTError:
        return False


if looks_like_jwt(token):
    t = Tapis(base_url=url, jwt=token, tenant_id="dev")
else:
    fake = jwt.encode({"sub": "tester", "exp": int(time.time()) + 3600}, "not-a-secret", algorithm="HS256")
    t = Tapis(base_url=url, jwt=fake, tenant_id="dev")

    def add_bearer(op, prepared_request, **kwargs):
        prepared_request.headers["Authorization"] = f"Bearer {token}"

    t.plugin_on_call_pre_request_callables.append(add_bearer)


def plain(value):
    """TapisResult trees as plain data."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "__dict__") and type(value).__name__ == "TapisResult":
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    return value


def error_of(call):
    try:
        return {"ok": plain(call())}
    except BaseTapyException as exc:
        return {
            "error": type(exc).__name__,
            "message": exc.message,
            "status": exc.response.status_code if exc.response is not None else None,
        }


def wait_ready(actor_id):
    for _ in range(300):
        actor = t.actors.get_actor(actor_id=actor_id)
        if actor.status != "SUBMITTED":
            return actor
        time.sleep(0.1)
    return actor


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
out["ready"] = plain(wait_ready(aid))
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

stateful = t.actors.create_actor(image=stateful_image, stateless=False)
sid = stateful.id
wait_ready(sid)
out["state_initial"] = plain(t.actors.get_state(actor_id=sid))
out["state_updated"] = plain(t.actors.update_state(actor_id=sid, request_body={"count": 2}))
out["state_after_update"] = plain(t.actors.get_state(actor_id=sid))
eid = t.actors.send_message(actor_id=sid, message="3").executionId
out["state_execution"] = plain(wait_complete(sid, eid))
out["state_after_execution"] = plain(t.actors.get_state(actor_id=sid))

out["deleted"] = plain(t.actors.delete_actor(actor_id=aid))
t.actors.delete_actor(actor_id=sid)
out["get_deleted"] = error_of(lambda: t.actors.get_actor(actor_id=aid))
sys.stdout.write("DRIVER-RESULT " + json.dumps(out, default=str) + "\n")
