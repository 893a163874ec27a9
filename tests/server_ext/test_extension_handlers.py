"""The extension inside a real (in-process) Jupyter server: routes, auth, XSRF, environment, stop.

Uses ``jupyter_server``'s pytest fixtures (``jp_fetch``, ``jp_server_config``), imported into this
module only: registering the plugin for the whole suite would put its autouse event-loop and
server-cleanup fixtures around every other test. Tests are plain functions that run ``jp_fetch`` on the
fixture's loop.
"""

from __future__ import annotations

import json
import os
from http.cookies import SimpleCookie
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures: jp_fetch, jp_serverapp, ...)
from tornado.httpclient import HTTPResponse

from server_ext.app import ENV_TOKEN, ENV_URL, AbacoApp
from tests.server_ext.jupyter_fetch import blocking_fetch

# Every route of the API, with each method it answers (ids need not exist: auth comes first).
ROUTES = [
    ("GET", "actors"),
    ("POST", "actors"),
    ("GET", "actors/a1"),
    ("PUT", "actors/a1"),
    ("DELETE", "actors/a1"),
    ("GET", "actors/a1/messages"),
    ("POST", "actors/a1/messages"),
    ("DELETE", "actors/a1/messages"),
    ("GET", "actors/a1/executions"),
    ("POST", "actors/a1/executions/wait"),
    ("GET", "actors/a1/executions/e1"),
    ("DELETE", "actors/a1/executions/e1"),
    ("GET", "actors/a1/executions/e1/logs"),
    ("GET", "actors/a1/executions/e1/results"),
    ("GET", "actors/a1/state"),
    ("POST", "actors/a1/state"),
    ("GET", "actors/a1/workers"),
    ("POST", "actors/a1/workers"),
    ("GET", "actors/a1/workers/w1"),
    ("DELETE", "actors/a1/workers/w1"),
    ("GET", "nosuchroute"),
]
PREFIXES = ["", "actors/v2", "v3/actors"]  # "" = the bare /actors prefix


def prefixed(prefix: str, route: str) -> str:
    if not prefix:
        return route
    return prefix + route[len("actors") :] if route.startswith("actors") else route


@pytest.fixture
def jp_server_config(tmp_path: Any) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"server_ext": True}},
        "AbacoApp": {"runtime": "process", "db_path": str(tmp_path / "abaco" / "abaco.db")},
    }


@pytest.fixture
def fetch(jp_fetch: Any, jp_asyncio_loop: Any) -> Any:
    """``jp_fetch`` run to completion; errors come back as responses, not exceptions."""

    return blocking_fetch(jp_fetch, jp_asyncio_loop)


def extension(serverapp: Any) -> AbacoApp:
    apps = serverapp.extension_manager.extension_apps["server_ext"]
    return next(iter(apps))


def body(response: HTTPResponse) -> dict[str, Any]:
    return json.loads(response.body)


def test_routes_answer_under_base_url_with_every_prefix(fetch: Any, jp_base_url: str) -> None:
    for prefix in PREFIXES:
        response = fetch("abaco", prefix or "actors")
        assert response.code == 200, response.body
        data = body(response)
        assert data["status"] == "success" and data["result"] == []


def test_request_without_credentials_is_refused_on_every_route(fetch: Any) -> None:
    no_auth = {"Authorization": ""}
    for prefix in PREFIXES:
        for method, route in ROUTES:
            response = fetch("abaco", prefixed(prefix, route), method=method, headers=no_auth)
            assert response.code == 401, (method, prefix, route, response.code)
            data = body(response)
            assert data["status"] == "error" and "uthenticat" in data["message"]


def test_wrong_tokens_are_refused(fetch: Any) -> None:
    for headers in (
        {"Authorization": "token not-the-token"},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": "", "X-Tapis-Token": "not-the-token"},
    ):
        assert fetch("abaco", "actors", headers=headers).code == 401
    assert fetch("abaco", "actors", headers={"Authorization": ""}, params={"token": "nope"}).code == 401


def test_service_token_in_environment_is_accepted_both_ways(
    fetch: Any, jp_serverapp: Any, jp_base_url: str, jp_http_port: int
) -> None:
    app = extension(jp_serverapp)
    token = os.environ[ENV_TOKEN]
    assert token == app.token and token != jp_serverapp.identity_provider.token
    assert os.environ[ENV_URL] == f"http://127.0.0.1:{jp_http_port}{jp_base_url}abaco"
    for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": "", "X-Tapis-Token": token}):
        response = fetch("abaco", "actors", method="POST", headers=headers, body=b"")
        assert response.code == 400  # authenticated, and the missing image is named (as Abaco does)
        assert "image" in body(response)["message"]


def test_cookie_calls_need_xsrf_for_writes(fetch: Any) -> None:
    # A token request logs the browser in: Jupyter sets its login cookie.
    first = fetch("abaco", "actors")
    jar = SimpleCookie()
    for header in first.headers.get_list("Set-Cookie"):
        jar.load(header)
    assert jar, "Jupyter set no login cookie"
    cookie = "; ".join(f"{k}={v.value}" for k, v in jar.items())
    browser = {"Authorization": "", "Cookie": cookie}
    assert fetch("abaco", "actors", headers=browser).code == 200  # reads need no XSRF
    refused = fetch("abaco", "actors", method="POST", headers=browser, body=b"{}")
    assert refused.code == 403 and "xsrf" in body(refused)["message"].lower()
    xsrf = "2|abcdef01|0123456789abcdef0123456789abcdef|1700000000"
    with_xsrf = {**browser, "Cookie": f"{cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf}
    registration = json.dumps({"image": "abaco-nb/test"})
    accepted = fetch(
        "abaco",
        "actors",
        method="POST",
        headers={**with_xsrf, "Content-Type": "application/json"},
        body=registration,
    )
    assert accepted.code == 200, accepted.body


def test_register_send_logs_and_links(fetch: Any, jp_base_url: str) -> None:
    reg = {"image": "abaco-nb/test", "name": "hello", "default_environment": {"SLEEP": "0"}}
    response = fetch(
        "abaco", "actors", method="POST", body=json.dumps(reg), headers={"Content-Type": "application/json"}
    )
    assert response.code == 200, response.body
    actor = body(response)["result"]
    assert f"{jp_base_url}abaco/actors/{actor['id']}" in json.dumps(actor["_links"])
    sent = fetch(
        "abaco",
        "v3/actors",
        actor["id"],
        "messages",
        method="POST",
        body=json.dumps({"message": "hi from jp_fetch"}),
        headers={"Content-Type": "application/json"},
    )
    assert sent.code == 200, sent.body
    eid = body(sent)["result"]["execution_id"]
    done = fetch("abaco", "actors", actor["id"], "executions", eid, params={"wait": "60"}, request_timeout=90)
    assert body(done)["result"]["status"] == "COMPLETE", done.body
    logs = body(fetch("abaco", "actors/v2", actor["id"], "executions", eid, "logs"))["result"]["logs"]
    assert "Contents of MSG: hi from jp_fetch" in logs


def test_stop_extension_closes_the_service_and_takes_back_the_environment(
    jp_serverapp: Any, jp_asyncio_loop: Any
) -> None:
    app = extension(jp_serverapp)
    assert app.service is not None and app._connection_file and os.path.exists(app._connection_file)
    assert not app.current_activity()
    jp_asyncio_loop.run_until_complete(app.stop_extension())
    assert app.service is None
    assert ENV_URL not in os.environ and ENV_TOKEN not in os.environ
    assert not os.path.exists(app._connection_file)


@pytest.fixture
def broken_db(tmp_path: Any) -> str:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database directory should be")
    return str(blocker / "abaco.db")


def test_a_service_that_cannot_start_says_why_on_every_route(
    jp_configurable_serverapp: Any, jp_asyncio_loop: Any, broken_db: str
) -> None:
    config = {
        "ServerApp": {"jpserver_extensions": {"server_ext": True}},
        "AbacoApp": {"runtime": "process", "db_path": broken_db},
    }
    app = jp_configurable_serverapp(config=config)
    ext = extension(app)
    assert ext.service is None
    from server_ext.service.rest import Request

    response = ext.backend.handle(Request("GET", "/actors"))
    assert response.status == 503 and b"not running" in response.body


def test_execution_scoped_token_reaches_only_its_own_actor(fetch: Any, jp_serverapp: Any) -> None:
    import time

    service = extension(jp_serverapp).service
    assert service is not None
    json_headers = {"Content-Type": "application/json"}
    reg = {"image": "abaco-nb/test", "default_environment": {"SLEEP": "30"}}
    actor = body(fetch("abaco", "actors", method="POST", body=json.dumps(reg), headers=json_headers))[
        "result"
    ]
    sent = fetch(
        "abaco",
        "actors",
        actor["id"],
        "messages",
        method="POST",
        body=json.dumps({"message": "x"}),
        headers=json_headers,
    )
    eid = body(sent)["result"]["execution_id"]
    deadline = time.monotonic() + 60
    while body(fetch("abaco", "actors", actor["id"], "executions", eid))["result"]["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert extension(jp_serverapp).current_activity()  # Jupyter's idle shutdown waits for it
    scoped = service.tokens.issue(actor["id"], eid, time.time() + 60)
    as_execution = {"Authorization": f"Bearer {scoped}"}
    assert fetch("abaco", "actors", actor["id"], headers=as_execution).code == 200
    refused = fetch("abaco", "actors", headers=as_execution)  # not the whole service (Abaco says 400)
    assert refused.code == 400 and "Not authorized" in body(refused)["message"]
    assert fetch("abaco", "actors", actor["id"], "executions", eid, method="DELETE").code == 200


def test_a_database_another_live_service_owns_is_proxied_not_shared(
    jp_configurable_serverapp: Any, tmp_path: Any
) -> None:
    from server_ext.proxy import Proxy
    from server_ext.service.rest import Request
    from tests.serve import start_serve

    db = tmp_path / "shared" / "abaco.db"
    peer = start_serve(tmp_path / "peer", runtime="process", token="peer-token", db=db)
    try:
        info = {"url": peer.url, "token": "peer-token", "pid": peer.proc.pid, "db": str(db)}
        (db.parent / "connection.json").write_text(json.dumps(info))
        reg = {"image": "abaco-nb/test", "name": "on-the-peer"}
        assert peer.session.post(peer.api("/actors"), json=reg).status_code == 200
        config = {
            "ServerApp": {"jpserver_extensions": {"server_ext": True}},
            "AbacoApp": {"runtime": "process", "db_path": str(db)},
        }
        ext = extension(jp_configurable_serverapp(config=config))
        assert ext.service is None and isinstance(ext.backend, Proxy)
        listed = json.loads(ext.backend.handle(Request("GET", "/actors")).body)["result"]
        assert [a["name"] for a in listed] == ["on-the-peer"]
    finally:
        peer.stop()
