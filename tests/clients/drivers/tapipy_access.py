"""tapipy (Tapis v3 client): create_nonce / list_nonces / get_nonce / delete_nonce, create_alias /
list_aliases / get_alias / update_actor_alias / delete_alias, list_permissions / update_permissions,
and the alias in place of the actor id.

tapipy needs a JWT (see tapipy_actors.py); the service token goes in with the pre-request hook.
Usage: ABACO_URL=... ABACO_TOKEN=... python tapipy_access.py <image>
"""

from __future__ import annotations

import sys

from _tapipy import client, emit, error_of, plain, wait_ready

image = sys.argv[1]
t = client()


out: dict = {}
aid = t.actors.create_actor(image=image, stateless=True).id
wait_ready(t, aid)
other = t.actors.create_actor(image=image, stateless=True).id
out["actor_id"], out["other_id"] = aid, other

out["nonces_before"] = plain(t.actors.list_nonces(actor_id=aid))
out["nonce_created"] = plain(t.actors.create_nonce(actor_id=aid, level="READ", max_uses=3))
nid = out["nonce_created"]["id"]
out["nonces_listed"] = plain(t.actors.list_nonces(actor_id=aid))
out["nonce_got"] = plain(t.actors.get_nonce(actor_id=aid, nonce_id=nid))
out["nonce_deleted"] = plain(t.actors.delete_nonce(actor_id=aid, nonce_id=nid))
out["nonce_gone"] = error_of(lambda: t.actors.get_nonce(actor_id=aid, nonce_id=nid))

out["alias_created"] = plain(t.actors.create_alias(alias="tapipy-alias", actor_id=aid))
out["alias_duplicate"] = error_of(lambda: t.actors.create_alias(alias="tapipy-alias", actor_id=aid))
out["alias_forbidden"] = error_of(lambda: t.actors.create_alias(alias="no spaces", actor_id=aid))
out["aliases_listed"] = plain(t.actors.list_aliases())
out["alias_got"] = plain(t.actors.get_alias(alias="tapipy-alias"))
out["actor_by_alias"] = plain(t.actors.get_actor(actor_id="tapipy-alias"))
out["alias_moved"] = plain(t.actors.update_actor_alias(alias="tapipy-alias", actor_id=other))
out["actor_by_moved_alias"] = plain(t.actors.get_actor(actor_id="tapipy-alias"))

out["permissions"] = plain(t.actors.list_permissions(actor_id=aid))
out["permissions_updated"] = plain(t.actors.update_permissions(actor_id=aid, user="tester", level="EXECUTE"))

out["alias_deleted"] = plain(t.actors.delete_alias(alias="tapipy-alias"))
out["alias_gone"] = error_of(lambda: t.actors.get_alias(alias="tapipy-alias"))
t.actors.delete_actor(actor_id=aid)
t.actors.delete_actor(actor_id=other)
emit(out)
