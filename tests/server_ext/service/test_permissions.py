"""Per-user permissions: the pure rules (permissions.py, users.py), then the API in-process.

The in-process part drives ``Api.handle`` on a multi-user ``Service`` that is never started (no
dispatcher: messages stay SUBMITTED), so the execution-token and nonce rules are checked exactly,
without sockets: a token acts as the user who sent its message, on its own actor only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server_ext.service import permissions, users
from server_ext.service.api import Api
from server_ext.service.errors import AbacoError
from server_ext.service.ids import now
from server_ext.service.permissions import ADMIN, EXECUTE, NONE, READ, UPDATE, Caller
from server_ext.service.rest import Principal, Request
from server_ext.service.service import Service
from server_ext.service.settings import ServiceConfig
from server_ext.service.tokens import Scope

ALICE, BOB, ROOT = Caller("alice"), Caller("bob"), Caller("root", admin=True)


@pytest.mark.parametrize(
    ("caller", "grants", "level"),
    [
        (ALICE, {}, UPDATE),  # the owner
        (BOB, {}, NONE),
        (BOB, {"bob": READ}, READ),
        (BOB, {"ABACO_WORLD": EXECUTE}, EXECUTE),
        (BOB, {"bob": UPDATE, "ABACO_WORLD": READ}, UPDATE),  # the higher of the two
        (BOB, {"bob": NONE, "ABACO_WORLD": READ}, READ),
        (ALICE, {"alice": READ}, READ),  # a later grant changes even the owner's level (Abaco)
        (ROOT, {}, UPDATE),  # admins pass every check
    ],
)
def test_level_of(caller: Caller, grants: dict[str, str], level: str) -> None:
    assert permissions.level_of(caller, "alice", grants) == level


def test_check_refuses_with_abacos_message() -> None:
    assert permissions.check(BOB, "alice", {"bob": EXECUTE}, READ, "actor") == EXECUTE
    with pytest.raises(AbacoError) as refused:
        permissions.check(BOB, "alice", {"bob": READ}, EXECUTE, "actor")
    assert refused.value.status == 400
    assert refused.value.message == "Not authorized -- you do not have access to this actor."
    with pytest.raises(AbacoError, match="for admins"):
        permissions.check(ALICE, "alice", {}, ADMIN, "actor")


@pytest.mark.parametrize(
    ("operation", "method", "path", "needed"),
    [
        ("get_actor", "GET", "/actors/x", READ),
        ("send_message", "POST", "/actors/x/messages", EXECUTE),
        ("update_actor", "PUT", "/actors/x", UPDATE),
        ("wait_executions", "POST", "/actors/x/executions/wait", READ),
        ("create_nonce", "POST", "/actors/x/nonces", UPDATE),
        ("get_alias", "GET", "/actors/aliases/a", READ),
        ("delete_alias", "DELETE", "/actors/aliases/a", UPDATE),
        ("update_config", "PUT", "/actors/configs/c", UPDATE),
    ],
)
def test_needed_levels(operation: str, method: str, path: str, needed: str) -> None:
    assert permissions.needed(permissions.rule_for(operation), method, path) == needed


def test_rules_name_the_admin_only_operations() -> None:
    assert {n for n, r in permissions.RULES.items() if r.on == "admin"} == {
        "add_workers",
        "admin_actors",
        "admin_workers",
        "admin_executions",
    }


def test_visible_and_nonce_level() -> None:
    owners = {"x": "alice", "y": "alice", "z": "bob"}
    grants = {"x": {"bob": READ}, "y": {"ABACO_WORLD": NONE}}
    assert permissions.visible(BOB, owners, grants) == {"x", "z"}
    assert permissions.visible(ROOT, owners, {}) == {"x", "y", "z"}
    assert permissions.nonce_level(EXECUTE, READ) == READ  # never more than its owner holds now
    assert permissions.nonce_level(READ, UPDATE) == READ


def test_user_names_and_tokens() -> None:
    assert users.check_name("alice.b@x-1") == "alice.b@x-1"
    for bad in ("", "bad name", "ABACO_WORLD", "cron", "x" * 65, "-lead"):
        with pytest.raises(AbacoError):
            users.check_name(bad)
    token = users.new_token()
    assert token.startswith(users.TOKEN_PREFIX) and len(token) > 40
    assert users.hash_token(token) == users.hash_token(token) != users.hash_token(users.new_token())
    assert token not in json.dumps(users.User("a", token_hash=users.hash_token(token)).display())


# -- the API in-process -----------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    service = Service(ServiceConfig(db_path=str(tmp_path / "abaco.db"), runtime="process", multi_user=True))
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        service.users.add(name, admin=admin)
    yield Api(service)
    service.close()


def call(api: Api, who: str | Principal, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    principal = who if isinstance(who, Principal) else Principal(who, admin=who == "root", host=False)
    data = json.dumps(body).encode() if body is not None else b""
    request = Request(
        method, path, headers={"Content-Type": "application/json"}, body=data, principal=principal
    )
    response = api.handle(request)
    answer = json.loads(response.body)
    return response.status, answer["result"] if response.status == 200 else answer["message"]


def test_execution_token_acts_as_its_sender_on_its_actor_only(api: Api) -> None:
    service = api.service
    x = call(api, "alice", "POST", "/actors", {"image": "abacosamples/test", "stateless": False})[1]["id"]
    y = call(api, "alice", "POST", "/actors", {"image": "abacosamples/test"})[1]["id"]
    assert (
        call(api, "alice", "POST", f"/actors/{x}/permissions", {"user": "bob", "level": "EXECUTE"})[0] == 200
    )
    assert (
        call(api, "alice", "POST", f"/actors/{y}/permissions", {"user": "bob", "level": "UPDATE"})[0] == 200
    )
    by_bob = call(api, "bob", "POST", f"/actors/{x}/messages", {"m": 1})[1]["execution_id"]
    by_alice = call(api, "alice", "POST", f"/actors/{x}/messages", {"m": 2})[1]["execution_id"]
    assert service.store.get_execution(by_bob).executor == "bob"

    def token(execution_id: str) -> Principal:
        return Principal(service.config.username, scope=Scope(x, execution_id, now() + 60))

    bobs = token(by_bob)
    assert call(api, bobs, "GET", f"/actors/{x}")[0] == 200
    assert call(api, bobs, "POST", f"/actors/{x}/messages", {"again": True})[0] == 200  # bob's EXECUTE
    queued = service.store.list_executions(x)[-1]
    assert queued.executor == "bob"  # a message from bob's execution is bob's
    status, message = call(api, bobs, "POST", f"/actors/{x}/state", {"s": 1})
    assert (status, message) == (
        400,
        "Not authorized -- you do not have access to this actor.",
    )  # bob lacks UPDATE
    assert call(api, bobs, "GET", f"/actors/{y}")[0] == 400  # bob has UPDATE on y, his token none
    assert call(api, bobs, "GET", "/actors")[0] == 400
    alices = token(by_alice)
    assert call(api, alices, "POST", f"/actors/{x}/state", {"s": 1})[0] == 200  # alice owns x


def test_nonce_acts_as_its_owner_at_its_level(api: Api) -> None:
    x = call(api, "alice", "POST", "/actors", {"image": "abacosamples/test"})[1]["id"]
    call(api, "alice", "POST", f"/actors/{x}/permissions", {"user": "bob", "level": "UPDATE"})
    nonce = call(api, "bob", "POST", f"/actors/{x}/nonces", {"level": "EXECUTE", "max_uses": 2})[1]["id"]
    holder = Principal("anonymous", nonce=nonce)
    assert call(api, holder, "POST", f"/actors/{x}/messages", {"n": 1})[0] == 200
    call(api, "alice", "POST", f"/actors/{x}/permissions", {"user": "bob", "level": "READ"})
    assert call(api, Principal("anonymous", nonce=nonce), "POST", f"/actors/{x}/messages", {"n": 2})[0] == 400
    used = api.service.store.get_nonce(nonce)
    assert used is not None and used.remaining_uses == 1  # the refused use was not counted
    assert call(api, Principal("anonymous", nonce=nonce), "GET", f"/actors/{x}")[0] == 200


def test_single_user_mode_is_unchanged(tmp_path: Path) -> None:
    """No multi_user: the one caller is an admin and owns everything, as before."""
    service = Service(ServiceConfig(db_path=str(tmp_path / "abaco.db"), runtime="process"))
    try:
        api = Api(service)
        me = Principal(service.config.username)
        x = call(api, me, "POST", "/actors", {"image": "abacosamples/test"})[1]
        assert x["owner"] == service.config.username and x["token"] == "false"
        assert call(api, me, "GET", "/actors/admin")[0] == 200
        assert service.users.caller("anyone").admin
    finally:
        service.close()
