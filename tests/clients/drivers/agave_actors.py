"""agavepy 0.9.5: actors.add / list / get / update / delete, and a 404 on an unknown id.

Usage: ABACO_URL=... ABACO_TOKEN=... python agave_actors.py <image>
"""

from __future__ import annotations

import sys

from _agave import client, emit, error_of, plain, wait_ready

image = sys.argv[1]
ag = client()
out: dict = {}
body = {
    "image": image,
    "name": "agave-crud",
    "description": "registered with agavepy",
    "default_environment": {"key1": "value1", "key2": "value2"},
}
added = ag.actors.add(body=body)
out["added"] = plain(added)
aid = added["id"]
out["ready"] = plain(wait_ready(ag, aid))
out["listed_ids"] = [a["id"] for a in ag.actors.list()]
out["got"] = plain(ag.actors.get(actorId=aid))
update = {
    "image": image,
    "description": "updated with agavepy",
    "default_environment": {"key1": "value1", "key2": "new_value"},
}
out["updated"] = plain(ag.actors.update(actorId=aid, body=update))
out["got_after_update"] = plain(ag.actors.get(actorId=aid))
out["deleted"] = plain(ag.actors.delete(actorId=aid))
out["get_deleted"] = error_of(lambda: ag.actors.get(actorId=aid))
out["bad_registration"] = error_of(lambda: ag.actors.add(body={"name": "no image"}))
emit(out)
