"""tapipy (the Tapis v3 client) against a real abaco-nb serve (process runtime)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_ext.serve_fixture import Served, start_serve

from .conftest import COUNTER_ACTOR, ECHO_ACTOR, run_driver

pytestmark = pytest.mark.clients


def hs256_jwt(claims: dict[str, object], key: bytes = b"any-key-will-do-tapipy-does-not-verify") -> str:
    """A signed HS256 JWT: tapipy decodes the token it is given (without verifying it) and needs exp."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


@pytest.fixture(scope="module")
def jwt_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A second server whose token is itself a JWT: tapipy then needs nothing but ``jwt=token``."""
    token = hs256_jwt({"sub": "tester", "exp": int(time.time()) + 24 * 3600})
    served = start_serve(Path(tmp_path_factory.mktemp("abaco-jwt")), token=token)
    yield served
    served.stop()


def check_tapipy_run(out: dict) -> None:
    assert out["created_type"] == "TapisResult"
    assert out["created"]["status"] == "SUBMITTED" and out["ready"]["status"] == "READY"
    assert out["created"]["default_environment"] == {"key1": "value1"}
    assert out["created"]["id"] in out["listed_ids"]
    for receipt in out["sent"].values():
        assert receipt["executionId"] == receipt["execution_id"]
    assert out["sent"]["string"]["msg"] == "hello"
    assert out["sent"]["dict"]["msg"] == "{'a': 1}"
    assert out["sent"]["binary"]["msg"] == "binary - omitted"  # sent to //messages
    expected = {
        "string": ["CT=str", "MSG=hello"],
        "dict": ["CT=str", "MSG={'a': 1}", "DICT={'a': 1}"],
        "binary": ["CT=application/octet-stream", "BIN=b'\\x00tapipy-bytes'"],
    }
    for name, lines in expected.items():
        run = out[name]
        assert run["execution"]["status"] == "COMPLETE", run
        for line in lines:
            assert line in run["logs"].splitlines(), (name, run["logs"])
        # Results come back as raw bytes (octet-stream): one frame, then an empty body.
        content_type = lines[0].removeprefix("CT=")
        assert run["results"] == [{"bytes": f"result-of-{content_type}"}, {"bytes": ""}]
    assert out["executions"]["total_executions"] == 3
    assert out["messages"]["messages"] == 0
    assert out["workers"]
    assert out["unknown_actor"] == {
        "error": "NotFoundError",
        "message": "No actor found with id: NOPE.",
        "status": 404,
    }
    assert out["state_initial"] == {"state": {}}
    assert out["state_updated"]["state"] == {"count": 2}
    assert out["state_after_update"] == {"state": {"count": 2}}
    assert out["state_execution"]["status"] == "COMPLETE"
    assert out["state_after_execution"] == {"state": {"count": 5}}
    # result: null -> tapipy hands back the whole envelope
    assert out["deleted"]["status"] == "success" and out["deleted"]["result"] is None
    assert out["get_deleted"]["status"] == 404


def test_tapipy_with_bearer_plugin(abaco_serve: Served) -> None:
    """The service's own (non-JWT) token, added by tapipy's pre-request plugin hook."""
    check_tapipy_run(run_driver("tapipy", "tapipy_actors.py", abaco_serve, ECHO_ACTOR, COUNTER_ACTOR))


def test_tapipy_with_jwt_token(jwt_serve: Served) -> None:
    """A service started with ``--token <JWT>``: tapipy's X-Tapis-Token is accepted as is."""
    check_tapipy_run(run_driver("tapipy", "tapipy_actors.py", jwt_serve, ECHO_ACTOR, COUNTER_ACTOR))


def test_content_type_is_exactly_application_json(abaco_serve: Served) -> None:
    """tapipy parses a body only when Content-Type is exactly application/json (no charset)."""
    resp = abaco_serve.request("GET", "/v3/actors")
    assert resp.headers["Content-Type"] == "application/json"
    resp = abaco_serve.request("GET", "/v3/actors/NOPE")
    assert resp.status_code == 404 and resp.headers["Content-Type"] == "application/json"
