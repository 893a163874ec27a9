"""agavepy 0.9.5: every message form, executions, logs, results, workers and the mailbox.

The actor (a ``local:`` python command, argv[1]) prints what it received and sends one bytes result.
Usage: ABACO_URL=... ABACO_TOKEN=... python agave_messages.py <image>
"""

from __future__ import annotations

import sys

from _agave import client, emit, error_of, plain, wait_complete, wait_ready

image = sys.argv[1]
ag = client()
out: dict = {}
aid = ag.actors.add(body={"image": image, "name": "agave-messages"})["id"]
wait_ready(ag, aid)

sends = {
    "string": lambda: ag.actors.sendMessage(actorId=aid, body={"message": "hello"}),
    "dict_message": lambda: ag.actors.sendMessage(actorId=aid, body={"message": {"a": 1}}),
    "pure_json": lambda: ag.actors.sendMessage(
        actorId=aid, body={"username": "jdoe", "application_id": "print-env-cli"}
    ),
    "environment": lambda: ag.actors.sendMessage(
        actorId=aid, body={"message": "hi"}, environment={"foo": "bar"}
    ),
    "binary": lambda: ag.actors.sendBinaryMessage(
        actorId=aid, message=b"\x00\x01binary-bytes\xff", headers={"Content-Type": "application/octet-stream"}
    ),
}
out["sent"] = {}
for name, send in sends.items():
    receipt = send()
    out["sent"][name] = plain(receipt)
for name, receipt in out["sent"].items():
    eid = receipt["executionId"]
    execution = wait_complete(ag, aid, eid)
    logs = ag.actors.getExecutionLogs(actorId=aid, executionId=eid)
    first = ag.actors.getOneExecutionResult(actorId=aid, executionId=eid)
    second = ag.actors.getOneExecutionResult(actorId=aid, executionId=eid)
    out[name] = {
        "execution": plain(execution),
        "logs": logs["logs"],
        "results": [first.content.decode("latin-1"), second.content.decode("latin-1")],
        "result_status": [first.status_code, second.status_code],
    }
# A bare string body is sent raw with Content-type: application/json: not JSON, so a 400 (as Abaco).
out["raw_string"] = error_of(lambda: ag.actors.sendMessage(actorId=aid, body="hello"))
out["executions"] = plain(ag.actors.listExecutions(actorId=aid))
out["messages"] = plain(ag.actors.getMessages(actorId=aid))
out["add_worker"] = error_of(lambda: ag.actors.addWorker(actorId=aid, body={"num": 2}))
out["workers"] = plain(ag.actors.listWorkers(actorId=aid))
out["unknown_execution"] = error_of(lambda: ag.actors.getExecution(actorId=aid, executionId="nope"))
ag.actors.delete(actorId=aid)
emit(out)
