"""Nonces, aliases and permissions through the real clients: agavepy 0.9.5 and tapipy, unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server_ext.serve_fixture import Served, python_command

from .conftest import run_driver

pytestmark = pytest.mark.clients

QUICK = python_command('print("hi")')


def check_nonce(nonce: dict[str, Any], actor_id: str, level: str, max_uses: int) -> None:
    assert nonce["id"].startswith("LOCAL_") and nonce["actor_id"] == actor_id
    assert (nonce["level"], nonce["max_uses"], nonce["remaining_uses"], nonce["current_uses"]) == (
        level,
        max_uses,
        max_uses,
        0,
    )


def test_agavepy_nonces_aliases_permissions(abaco_serve: Served) -> None:
    out = run_driver("agavepy", "agave_access.py", abaco_serve, QUICK)
    aid = out["actor_id"]
    assert out["nonces_before"] == []
    check_nonce(out["nonce_default"], aid, "EXECUTE", -1)
    check_nonce(out["nonce_limited"], aid, "READ", 2)  # sent as {"maxUses": 2, "level": "READ"}
    assert [n["id"] for n in out["nonces_listed"]] == [out["nonce_default"]["id"], out["nonce_limited"]["id"]]
    assert out["nonce_got"]["id"] == out["nonce_limited"]["id"]
    assert out["nonce_deleted"] is None
    assert out["nonce_gone"]["status"] == 400 and out["nonce_gone"]["message"] == "Nonce not found."

    assert out["alias_added"]["alias"] == "agave-alias" and out["alias_added"]["actor_id"] == aid
    assert out["alias_duplicate"]["status"] == 400 and "already exists" in out["alias_duplicate"]["message"]
    assert "agave-alias" in [a["alias"] for a in out["aliases_listed"]]
    assert out["alias_got"]["actor_id"] == aid
    assert out["actor_by_alias"]["id"] == aid and out["actor_by_alias"]["_links"]["self"].endswith(aid)
    assert out["alias_deleted"] is None and out["alias_gone"]["status"] == 404

    assert out["permissions"] == {out["actor_by_alias"]["owner"]: "UPDATE"}
    assert out["permissions_updated"]["testshareuser"] == "READ" and len(out["permissions_updated"]) == 2

    # the client with no token: its nonce ran the actor once, then was spent; a READ nonce reads
    assert out["nonce_execution"]["status"] == "COMPLETE"
    assert out["nonce_spent"]["status"] == 400 and "no remaining uses" in out["nonce_spent"]["message"]
    assert out["nonce_read"]["id"] == aid


def test_tapipy_nonces_aliases_permissions(abaco_serve: Served) -> None:
    out = run_driver("tapipy", "tapipy_access.py", abaco_serve, QUICK)
    aid, other = out["actor_id"], out["other_id"]
    assert out["nonces_before"] == []
    check_nonce(out["nonce_created"], aid, "READ", 3)
    assert [n["id"] for n in out["nonces_listed"]] == [out["nonce_created"]["id"]]
    assert out["nonce_got"]["id"] == out["nonce_created"]["id"]
    assert out["nonce_deleted"]["status"] == "success"  # result: null -> tapipy hands back the envelope
    assert out["nonce_gone"] == {"error": "BadRequestError", "message": "Nonce not found.", "status": 400}

    assert out["alias_created"]["alias"] == "tapipy-alias" and out["alias_created"]["actor_id"] == aid
    assert out["alias_duplicate"]["status"] == 400 and "already exists" in out["alias_duplicate"]["message"]
    assert (
        out["alias_forbidden"]["status"] == 400
        and "forbidden characters" in out["alias_forbidden"]["message"]
    )
    assert "tapipy-alias" in [a["alias"] for a in out["aliases_listed"]]
    assert out["alias_got"]["actor_id"] == aid and out["actor_by_alias"]["id"] == aid
    assert out["alias_moved"]["actor_id"] == other and out["actor_by_moved_alias"]["id"] == other
    assert out["alias_deleted"]["status"] == "success"
    assert out["alias_gone"]["status"] == 404 and out["alias_gone"]["error"] == "NotFoundError"

    owner = out["actor_by_alias"]["owner"]
    assert out["permissions"] == {owner: "UPDATE"}
    assert out["permissions_updated"] == {owner: "UPDATE", "tester": "EXECUTE"}
