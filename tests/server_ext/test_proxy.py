"""Proxy mode end to end: Jupyter (in process, ``jp_fetch``) forwarding to a second, standalone
``abaco-nb serve`` that plays the remote Abaco (v2, ``Authorization: Bearer``) or Tapis (v3,
``X-Tapis-Token``) — our standalone accepts both headers, so one remote serves both styles.
"""

from __future__ import annotations

import json
import shlex
import socket
import sys
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures: jp_fetch, jp_serverapp, ...)
from tornado.httpclient import HTTPResponse

from server_ext.proxy import Proxy, RemoteConfig, remote_path
from tests.serve import Served, start_serve, wait_ready
from tests.server_ext.jupyter_fetch import blocking_fetch

REMOTE_TOKEN = "remote-secret-token"
REVERSER = "from abaco_nb.actors import get_binary_message as g, send_bytes_result as s; s(g()[::-1])"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: Any) -> Any:
    served = start_serve(tmp_path_factory.mktemp("remote"), runtime="process", token=REMOTE_TOKEN)
    yield served
    served.stop()


@pytest.fixture(params=["v2", "v3"])
def remote_api(request: Any) -> str:
    return str(request.param)


@pytest.fixture
def jp_server_config(remote: Served, remote_api: str, monkeypatch: Any) -> dict[str, Any]:
    proxy: dict[str, Any] = {"remote_url": remote.url, "remote_api": remote_api}
    if remote_api == "v3":  # the token from the environment ...
        monkeypatch.setenv("ABACO_NB_REMOTE_TOKEN", REMOTE_TOKEN)
    else:  # ... or from config
        proxy["remote_token"] = REMOTE_TOKEN
    return {"ServerApp": {"jpserver_extensions": {"server_ext": True}}, "AbacoApp": proxy}


@pytest.fixture
def fetch(jp_fetch: Any, jp_asyncio_loop: Any) -> Any:
    return blocking_fetch(jp_fetch, jp_asyncio_loop)


def result(response: HTTPResponse) -> Any:
    assert response.code == 200, response.body
    return json.loads(response.body)["result"]


def test_kernel_side_routes_reach_the_remote(fetch: Any, remote: Served, remote_api: str) -> None:
    actor = result(
        fetch(
            "abaco",
            "actors",
            method="POST",
            body={
                "image": "abaco-nb/test",
                "name": f"proxied-{remote_api}",
                "default_environment": {"SLEEP": "0"},
            },
        )
    )
    on_remote = remote.session.get(remote.api(f"/actors/{actor['id']}")).json()["result"]
    assert on_remote["name"] == f"proxied-{remote_api}"
    wait_ready(remote, actor["id"])
    receipt = result(
        fetch(
            "abaco",
            "v3/actors",
            actor["id"],
            "messages",
            method="POST",
            body={"message": "through the proxy"},
        )
    )
    eid = receipt["execution_id"]
    done = result(
        fetch("abaco", "actors/v2", actor["id"], "executions", eid, params={"wait": "60"}, request_timeout=90)
    )
    assert done["status"] == "COMPLETE"
    logs = result(fetch("abaco", "actors", actor["id"], "executions", eid, "logs"))["logs"]
    assert "Contents of MSG: through the proxy" in logs


def test_binary_message_and_result_bytes_pass_through_unchanged(fetch: Any, remote: Served) -> None:
    image = "local:" + shlex.join([sys.executable, "-c", REVERSER])
    actor = result(fetch("abaco", "actors", method="POST", body={"image": image, "name": "reverser"}))
    wait_ready(remote, actor["id"])
    payload = bytes(range(256)) * 64 + b"\x00\xff\r\n"
    receipt = result(
        fetch(
            "abaco",
            "actors",
            actor["id"],
            "messages",
            method="POST",
            body=payload,
            headers={"Content-Type": "application/octet-stream"},
        )
    )
    eid = receipt["execution_id"]
    done = result(
        fetch("abaco", "actors", actor["id"], "executions", eid, params={"wait": "60"}, request_timeout=90)
    )
    assert done["status"] == "COMPLETE", done
    got = fetch("abaco", "actors", actor["id"], "executions", eid, "results")
    assert got.code == 200
    assert got.body == payload[::-1]


def test_remote_errors_come_back_in_their_envelope(fetch: Any, remote: Served) -> None:
    direct = remote.session.get(remote.api("/actors/no-such-actor"))
    proxied = fetch("abaco", "actors", "no-such-actor")
    assert proxied.code == direct.status_code == 404
    assert json.loads(proxied.body)["message"] == direct.json()["message"]
    bad = fetch("abaco", "actors", method="POST", body={"image": ""})
    assert bad.code == 400 and json.loads(bad.body)["status"] == "error"


def test_proxy_refuses_callers_without_credentials(fetch: Any) -> None:
    for method, path in (("GET", "actors"), ("POST", "actors"), ("GET", "v3/actors/x/executions")):
        kwargs = {"body": b""} if method == "POST" else {}
        assert fetch("abaco", path, method=method, headers={"Authorization": ""}, **kwargs).code == 401


def test_jupyter_token_is_not_forwarded(fetch: Any, jp_serverapp: Any, remote: Served) -> None:
    # Authenticated to Jupyter by ?token= only: the remote still sees only the remote token.
    token = jp_serverapp.identity_provider.token
    response = fetch("abaco", "actors", headers={"Authorization": ""}, params={"token": token})
    assert response.code == 200


# -- the translation itself ------------------------------------------------------------------------


def test_prefixes_map_onto_the_remote_prefix() -> None:
    assert remote_path("/actors", "/actors/v2") == "/actors/v2"
    assert remote_path("/v3/actors/a1/messages", "/actors/v2") == "/actors/v2/a1/messages"
    assert (
        remote_path("/actors/v2//a1/executions/e1/results", "/v3/actors")
        == "/v3/actors/a1/executions/e1/results"
    )
    assert RemoteConfig("https://tacc.tapis.io/v3/actors/", api="v3").url == "https://tacc.tapis.io"
    assert RemoteConfig("https://api.tacc.utexas.edu", api="v2").prefix == "/actors/v2"


def test_auth_headers_by_api_style() -> None:
    assert Proxy(RemoteConfig("http://x", token="t", api="v2")).auth_headers() == {
        "Authorization": "Bearer t"
    }
    assert Proxy(RemoteConfig("http://x", token="t", api="v3")).auth_headers() == {"X-Tapis-Token": "t"}
    with pytest.raises(ValueError, match="remote_api"):
        RemoteConfig("http://x", api="v4")


def test_unreachable_remote_is_a_502_with_the_envelope() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    from server_ext.service.rest import Request

    response = Proxy(RemoteConfig(f"http://127.0.0.1:{port}", token="t")).handle(Request("GET", "/actors"))
    assert response.status == 502
    data = json.loads(response.body)
    assert data["status"] == "error" and "Cannot reach the remote Abaco" in data["message"]
