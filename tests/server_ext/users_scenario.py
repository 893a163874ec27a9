"""Abaco's permission model between two users and an admin, over HTTP: one scenario, two deployments.

``run_sharing_scenario`` drives the same story against the standalone multi-user service
(test_users_standalone.py) and against the service behind a real JupyterHub (test_hub.py): A registers
and shares an actor with B at READ, then EXECUTE; B's refusals and successes at each level;
``ABACO_WORLD``; nonces across users; an alias owned by A used by B; admin routes and filtered lists.
Every refusal is Abaco's 400 ``Not authorized``; an invisible actor is absent from lists and searches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

IMAGE = "abacosamples/test"  # on the process runtime: a shell script that prints MSG and env


@dataclass
class As:
    """Requests as one user: the service's base URL and that user's token (None: no credentials)."""

    base: str
    token: str | None
    name: str

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        kwargs.setdefault("timeout", 60)
        return requests.request(method, self.base.rstrip("/") + path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == 200, (
            f"{self.name} {method} {path}: {response.status_code} {response.text}"
        )
        return response.json()["result"]

    def refused(self, method: str, path: str, **kwargs: Any) -> str:
        """Abaco's refusal: 400 with the error envelope and ``Not authorized``."""
        response = self.call(method, path, **kwargs)
        assert response.status_code == 400, (
            f"{self.name} {method} {path}: {response.status_code} {response.text}"
        )
        body = response.json()
        assert body["status"] == "error" and body["result"] is None, body
        assert "Not authorized" in body["message"], body
        return str(body["message"])

    def wait_ready(self, actor_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            actor = self.ok("GET", f"/actors/{actor_id}")
            if actor["status"] in ("READY", "ERROR") or time.monotonic() > deadline:
                assert actor["status"] == "READY", actor
                return actor
            time.sleep(0.05)

    def finished(self, actor_id: str, execution_id: str) -> dict[str, Any]:
        execution = self.ok("GET", f"/actors/{actor_id}/executions/{execution_id}?wait=60")
        assert execution["status"] in ("COMPLETE", "ERROR"), execution
        return execution

    def finished_with(self, nonce: str, actor_id: str, execution_id: str) -> dict[str, Any]:
        """An execution read back with a nonce (the READ it needs is covered by EXECUTE)."""
        execution = self.ok("GET", f"/actors/{actor_id}/executions/{execution_id}?wait=60&x-nonce={nonce}")
        assert execution["status"] in ("COMPLETE", "ERROR"), execution
        return execution


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in records}


def run_sharing_scenario(a: As, b: As, admin: As, anonymous: As) -> dict[str, str]:
    """The whole story; returns the ids it made (``x``, ``y``) for follow-up checks."""
    x = a.ok(
        "POST", "/actors", json={"image": IMAGE, "name": "shared", "default_environment": {"SLEEP": "0"}}
    )
    y = a.ok(
        "POST", "/actors", json={"image": IMAGE, "name": "private", "default_environment": {"SLEEP": "0"}}
    )
    assert x["owner"] == a.name and x["token"] == "false"  # Abaco's default token
    xid, yid = x["id"], y["id"]
    a.wait_ready(xid)
    a.wait_ready(yid)

    # Without READ: invisible in lists and searches; every route on it is Abaco's 400.
    assert {xid, yid} <= ids(a.ok("GET", "/actors"))
    assert not {xid, yid} & ids(b.ok("GET", "/actors"))
    assert not {xid, yid} & ids(b.ok("GET", "/actors/search/actors")["search"])
    assert not {xid, yid} & ids(b.ok("GET", "/actors?name=shared")["search"])
    for method, path in [
        ("GET", f"/actors/{xid}"),
        ("POST", f"/actors/{xid}/messages"),
        ("GET", f"/actors/{xid}/executions"),
        ("GET", f"/actors/{xid}/permissions"),
        ("GET", f"/actors/{xid}/workers"),
        ("DELETE", f"/actors/{xid}"),
        ("GET", f"/actors/{xid}/nonces"),
        ("PUT", f"/actors/{xid}"),
    ]:
        kwargs: dict[str, Any] = {"json": {"image": IMAGE}} if method in ("POST", "PUT") else {}
        b.refused(method, path, **kwargs)
    assert b.refused("GET", f"/actors/{xid}").endswith("you do not have access to this actor.")

    # READ: visible, readable; not EXECUTE, not UPDATE.
    grants = a.ok("POST", f"/actors/{xid}/permissions", json={"user": b.name, "level": "READ"})
    assert grants == {a.name: "UPDATE", b.name: "READ"}
    assert b.ok("GET", f"/actors/{xid}")["id"] == xid
    assert xid in ids(b.ok("GET", "/actors")) and yid not in ids(b.ok("GET", "/actors"))
    assert xid in ids(b.ok("GET", "/actors/search/actors")["search"])
    assert b.ok("GET", f"/actors/{xid}/permissions")[b.name] == "READ"
    b.ok("GET", f"/actors/{xid}/executions")
    b.ok("GET", f"/actors/{xid}/workers")
    b.refused("POST", f"/actors/{xid}/messages", json={"message": "from b"})
    b.refused("PUT", f"/actors/{xid}", json={"image": IMAGE})
    b.refused("POST", f"/actors/{xid}/permissions", json={"user": b.name, "level": "UPDATE"})
    b.refused("POST", f"/actors/{xid}/nonces", json={"level": "READ"})
    b.refused("DELETE", f"/actors/{xid}")

    # EXECUTE: messages run as B (executor and _abaco_username), still no UPDATE.
    a.ok("POST", f"/actors/{xid}/permissions", json={"user": b.name, "level": "EXECUTE"})
    sent = b.ok("POST", f"/actors/{xid}/messages", json={"message": "from b"})
    done = b.finished(xid, sent["execution_id"])
    assert done["executor"] == b.name and done["status"] == "COMPLETE", done
    logs = b.ok("GET", f"/actors/{xid}/executions/{sent['execution_id']}/logs")["logs"]
    assert f"_abaco_username={b.name}" in logs and "Contents of MSG: from b" in logs, logs
    assert sent["execution_id"] in {e["id"] for e in a.ok("GET", "/actors/search/executions")["search"]}
    b.refused("PUT", f"/actors/{xid}", json={"image": IMAGE})
    b.refused("POST", f"/actors/{xid}/state", json={"k": 1})
    b.refused("DELETE", f"/actors/{xid}/messages")
    b.refused("POST", f"/actors/{xid}/workers", json={"num": 2})  # admins only, whatever the level

    # B's executions of A's actor are in B's searches; A's private actor's are not.
    private = a.ok("POST", f"/actors/{yid}/messages", json={"message": "private"})
    a.finished(yid, private["execution_id"])
    b_executions = {e["id"] for e in b.ok("GET", "/actors/search/executions")["search"]}
    assert sent["execution_id"] in b_executions and private["execution_id"] not in b_executions
    assert yid not in {w["actor_id"] for w in b.ok("GET", "/actors/search/workers")["search"]}

    # ABACO_WORLD: a grant to everyone.
    a.ok("POST", f"/actors/{yid}/permissions", json={"user": "ABACO_WORLD", "level": "READ"})
    assert b.ok("GET", f"/actors/{yid}")["id"] == yid
    b.refused("POST", f"/actors/{yid}/messages", json={"message": "no"})
    a.ok("POST", f"/actors/{yid}/permissions", json={"user": "ABACO_WORLD", "level": "NONE"})
    b.refused("GET", f"/actors/{yid}")

    # Nonces: act as their owner, at the nonce's level; never more than the owner holds now.
    nonce = a.ok("POST", f"/actors/{xid}/nonces", json={"level": "EXECUTE"})["id"]
    by_nonce = anonymous.ok("POST", f"/actors/{xid}/messages?x-nonce={nonce}", json={"message": "nonce"})
    assert anonymous.finished_with(nonce, xid, by_nonce["execution_id"])["executor"] == a.name
    anonymous.refused("GET", f"/actors/{yid}?x-nonce={nonce}")  # a nonce opens its own actor only
    a.ok("POST", f"/actors/{xid}/permissions", json={"user": b.name, "level": "UPDATE"})
    b_nonce = b.ok("POST", f"/actors/{xid}/nonces", json={"level": "EXECUTE"})["id"]
    anonymous.ok("GET", f"/actors/{xid}?x-nonce={b_nonce}")
    a.ok("POST", f"/actors/{xid}/permissions", json={"user": b.name, "level": "READ"})  # B loses EXECUTE
    anonymous.refused("POST", f"/actors/{xid}/messages?x-nonce={b_nonce}", json={"message": "no"})
    anonymous.ok("GET", f"/actors/{xid}?x-nonce={b_nonce}")  # still READ, as its owner is

    # An alias owned by A, used by B on the actor routes (alias permissions are the alias's own).
    a.ok("POST", f"/actors/{xid}/permissions", json={"user": b.name, "level": "EXECUTE"})
    alias = f"team-{xid.lower()}"
    assert a.ok("POST", "/actors/aliases", json={"alias": alias, "actor_id": xid})["owner"] == a.name
    via_alias = b.ok("POST", f"/actors/{alias}/messages", json={"message": "via alias"})
    assert b.finished(xid, via_alias["execution_id"])["executor"] == b.name
    b.refused("GET", f"/actors/aliases/{alias}")
    assert alias not in {x["alias"] for x in b.ok("GET", "/actors/aliases")}
    b.refused("POST", "/actors/aliases", json={"alias": f"{alias}-b", "actor_id": yid})  # no UPDATE on Y
    a.ok("POST", f"/actors/aliases/{alias}/permissions", json={"user": b.name, "level": "READ"})
    assert b.ok("GET", f"/actors/aliases/{alias}")["actor_id"] == xid
    b.refused("DELETE", f"/actors/aliases/{alias}")

    # Admins: every actor, the admin routes; others get Abaco's refusal there. Utilization is filtered.
    assert {xid, yid} <= ids(admin.ok("GET", "/actors"))
    assert admin.ok("GET", f"/actors/{yid}")["owner"] == a.name
    assert {xid, yid} <= {r["id"] for r in admin.ok("GET", "/actors/admin")}
    for path in ("/actors/admin", "/actors/admin/workers", "/actors/admin/executions"):
        b.refused("GET", path)
    assert (
        b.ok("GET", "/actors/utilization")["totalActors"]
        < admin.ok("GET", "/actors/utilization")["totalActors"]
    )
    admin.ok("POST", f"/actors/{xid}/workers", json={"num": 1})

    # Without any credentials: 401.
    assert anonymous.call("GET", "/actors").status_code == 401
    return {"x": xid, "y": yid, "alias": alias}
