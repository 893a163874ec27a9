"""Shared by the tapipy drivers (runs inside .clients/tapipy, not the project venv).

tapipy insists on a JWT (it decodes it; any HS256 JWT with ``exp`` will do) and on a tenant, and sends
the JWT as ``X-Tapis-Token``. abaco-nb's token is not a JWT unless you chose one, so when ABACO_TOKEN
is not a JWT the client gets a throw-away JWT and ``Authorization: Bearer <token>`` is added with
tapipy's pre-request plugin hook.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jwt
from tapipy.errors import BaseTapyException
from tapipy.tapis import Tapis


def looks_like_jwt(value: str) -> bool:
    try:
        jwt.decode(value, options={"verify_signature": False})
        return True
    except jwt.PyJWTError:
        return False


def client() -> Tapis:
    """A real tapipy client for ABACO_URL, authenticated with ABACO_TOKEN."""
    url, token = os.environ["ABACO_URL"], os.environ["ABACO_TOKEN"]
    if looks_like_jwt(token):
        return Tapis(base_url=url, jwt=token, tenant_id="dev")
    fake = jwt.encode({"sub": "tester", "exp": int(time.time()) + 3600}, "not-a-secret", algorithm="HS256")
    t = Tapis(base_url=url, jwt=fake, tenant_id="dev")

    def add_bearer(op, prepared_request, **kwargs):
        prepared_request.headers["Authorization"] = f"Bearer {token}"

    t.plugin_on_call_pre_request_callables.append(add_bearer)
    return t


def plain(value):
    """TapisResult trees as plain data."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "__dict__") and type(value).__name__ == "TapisResult":
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    return value


def error_of(call) -> dict:
    """``{"ok": result}``, or the tapipy error's class, message and HTTP status."""
    try:
        return {"ok": plain(call())}
    except BaseTapyException as exc:
        return {
            "error": type(exc).__name__,
            "message": exc.message,
            "status": exc.response.status_code if exc.response is not None else None,
        }


def wait_ready(t: Tapis, actor_id: str):
    for _ in range(300):
        actor = t.actors.get_actor(actor_id=actor_id)
        if actor.status != "SUBMITTED":
            return actor
        time.sleep(0.1)
    return actor


def emit(result: dict) -> None:
    sys.stdout.write("DRIVER-RESULT " + json.dumps(result, default=str) + "\n")
