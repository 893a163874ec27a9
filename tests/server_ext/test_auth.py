"""Who may call the API of a real ``abaco-nb serve``.

Every route needs the service token; without it, or with a wrong one, the answer is 401 with
Abaco's envelope and nothing happens. An execution's own ``_abaco_access_token`` reaches only its
own actor's read, state and message routes, and only while that execution runs.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests

from server_ext.service import api
from tests.server_ext import serve_fixture
from tests.server_ext.serve_fixture import Served, python_command

abaco_serve = serve_fixture.abaco_serve  # the session's shared server

# Prints its token (flushed, so the live logs show it), then runs until the test stops it.
TOKEN_PRINTER = python_command(
    'import os, time; print("TOKEN=" + os.environ["_abaco_access_token"], flush=True); time.sleep(120)'
)
REFUSED = "Not authorized -- you do not have access to this actor."


def assert_envelope_error(resp: requests.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert body["status"] == "error" and body["result"] is None and body["message"]
    assert set(body) >= {"message", "result", "status", "version"}
    return body


def every_route(actor_id: str, execution_id: str, worker_id: str) -> list[tuple[str, str]]:
    """(METHOD, concrete path) for every route api.py serves."""
    values = {"actor_id": actor_id, "execution_id": execution_id, "worker_id": worker_id}
    routes = []
    for route in api.ROUTES:
        pattern, methods = route.pattern, route.methods
        path = re.sub(
            r"\(\?P<(\w+)>[^)]*\)", lambda m: values.get(m.group(1), m.group(1)), pattern.pattern.strip("^$")
        )
        routes += [(method, path) for method in methods]
    return sorted(routes)


@pytest.fixture(scope="module")
def finished(abaco_serve: Served) -> dict[str, str]:
    """An actor with one finished execution and a worker: real ids for every route."""
    actor = abaco_serve.register(
        {"image": "abaco-nb/test", "default_environment": {"SLEEP": "0"}, "token": True}
    )
    sent = abaco_serve.request("POST", f"/actors/{actor['id']}/messages", json={"message": "hi"})
    execution_id = sent.json()["result"]["execution_id"]
    abaco_serve.wait_execution(actor["id"], execution_id)
    workers = abaco_serve.request("GET", f"/actors/{actor['id']}/workers").json()["result"]
    return {"actor_id": actor["id"], "execution_id": execution_id, "worker_id": workers[0]["id"]}


BAD_CREDENTIALS = [
    pytest.param({}, id="none"),
    pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-bearer"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic"),
    pytest.param({"Authorization": "Bearer"}, id="empty-bearer"),
    pytest.param({"X-Tapis-Token": "wrong-token"}, id="wrong-tapis"),
]


@pytest.mark.parametrize("headers", BAD_CREDENTIALS)
def test_every_route_refuses_missing_or_wrong_credentials(
    abaco_serve: Served, finished: dict[str, str], headers: dict[str, str]
) -> None:
    for method, path in every_route(**finished):
        for prefix_path in (path, path.replace("/actors", "/v3/actors", 1)):
            resp = abaco_serve.request(
                method, prefix_path, auth=False, headers=headers, json={"image": "abaco-nb/test", "num": 1}
            )
            body = assert_envelope_error(resp, 401)
            assert "Authorization: Bearer" in body["message"]
    # nothing was done: the actor, its execution and its worker are all still there
    actor = abaco_serve.request("GET", f"/actors/{finished['actor_id']}").json()["result"]
    assert actor["status"] == "READY" and actor["image"] == "abaco-nb/test"


def test_a_wrong_query_token_is_refused(abaco_serve: Served) -> None:
    assert_envelope_error(abaco_serve.request("GET", "/actors?token=wrong", auth=False), 401)


@pytest.mark.parametrize(
    "headers, query",
    [
        pytest.param({"Authorization": "Bearer {t}"}, "", id="bearer"),
        pytest.param({"Authorization": "token {t}"}, "", id="jupyter-style"),
        pytest.param({"X-Tapis-Token": "{t}"}, "", id="tapis"),
        pytest.param({}, "?token={t}", id="query"),
    ],
)
def test_accepted_credentials(abaco_serve: Served, headers: dict[str, str], query: str) -> None:
    filled = {k: v.format(t=abaco_serve.token) for k, v in headers.items()}
    resp = abaco_serve.request(
        "GET", "/actors" + query.format(t=abaco_serve.token), auth=False, headers=filled
    )
    assert resp.status_code == 200 and resp.json()["status"] == "success"


def test_preflight_needs_no_token(abaco_serve: Served) -> None:
    resp = abaco_serve.request("OPTIONS", "/actors/anything/messages", auth=False)
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Tapis-Token" in resp.headers["Access-Control-Allow-Headers"]


def live_token(served: Served, actor_id: str, execution_id: str) -> str:
    """The execution's token, read from its live logs while it runs."""
    for _ in range(300):
        logs = served.request("GET", f"/actors/{actor_id}/executions/{execution_id}/logs").json()["result"][
            "logs"
        ]
        match = re.search(r"^TOKEN=(\S+)$", logs, re.M)
        if match:
            return match.group(1)
        time.sleep(0.1)
    raise AssertionError("the execution never printed its token")


def test_execution_token_is_scoped_to_its_actor_and_its_run(
    abaco_serve: Served, finished: dict[str, str]
) -> None:
    actor = abaco_serve.register({"image": TOKEN_PRINTER, "stateless": False, "token": True})
    aid, other = actor["id"], finished["actor_id"]
    eid = abaco_serve.request("POST", f"/actors/{aid}/messages", json={"message": "go"}).json()["result"][
        "execution_id"
    ]
    token = live_token(abaco_serve, aid, eid)
    as_execution = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        return abaco_serve.request(method, path, auth=False, headers=as_execution, **kwargs)

    # its own actor: read, state, messages, executions
    assert call("GET", f"/actors/{aid}").status_code == 200
    assert call("GET", f"/v3/actors/{aid}/state").status_code == 200
    assert call("POST", f"/actors/{aid}/state", json={"step": 1}).status_code == 200
    assert call("GET", f"/actors/{aid}/executions/{eid}").json()["result"]["status"] == "RUNNING"
    assert call("GET", f"/actors/{aid}/executions").status_code == 200
    assert call("GET", f"/actors/{aid}/messages").status_code == 200
    queued = call("POST", f"/actors/{aid}/messages", json={"message": "from inside"})
    assert queued.status_code == 200

    # anything else: Abaco's 400 "Not authorized", and nothing happens
    refused = [
        ("GET", f"/actors/{other}", {}),
        ("GET", f"/actors/{other}/state", {}),
        ("POST", f"/actors/{other}/messages", {"json": {"message": "x"}}),
        ("GET", f"/actors/{other}/executions/{finished['execution_id']}/logs", {}),
        ("GET", "/actors", {}),
        ("POST", "/actors", {"json": {"image": "abaco-nb/test"}}),
        ("PUT", f"/actors/{aid}", {"json": {"image": TOKEN_PRINTER, "stateless": False}}),
        ("DELETE", f"/actors/{aid}", {}),
        ("DELETE", f"/actors/{aid}/messages", {}),
        ("DELETE", f"/actors/{aid}/executions/{eid}", {}),
        ("POST", f"/actors/{aid}/workers", {"json": {"num": 1}}),
        ("DELETE", f"/actors/{other}", {}),
    ]
    for method, path, kwargs in refused:
        body = assert_envelope_error(call(method, path, **kwargs), 400)
        assert body["message"] == REFUSED, (method, path, body)
    assert abaco_serve.request("GET", f"/actors/{aid}").json()["result"]["status"] == "READY"
    assert abaco_serve.request("GET", f"/actors/{other}").status_code == 200
    assert abaco_serve.request("GET", f"/actors/{aid}/state").json()["result"]["state"] == {"step": 1}

    # once the execution has ended, the token is worth nothing
    stopped = abaco_serve.request("DELETE", f"/actors/{aid}/executions/{eid}")
    assert stopped.status_code == 200, stopped.text
    assert abaco_serve.wait_execution(aid, eid)["status"] == "COMPLETE"
    body = assert_envelope_error(call("GET", f"/actors/{aid}"), 401)
    assert "Authorization: Bearer" in body["message"]
    abaco_serve.request("DELETE", f"/actors/{aid}")


def test_a_finished_executions_token_from_its_logs_is_refused(
    abaco_serve: Served, finished: dict[str, str]
) -> None:
    """abacosamples/test prints its environment, token included: after the run it opens nothing."""
    logs = abaco_serve.request(
        "GET", f"/actors/{finished['actor_id']}/executions/{finished['execution_id']}/logs"
    ).json()["result"]["logs"]
    token = re.search(r"^_abaco_access_token=(\S+)$", logs, re.M)
    assert token, logs
    resp = abaco_serve.request(
        "GET",
        f"/actors/{finished['actor_id']}",
        auth=False,
        headers={"Authorization": f"Bearer {token.group(1)}"},
    )
    assert_envelope_error(resp, 401)
