"""``?x-nonce=`` inside Jupyter: the extension lets a request with a nonce and no credentials through
(no Jupyter token, cookie or XSRF), embedded (our API checks the nonce) and in proxy mode (forwarded
without the remote token, so the remote checks it and the caller gets no more than the nonce allows).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures: jp_fetch, jp_serverapp, ...)
from tornado.httpclient import HTTPResponse

from tests.serve import Served, start_serve
from tests.server_ext.jupyter_fetch import blocking_fetch

REMOTE_TOKEN = "remote-secret-token"
QUICK = f"local:{sys.executable} -c 'print(1)'"
NO_CREDENTIALS = {"Authorization": ""}  # jp_fetch sends Jupyter's token unless told otherwise


@pytest.fixture(scope="module")
def remote(tmp_path_factory: Any) -> Any:
    served = start_serve(tmp_path_factory.mktemp("nonce-remote"), runtime="process", token=REMOTE_TOKEN)
    yield served
    served.stop()


@pytest.fixture(params=["embedded", "proxy"])
def jp_server_config(request: Any, remote: Served, tmp_path: Any) -> dict[str, Any]:
    if request.param == "proxy":
        abaco = {"remote_url": remote.url, "remote_api": "v2", "remote_token": REMOTE_TOKEN}
    else:
        abaco = {"runtime": "process", "db_path": str(tmp_path / "abaco" / "abaco.db")}
    return {"ServerApp": {"jpserver_extensions": {"server_ext": True}}, "AbacoApp": abaco}


@pytest.fixture
def fetch(jp_fetch: Any, jp_asyncio_loop: Any) -> Any:
    return blocking_fetch(jp_fetch, jp_asyncio_loop)


def answer(response: HTTPResponse) -> dict[str, Any]:
    return dict(json.loads(response.body))


def test_a_nonce_alone_is_let_through_and_checked(fetch: Any) -> None:
    aid = answer(fetch("abaco", "actors", method="POST", body={"image": QUICK}))["result"]["id"]
    for _ in range(300):
        if answer(fetch("abaco", "actors", aid))["result"]["status"] != "SUBMITTED":
            break
        time.sleep(0.1)
    read = answer(
        fetch("abaco", "actors", aid, "nonces", method="POST", body={"level": "READ", "max_uses": 2})
    )
    run = answer(fetch("abaco", "actors", aid, "nonces", method="POST"))
    read_id, run_id = read["result"]["id"], run["result"]["id"]

    def with_nonce(nonce: str, *path: str, **kwargs: Any) -> HTTPResponse:
        return fetch("abaco", *path, headers=dict(NO_CREDENTIALS), params={"x-nonce": nonce}, **kwargs)

    assert answer(with_nonce(read_id, "actors", aid))["result"]["id"] == aid
    refused = with_nonce(read_id, "actors", aid, method="DELETE")  # READ only; no remote token was added
    assert refused.code == 400 and answer(refused)["message"].startswith("Not authorized -- ")
    sent = with_nonce(run_id, "actors", aid, "messages", method="POST", body={"message": "by nonce"})
    assert sent.code == 200, sent.body  # a POST with no XSRF token: the nonce is the credential
    assert answer(with_nonce("LOCAL_nope", "actors", aid))["message"] == "Nonce not found."
    assert fetch("abaco", "actors", aid, headers=dict(NO_CREDENTIALS)).code == 401
    used = answer(fetch("abaco", "actors", aid, "nonces", read_id))["result"]
    assert used["current_uses"] == 1  # the refused DELETE used nothing
    fetch("abaco", "actors", aid, method="DELETE")
