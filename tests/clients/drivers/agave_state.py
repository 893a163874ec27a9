"""agavepy 0.9.5: getState / updateState on a stateful actor whose execution updates its own state.

argv[1] is a ``local:`` image that reads the state and calls abaco_nb.actors.update_state.
Usage: ABACO_URL=... ABACO_TOKEN=... python agave_state.py <image>
"""

from __future__ import annotations

import sys

from _agave import client, emit, error_of, plain, wait_complete, wait_ready

image = sys.argv[1]
ag = client()
out: dict = {}
aid = ag.actors.add(body={"image": image, "name": "agave-state", "stateless": False, "token": True})["id"]
wait_ready(ag, aid)
out["initial"] = plain(ag.actors.getState(actorId=aid))
out["updated"] = plain(ag.actors.updateState(actorId=aid, body={"count": 2}))
out["after_update"] = plain(ag.actors.getState(actorId=aid))
eid = ag.actors.sendMessage(actorId=aid, body={"message": "3"})["executionId"]
out["execution"] = plain(wait_complete(ag, aid, eid))
out["logs"] = ag.actors.getExecutionLogs(actorId=aid, executionId=eid)["logs"]
out["after_execution"] = plain(ag.actors.getState(actorId=aid))
out["raw_string_state"] = error_of(lambda: ag.actors.updateState(actorId=aid, body="abc"))
stateless = ag.actors.add(body={"image": image, "name": "agave-stateless"})["id"]
out["stateless_get"] = error_of(lambda: ag.actors.getState(actorId=stateless))
out["stateless_update"] = error_of(lambda: ag.actors.updateState(actorId=stateless, body={"x": 1}))
ag.actors.delete(actorId=aid)
ag.actors.delete(actorId=stateless)
emit(out)
