"""agavepy 0.9.5 as one user of a multi-user service (the JupyterHub team service): register an actor,
share it with another user at EXECUTE, read the permissions back, and be refused another user's actor.

Usage: ABACO_URL=... ABACO_TOKEN=<this user's token> python agave_team.py <image> <share-with> <other's actor id>
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

from _agave import emit, error_of, plain, wait_ready
from agavepy.agave import Agave, load_resource


def client() -> Agave:
    """_agave.client(), for a service under a path (the Hub's /services/abaco): agavepy's rendered
    resources carry only scheme and host in basePath, so put the whole URL there."""
    url, token = os.environ["ABACO_URL"].rstrip("/"), os.environ["ABACO_TOKEN"]
    res = load_resource(url)
    for api in res["apis"]:
        api["api_declaration"]["basePath"] = url
    ag = Agave(api_server=url, token=token, resources=res)
    ag.all.http_client.authenticator.host = urlsplit(url).hostname
    return ag


image, share_with, others = sys.argv[1], sys.argv[2], sys.argv[3]
ag = client()
out: dict = {}
actor = ag.actors.add(body={"image": image, "name": "agave-team", "defaultEnvironment": {"SLEEP": "0"}})
out["actor"] = plain(wait_ready(ag, actor["id"]))
out["shared"] = plain(
    ag.actors.updatePermissions(actorId=actor["id"], body={"user": share_with, "level": "EXECUTE"})
)
out["permissions"] = plain(ag.actors.getPermissions(actorId=actor["id"]))
out["listed"] = [a["id"] for a in ag.actors.list()]
out["others"] = error_of(lambda: ag.actors.get(actorId=others))
emit(out)
