"""Shared by the agavepy drivers (runs inside .clients/agavepy, not the project venv).

Builds a real agavepy 0.9.5 ``Agave`` client pointed at a local plain-HTTP abaco-nb (reference/clients.md
§3.4): agavepy renders its Swagger 1.2 resources with ``basePath: https://<host:port>``, so we render
them ourselves, switch the scheme to http, and pass them in. agavepy only sends ``Authorization:
Bearer`` when the request host equals the api_server's netloc, which never holds with an explicit port,
so the authenticator's host is set to the bare host name (``AUTH_MODE=session`` uses a session header
instead; both are ways a user would do it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from urllib.parse import urlsplit

from agavepy.agave import Agave, load_resource


def client() -> Agave:
    url = os.environ["ABACO_URL"]
    token = os.environ["ABACO_TOKEN"]
    res = load_resource(url)
    for api in res["apis"]:
        decl = api["api_declaration"]
        decl["basePath"] = decl["basePath"].replace("https://", "http://", 1)
    ag = Agave(api_server=url, token=token, resources=res)
    if os.environ.get("AUTH_MODE") == "session":
        ag.all.http_client.session.headers["Authorization"] = f"Bearer {token}"
    else:
        ag.all.http_client.authenticator.host = urlsplit(url).hostname
    return ag


def wait_ready(ag: Agave, actor_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        actor = ag.actors.get(actorId=actor_id)
        if actor["status"] != "SUBMITTED" or time.monotonic() > deadline:
            return actor
        time.sleep(0.1)


def wait_complete(ag: Agave, actor_id: str, execution_id: str, timeout: float = 60) -> dict:
    """Poll ``getExecution`` as AbacoAsyncResponse.done() does, until a terminal status."""
    deadline = time.monotonic() + timeout
    while True:
        execution = ag.actors.getExecution(actorId=actor_id, executionId=execution_id)
        if execution["status"] in ("COMPLETE", "ERROR") or time.monotonic() > deadline:
            return execution
        time.sleep(0.1)


def plain(value):
    """AttrDicts and lists of them as JSON-able plain data."""
    return json.loads(json.dumps(value, default=str))


def emit(result: dict) -> None:
    """The driver's answer: one JSON line on stdout, read by the test."""
    sys.stdout.write("DRIVER-RESULT " + json.dumps(result, default=str) + "\n")


def error_of(call) -> dict:
    """Run ``call``; its HTTP failure as {status, message} (agavepy raises requests.HTTPError)."""
    import requests

    try:
        value = call()
    except requests.HTTPError as exc:
        body = exc.response.json() if exc.response is not None else {}
        return {
            "status": exc.response.status_code if exc.response is not None else None,
            "message": body.get("message"),
            "envelope_status": body.get("status"),
        }
    return {"status": 200, "value": plain(value)}
