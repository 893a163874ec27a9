"""Nonces and execution tokens never grow, against a real ``abaco-nb serve`` (issue 9, "Privilege").

The attack these stop: a READ nonce lists the actor's nonces and learns an UPDATE nonce's id; that one
mints an unlimited nonce; that one PUTs ``image: "local:<command>"`` (a command on the host) or
``privileged: true`` (the Docker socket). Each step is refused here, and what a nonce may still do
(its level's routes, a PUT that keeps what runs) keeps working.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests

from tests.server_ext import serve_fixture
from tests.server_ext.serve_fixture import Served, ok, python_command, refused

abaco_serve = serve_fixture.abaco_serve

QUICK = python_command('print("ok")')
TOKEN_PRINTER = python_command(
    'import os, time; print("TOKEN=" + os.environ["_abaco_access_token"], flush=True); time.sleep(120)'
)
GROW = "cannot list or create nonces or change permissions"


def nonce(served: Served, aid: str, level: str, max_uses: int = -1) -> str:
    body = {"level": level, "max_uses": max_uses}
    return str(ok(served.request("POST", f"/actors/{aid}/nonces", json=body))["id"])


def as_nonce(served: Served, method: str, path: str, nid: str, **kwargs: Any) -> requests.Response:
    sep = "&" if "?" in path else "?"
    return served.request(method, f"{path}{sep}x-nonce={nid}", auth=False, **kwargs)


@pytest.fixture
def actor(abaco_serve: Served) -> Any:
    actor = abaco_serve.register({"image": QUICK, "max_workers": 2, "mem_limit": "256m"})
    yield actor
    abaco_serve.request("DELETE", f"/actors/{actor['id']}")


def test_a_read_nonce_cannot_learn_other_nonces(abaco_serve: Served, actor: dict[str, Any]) -> None:
    aid = actor["id"]
    update = nonce(abaco_serve, aid, "UPDATE", 1)
    read = nonce(abaco_serve, aid, "READ")
    for path in (f"/actors/{aid}/nonces", f"/v3/actors/{aid}/nonces", f"/actors/{aid}/nonces/{update}"):
        message = refused(as_nonce(abaco_serve, "GET", path, read))
        assert message.startswith("Not authorized -- "), message
    # its own nonce it may read (its remaining uses); the owner still sees every id
    assert ok(as_nonce(abaco_serve, "GET", f"/actors/{aid}/nonces/{read}", read))["id"] == read
    listed = ok(abaco_serve.request("GET", f"/actors/{aid}/nonces"))
    assert {update, read} <= {n["id"] for n in listed}


def test_an_update_nonce_cannot_mint_nonces_or_grant(abaco_serve: Served, actor: dict[str, Any]) -> None:
    aid = actor["id"]
    update = nonce(abaco_serve, aid, "UPDATE")
    before = len(ok(abaco_serve.request("GET", f"/actors/{aid}/nonces")))
    for body in ({"level": "UPDATE", "max_uses": -1}, {"level": "READ", "max_uses": 1}, {}):
        assert GROW in refused(as_nonce(abaco_serve, "POST", f"/actors/{aid}/nonces", update, json=body))
    grant = {"user": "mallory", "level": "UPDATE"}
    assert GROW in refused(as_nonce(abaco_serve, "POST", f"/actors/{aid}/permissions", update, json=grant))
    assert len(ok(abaco_serve.request("GET", f"/actors/{aid}/nonces"))) == before
    assert "mallory" not in ok(abaco_serve.request("GET", f"/actors/{aid}/permissions"))
    # an alias nonce cannot list or mint the alias's nonces either
    alias = f"priv-{aid.lower()}"
    ok(abaco_serve.request("POST", "/actors/aliases", json={"alias": alias, "actor_id": aid}))
    alias_nonce = ok(abaco_serve.request("POST", f"/actors/aliases/{alias}/nonces", json={"level": "READ"}))
    path = f"/actors/aliases/{alias}/nonces"
    assert GROW in refused(as_nonce(abaco_serve, "GET", path, alias_nonce["id"]))
    ok(abaco_serve.request("DELETE", f"/actors/aliases/{alias}"))


@pytest.mark.parametrize(
    "change",
    [
        {"image": "local:/bin/sh -c id"},
        {"image": "abaco-nb/test"},
        {"privileged": True},
        {"token": True},
        {"max_workers": 6},
        {"mem_limit": "64g"},
        {"max_cpus": 64},
        {"max_run_time": 999999},
        {"mounts": [{"host_path": "/", "container_path": "/host", "mode": "rw"}]},
    ],
    ids=lambda change: next(iter(change)),
)
def test_an_update_nonce_cannot_change_what_runs_or_its_limits(
    abaco_serve: Served, actor: dict[str, Any], change: dict[str, Any]
) -> None:
    aid = actor["id"]
    update = nonce(abaco_serve, aid, "UPDATE")
    field = next(iter(change))
    body = {"image": actor["image"], **change}
    message = refused(as_nonce(abaco_serve, "PUT", f"/actors/{aid}", update, json=body))
    assert message.startswith("Not authorized -- ") and field in message, message
    now = ok(abaco_serve.request("GET", f"/actors/{aid}"))
    assert now["image"] == actor["image"] and now["privileged"] is False and now["max_workers"] == 2


def test_an_update_nonce_put_keeps_the_protected_fields(abaco_serve: Served, actor: dict[str, Any]) -> None:
    """A PUT is a full replacement: fields the nonce leaves out keep their values, they do not reset."""
    aid = actor["id"]
    update = nonce(abaco_serve, aid, "UPDATE")
    put = {"image": actor["image"], "description": "changed through a nonce"}
    updated = ok(as_nonce(abaco_serve, "PUT", f"/actors/{aid}", update, json=put))
    assert updated["description"] == "changed through a nonce"
    assert updated["max_workers"] == 2 and updated["mem_limit"] == "256m" and updated["image"] == QUICK


def test_local_images_and_privileged_need_the_service_token(abaco_serve: Served) -> None:
    """Nobody but the service token registers ``local:``; ``privileged`` needs --allow-privileged too."""
    message = refused(
        abaco_serve.request("POST", "/actors", json={"image": "abaco-nb/test", "privileged": True})
    )
    assert "privileged" in message and "--allow-privileged" in message and "root on the host" in message
    actor = abaco_serve.register({"image": "abaco-nb/test"})
    put = {"image": "abaco-nb/test", "privileged": True}
    assert "--allow-privileged" in refused(abaco_serve.request("PUT", f"/actors/{actor['id']}", json=put))
    assert ok(abaco_serve.request("GET", f"/actors/{actor['id']}"))["privileged"] is False
    abaco_serve.request("DELETE", f"/actors/{actor['id']}")


def test_nonce_ids_are_random_and_long(abaco_serve: Served, actor: dict[str, Any]) -> None:
    """At least 128 bits from a CSPRNG: no two share a prefix the way timestamp-derived ids did."""
    ids = [nonce(abaco_serve, actor["id"], "READ") for _ in range(8)]
    suffixes = [i.split("_", 1)[1] for i in ids]
    assert all(i.startswith("LOCAL_") for i in ids)
    assert all(len(s) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", s) for s in suffixes)  # 22 × 6 bits
    assert len({s[:6] for s in suffixes}) == len(suffixes)


def test_an_execution_token_cannot_reach_nonces_or_permissions(abaco_serve: Served) -> None:
    actor = abaco_serve.register({"image": TOKEN_PRINTER, "token": True})
    aid = actor["id"]
    eid = ok(abaco_serve.request("POST", f"/actors/{aid}/messages", json={"message": "go"}))["execution_id"]
    deadline, token = time.monotonic() + 30, None
    while token is None and time.monotonic() < deadline:
        logs = ok(abaco_serve.request("GET", f"/actors/{aid}/executions/{eid}/logs"))["logs"]
        found = re.search(r"^TOKEN=(\S+)$", logs, re.M)
        token = found.group(1) if found else None
        time.sleep(0.1)
    assert token, "the execution never printed its token"
    headers = {"Authorization": f"Bearer {token}"}
    for method, path, body in [
        ("GET", f"/actors/{aid}/nonces", None),
        ("POST", f"/actors/{aid}/nonces", {"level": "UPDATE"}),
        ("POST", f"/actors/{aid}/permissions", {"user": "mallory", "level": "UPDATE"}),
        ("PUT", f"/actors/{aid}", {"image": "local:/bin/id"}),
    ]:
        resp = abaco_serve.request(method, path, auth=False, headers=headers, json=body)
        assert refused(resp).startswith("Not authorized -- "), (method, path)
    assert ok(abaco_serve.request("GET", f"/actors/{aid}/nonces")) == []
    abaco_serve.request("DELETE", f"/actors/{aid}")
