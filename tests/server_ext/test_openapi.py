"""server_ext/openapi.yaml: a valid OpenAPI document, in step with the routes of api.py, and true of
what a real ``abaco-nb serve`` answers.

The walk below calls every route (through all three prefixes) and every error status the API
documents, and validates each response with openapi-core against the operation it belongs to.
Answers that belong to no operation (405, an unknown route) are checked against the error envelope.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.response.exceptions import MissingData
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from server_ext.service import api, rest
from server_ext.service.models import to_snake
from tests.server_ext import serve_fixture
from tests.server_ext.serve_fixture import REPO, Served, python_command

abaco_serve = serve_fixture.abaco_serve  # the session's shared server

SPEC_PATH = REPO / "server_ext" / "openapi.yaml"
ECHO = python_command(
    "from abaco_nb.actors import get_context, send_bytes_result; c = get_context(); "
    'print("MSG=" + str(c["raw_message"])); send_bytes_result(b"frame-1"); send_bytes_result(b"frame-2")'
)
SLEEPER = python_command("import time; time.sleep(60)")


def load_spec() -> dict[str, Any]:
    return yaml.safe_load(Path(SPEC_PATH).read_text())


def test_document_is_valid_openapi() -> None:
    validate(load_spec())


def code_routes() -> set[tuple[str, str]]:
    """(path template, METHOD) for every route api.py serves, e.g. ('/actors/{actor_id}', 'GET')."""
    routes = set()
    for route in api.ROUTES:
        pattern, methods = route.pattern, route.methods
        template = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern.pattern.strip("^$"))
        routes |= {(template, method) for method in methods}
    return routes


def test_document_describes_exactly_the_served_routes() -> None:
    spec = load_spec()
    documented = {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert code_routes() - documented == set(), "routes served but not in server_ext/openapi.yaml"
    assert documented - code_routes() == set(), "routes in server_ext/openapi.yaml that api.py does not serve"


def test_extensions_are_marked() -> None:
    """Our additions to Abaco's API say so."""
    paths = load_spec()["paths"]
    assert paths["/actors/{actor_id}/executions/wait"]["post"]["x-abaco-nb-extension"] is True
    wait = [
        p for p in paths["/actors/{actor_id}/executions/{execution_id}"]["get"]["parameters"] if "name" in p
    ]
    assert wait[0]["name"] == "wait" and wait[0]["x-abaco-nb-extension"] is True


class Walker:
    """Sends requests to the server and validates each answer against the document."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.openapi = OpenAPI.from_dict(load_spec())
        self.error_schema = OAS31Validator(
            {**load_spec()["components"]["schemas"]["ErrorEnvelope"], "components": load_spec()["components"]}
        )
        self.seen: set[tuple[str, str, int]] = set()

    def call(
        self, method: str, path: str, status: int, *, auth: bool = True, **kwargs: Any
    ) -> requests.Response:
        resp = self.served.request(method, path, auth=auth, **kwargs)
        assert resp.status_code == status, (method, path, resp.status_code, resp.text[:500])
        self.validate(method, path, resp)
        return resp

    def validate(self, method: str, path: str, resp: requests.Response) -> None:
        parts = urlsplit(path)
        canonical = api.normalise_path(parts.path)
        request = MockRequest(
            "http://localhost",
            method.lower(),
            canonical,
            args=dict(re.findall(r"([^&=]+)=([^&]*)", parts.query)),
        )
        content_type = resp.headers.get("Content-Type", "")
        data = resp.content
        if "case=camel" in parts.query:  # the document is snake_case: check the camel form re-snaked
            data = json.dumps(resnake(resp.json())).encode()
        response = MockResponse(data, resp.status_code, dict(resp.headers), content_type)
        errors = list(self.openapi.iter_response_errors(request, response))
        if not data and canonical.endswith("/results"):  # "no more results" is an empty 200 by design
            errors = [e for e in errors if not isinstance(e, MissingData)]
        assert errors == [], (method, path, errors)
        if content_type.startswith("application/json"):
            assert content_type == "application/json"  # exactly: tapipy parses nothing else
            assert {"message", "result", "status", "version"} <= set(resp.json())
        self.seen.add((self.template(canonical), method.upper(), resp.status_code))

    def template(self, path: str) -> str:
        for route in api.ROUTES:
            pattern = route.pattern
            if pattern.match(path):
                return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern.pattern.strip("^$"))
        return path

    def error_without_operation(self, method: str, path: str, status: int) -> dict[str, Any]:
        """405 and unknown routes belong to no operation: check the error envelope itself."""
        resp = self.served.request(method, path)
        assert resp.status_code == status, resp.text
        assert resp.headers["Content-Type"] == "application/json"
        self.error_schema.validate(resp.json())
        return resp.json()


def resnake(value: Any) -> Any:
    """A camelCase answer back in snake_case (user data left alone, as the service leaves it)."""
    if isinstance(value, list):
        return [resnake(v) for v in value]
    if isinstance(value, dict):
        return {to_snake(k): (v if to_snake(k) in rest.OPAQUE_KEYS else resnake(v)) for k, v in value.items()}
    return value


def wait_status(served: Served, actor_id: str, execution_id: str, status: str) -> None:
    for _ in range(300):
        got = served.request("GET", f"/actors/{actor_id}/executions/{execution_id}").json()["result"]
        if got["status"] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} never reached {status}")


def oversized_post(served: Served, path: str) -> tuple[int, bytes, str]:
    """A POST announcing a body over the service's maximum (256 MiB): refused before it is sent."""
    parts = urlsplit(served.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Authorization", f"Bearer {served.token}")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(300 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"x" * 1024)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, resp.getheader("Content-Type") or ""


def test_a_walk_through_every_route_matches_the_document(abaco_serve: Served) -> None:
    w = Walker(abaco_serve)
    # actors
    w.call("GET", "/actors", 200)
    actor = w.call("POST", "/actors", 200, json={"image": ECHO, "name": "openapi"}).json()["result"]
    aid = actor["id"]
    w.call("POST", "/v3/actors", 200, data={"image": ECHO, "stateless": "true"})  # a form
    w.call("POST", "/actors", 400, data=b"{not json", headers={"Content-Type": "application/json"})
    w.call("POST", "/actors", 400, json={"name": "no image"})
    w.call("POST", "/actors", 400, json={"image": ECHO, "colour": "blue"})
    w.call("POST", "/actors", 401, auth=False, json={"image": ECHO})
    abaco_serve.wait_ready(aid)
    w.call("GET", f"/actors/{aid}", 200)
    w.call("GET", f"/actors/v2/{aid}?case=camel", 200)
    w.call("GET", "/actors/NOPE", 404)
    w.call("PUT", f"/actors/{aid}", 200, json={"image": ECHO, "description": "updated"})
    w.call("PUT", f"/actors/{aid}", 400, json={"image": ECHO, "stateless": "maybe"})
    w.call("PUT", "/actors/NOPE", 404, json={"image": ECHO})
    abaco_serve.wait_ready(aid)

    # messages, executions, logs, results
    w.call("GET", f"/actors/{aid}/messages", 200)
    first = w.call("POST", f"/actors/{aid}/messages", 200, json={"message": "hi"}).json()["result"]
    w.call(
        "POST",
        f"/v3/actors/{aid}//messages",
        200,
        data=b"\x00\x01",
        headers={"Content-Type": "application/octet-stream"},
    )
    w.call("POST", f"/actors/v2/{aid}/messages?key1=v", 200, data={"message": "form"})
    w.call("POST", f"/actors/{aid}/messages", 200, json={"a": 1})
    w.call(
        "POST", f"/actors/{aid}/messages", 400, data=b"not json", headers={"Content-Type": "application/json"}
    )
    w.call("POST", "/actors/NOPE/messages", 404, json={"message": "x"})
    sync = w.call("POST", f"/actors/{aid}/messages?_abaco_synchronous=true", 200, json={"message": "sync"})
    assert sync.content == b"frame-1" and sync.headers["Content-Type"] == "application/octet-stream"
    eid = first["execution_id"]
    w.call("GET", f"/actors/{aid}/executions/{eid}?wait=30", 200)
    w.call("POST", f"/actors/{aid}/executions/wait", 200, json={"ids": [eid], "timeout": 5})
    w.call("POST", f"/actors/{aid}/executions/wait", 400, json={"ids": "not a list"})
    w.call("POST", f"/actors/{aid}/executions/wait", 400, json={"ids": [eid], "results": "yes"})
    waited = w.call("POST", f"/actors/{aid}/executions/wait", 200, json={"ids": [eid], "results": True})
    every = w.call("GET", f"/actors/{aid}/executions/{eid}/results?_abaco_nb_all=true", 200).content
    assert base64.b64decode(waited.json()["result"][0]["_abaco_nb_results"]) == every  # small: inline
    w.call("GET", f"/actors/{aid}/executions", 200)
    w.call("GET", f"/actors/{aid}/executions/NOPE", 400)
    w.call("GET", f"/actors/{aid}/executions/{eid}/logs", 200)
    w.call("GET", f"/actors/{aid}/executions/NOPE/logs", 400)
    assert w.call("GET", f"/actors/{aid}/executions/{eid}/results", 200).content == b"frame-1"
    w.call("GET", f"/actors/{aid}/executions/{eid}/results?_abaco_nb_all=true", 200)
    assert w.call("GET", f"/actors/{aid}/executions/{eid}/results", 200).content == b"frame-2"
    assert w.call("GET", f"/actors/{aid}/executions/{eid}/results", 200).content == b""
    w.call("DELETE", f"/actors/{aid}/executions/{eid}", 400)  # finished: nothing to stop
    w.call("GET", f"/actors/{aid}/image_versions", 200)
    status, body, content_type = oversized_post(abaco_serve, f"/actors/{aid}/messages")
    assert status == 413 and content_type == "application/json"
    w.openapi.validate_response(
        MockRequest("http://localhost", "post", f"/actors/{aid}/messages"),
        MockResponse(body, 413, content_type="application/json"),
    )

    # workers
    workers = w.call("GET", f"/actors/{aid}/workers", 200).json()["result"]
    w.call("POST", f"/actors/{aid}/workers", 200, json={"num": 2})
    w.call("POST", f"/actors/{aid}/workers", 400, json={"num": "two"})
    w.call("GET", f"/actors/{aid}/workers/{workers[0]['id']}", 200)
    w.call("GET", f"/actors/{aid}/workers/NOPE", 404)
    w.call("DELETE", f"/actors/{aid}/workers/{workers[0]['id']}", 200)
    w.call("DELETE", f"/actors/{aid}/workers/NOPE", 404)

    # state
    w.call("GET", f"/actors/{aid}/state", 404)  # stateless
    stateful = w.call("POST", "/actors", 200, json={"image": ECHO, "stateless": False}).json()["result"]["id"]
    abaco_serve.wait_ready(stateful)
    w.call("GET", f"/actors/{stateful}/state", 200)
    w.call("POST", f"/actors/{stateful}/state", 200, json={"count": 1})
    w.call(
        "POST", f"/actors/{stateful}/state", 400, data=b"abc", headers={"Content-Type": "application/json"}
    )

    # stopping a running execution; purging queued ones
    sleeper = w.call("POST", "/actors", 200, json={"image": SLEEPER, "stateless": False}).json()["result"][
        "id"
    ]
    abaco_serve.wait_ready(sleeper)
    running = w.call("POST", f"/actors/{sleeper}/messages", 200, json={"message": "1"}).json()["result"]
    w.call("POST", f"/actors/{sleeper}/messages", 200, json={"message": "2"})
    wait_status(abaco_serve, sleeper, running["execution_id"], "RUNNING")
    w.call("DELETE", f"/actors/{sleeper}/messages", 200)
    w.call("DELETE", f"/actors/{sleeper}/executions/{running['execution_id']}", 200)
    w.call("GET", f"/actors/{sleeper}/executions/{running['execution_id']}?wait=30", 200)

    # aliases, nonces, permissions
    w.call("GET", "/actors/aliases", 200)
    w.call("POST", "/actors/aliases", 200, json={"alias": "openapi.alias", "actor_id": aid})
    w.call("POST", "/actors/aliases", 400, json={"alias": "openapi.alias", "actor_id": aid})
    w.call("POST", "/v3/actors/aliases", 404, json={"alias": "openapi-x", "actor_id": "NOPE"})
    w.call("GET", "/actors/aliases/openapi.alias?case=camel", 200)
    w.call("GET", "/actors/aliases/NOPE", 404)
    w.call("PUT", "/actors/aliases/openapi.alias", 200, data={"actor_id": stateful})
    w.call("GET", "/actors/aliases/openapi.alias/permissions", 200)
    w.call("POST", "/actors/aliases/openapi.alias/permissions", 200, json={"user": "u", "level": "READ"})
    w.call("POST", "/actors/aliases/openapi.alias/permissions", 400, json={"user": "u", "level": "ALL"})
    nonce = w.call("POST", "/actors/aliases/openapi.alias/nonces", 200).json()["result"]
    w.call("POST", "/actors/aliases/openapi.alias/nonces", 400, json={"level": "UPDATE"})
    w.call("GET", "/actors/aliases/openapi.alias/nonces", 200)
    w.call("GET", f"/actors/aliases/openapi.alias/nonces/{nonce['id']}", 200)
    w.call("GET", f"/actors/openapi.alias/state?x-nonce={nonce['id']}", 200, auth=False)
    w.call("DELETE", f"/actors/aliases/openapi.alias/nonces/{nonce['id']}", 200)
    w.call("GET", f"/actors/aliases/openapi.alias/nonces/{nonce['id']}", 400)
    w.call("DELETE", "/actors/aliases/openapi.alias", 200)
    w.call("DELETE", "/actors/aliases/openapi.alias", 404)
    w.call("GET", f"/actors/{aid}/nonces", 200)
    made = w.call("POST", f"/actors/{aid}/nonces", 200, json={"max_uses": 2, "level": "READ"})
    nonce = made.json()["result"]
    w.call("POST", f"/actors/{aid}/nonces?case=camel", 200, data={"maxUses": "1"})
    w.call("POST", f"/actors/{aid}/nonces", 400, json={"max_uses": 0})
    w.call("GET", f"/actors/{aid}/nonces/{nonce['id']}", 200)
    w.call("GET", f"/actors/{aid}?x-nonce={nonce['id']}", 200, auth=False)
    w.call("DELETE", f"/actors/{aid}?x-nonce={nonce['id']}", 400, auth=False)  # READ only
    w.call("GET", f"/actors/{aid}/nonces/LOCAL_NOPE", 400)
    w.call("DELETE", f"/actors/{aid}/nonces/{nonce['id']}", 200)
    w.call("GET", f"/actors/{aid}/permissions", 200)
    w.call("POST", f"/actors/{aid}/permissions", 200, data={"user": "ABACO_WORLD", "level": "READ"})
    w.call("POST", f"/actors/{aid}/permissions", 400, json={"level": "READ"})

    # search, explicit and implicit (a list route with a query key of its own)
    # (search/executions and search/workers read, to a path matcher, like /actors/{id}/executions and
    # /actors/{id}/workers; the walk uses the two types whose paths are unambiguous)
    w.call("GET", "/actors/search/actors?search=openapi&limit=5", 200)
    w.call("GET", "/actors/search/logs?actor_id=nope", 200)
    w.call("GET", "/actors/search/nothing", 404)
    w.call("GET", "/actors/search/logs?skip=-1", 400)

    # actor configs (a secret's value is its ciphertext), admin and utilization
    config = {"name": "openapi-cfg", "value": {"k": 1}, "is_secret": False, "actors": aid}
    w.call("POST", "/actors/configs", 200, json=config)
    w.call("POST", "/actors/configs", 400, json=config)  # taken
    w.call("POST", "/actors/configs", 404, json={**config, "name": "openapi-x", "actors": "NOPE"})
    w.call("GET", "/actors/configs", 200)
    w.call("GET", "/actors/configs/openapi-cfg?case=camel", 200)
    w.call("GET", "/actors/configs/NOPE", 404)
    w.call("PUT", "/actors/configs/openapi-cfg", 200, data={"value": "pw", "isSecret": "true", "actors": aid})
    w.call("PUT", "/actors/configs/openapi-cfg", 400, json={"value": 1, "actors": aid})  # no is_secret
    w.call("GET", "/actors/configs/openapi-cfg/permissions", 200)
    w.call("POST", "/actors/configs/openapi-cfg/permissions", 200, json={"user": "u", "level": "READ"})
    w.call("DELETE", "/actors/configs/openapi-cfg", 200)
    w.call("DELETE", "/actors/configs/openapi-cfg", 404)
    w.call("GET", "/actors/utilization", 200)
    w.call("GET", "/actors/admin", 200)
    w.call("GET", "/actors/admin/workers", 200)
    w.call("GET", "/actors/admin/executions?case=camel", 200)

    # deletes
    for actor_id in (aid, stateful, sleeper):
        w.call("DELETE", f"/actors/{actor_id}", 200)
    w.call("DELETE", f"/actors/{aid}", 404)

    # answers that belong to no operation
    assert "PATCH" in w.error_without_operation("PATCH", "/actors", 405)["message"]
    w.error_without_operation("PUT", f"/actors/{aid}/messages", 405)
    w.error_without_operation("GET", "/nowhere", 404)

    # every documented operation was exercised with a success status
    ok = {(path, method) for path, method, status in w.seen if status == 200}
    assert code_routes() - ok == set()
    statuses = {status for _, _, status in w.seen}
    assert {200, 400, 401, 404} <= statuses


@pytest.mark.parametrize("prefix", ["/actors", "/actors/v2", "/v3/actors", "//actors"])
def test_prefixes_answer_alike(abaco_serve: Served, prefix: str) -> None:
    resp = abaco_serve.request("GET", prefix)
    assert resp.status_code == 200 and resp.json()["status"] == "success"
