"""agavepy 0.9.5: addNonce / listNonces / getNonce / deleteNonce, addAlias / listAliases / getAlias /
deleteAlias, getPermissions / updatePermissions, and a message sent with ``nonce=`` by a client that
holds no token (``use_nonce=True``).

argv[1] is a ``local:`` image that finishes at once.
Usage: ABACO_URL=... ABACO_TOKEN=... python agave_access.py <image>
"""

from __future__ import annotations

import os
import sys

from _agave import client, emit, error_of, plain, wait_complete, wait_ready
from agavepy.agave import Agave, load_resource

image = sys.argv[1]
ag = client()
out: dict = {}
aid = ag.actors.add(body={"image": image, "name": "agave-access"})["id"]
wait_ready(ag, aid)
out["actor_id"] = aid

out["nonces_before"] = plain(ag.actors.listNonces(actorId=aid))
out["nonce_default"] = plain(ag.actors.addNonce(actorId=aid))
out["nonce_limited"] = plain(ag.actors.addNonce(actorId=aid, body={"maxUses": 2, "level": "READ"}))
out["nonces_listed"] = plain(ag.actors.listNonces(actorId=aid))
out["nonce_got"] = plain(ag.actors.getNonce(actorId=aid, nonceId=out["nonce_limited"]["id"]))
out["nonce_deleted"] = plain(ag.actors.deleteNonce(actorId=aid, nonceId=out["nonce_default"]["id"]))
out["nonce_gone"] = error_of(lambda: ag.actors.getNonce(actorId=aid, nonceId=out["nonce_default"]["id"]))

out["alias_added"] = plain(ag.actors.addAlias(body={"alias": "agave-alias", "actorId": aid}))
out["alias_duplicate"] = error_of(lambda: ag.actors.addAlias(body={"alias": "agave-alias", "actorId": aid}))
out["aliases_listed"] = plain(ag.actors.listAliases())
out["alias_got"] = plain(ag.actors.getAlias(alias="agave-alias"))
out["actor_by_alias"] = plain(ag.actors.get(actorId="agave-alias"))

out["permissions"] = plain(ag.actors.getPermissions(actorId=aid))
out["permissions_updated"] = plain(
    ag.actors.updatePermissions(actorId=aid, body={"user": "testshareuser", "level": "READ"})
)

# A second client with no token at all: the nonce is its only credential.
res = load_resource(os.environ["ABACO_URL"])
for api in res["apis"]:
    decl = api["api_declaration"]
    decl["basePath"] = decl["basePath"].replace("https://", "http://", 1)
anonymous = Agave(api_server=os.environ["ABACO_URL"], use_nonce=True, resources=res)
run_nonce = plain(ag.actors.addNonce(actorId=aid, body={"maxUses": 1, "level": "EXECUTE"}))["id"]
sent = anonymous.actors.sendMessage(actorId=aid, body={"message": "by nonce"}, nonce=run_nonce)
out["nonce_execution"] = plain(wait_complete(ag, aid, sent["executionId"]))
out["nonce_spent"] = error_of(
    lambda: anonymous.actors.sendMessage(actorId=aid, body={"message": "again"}, nonce=run_nonce)
)
out["nonce_read"] = plain(anonymous.actors.get(actorId=aid, nonce=out["nonce_limited"]["id"]))

out["alias_deleted"] = plain(ag.actors.deleteAlias(alias="agave-alias"))
out["alias_gone"] = error_of(lambda: ag.actors.getAlias(alias="agave-alias"))
ag.actors.delete(actorId=aid)
emit(out)
