"""access_rules.py: Abaco's rules for levels, aliases and nonces, decided without a socket."""

from __future__ import annotations

import pytest

from server_ext.service import access_rules
from server_ext.service.errors import AbacoError
from server_ext.service.ids import new_id


def test_levels_are_ordered_and_world_counts_for_everyone() -> None:
    assert [access_rules.covers(access_rules.UPDATE, level) for level in access_rules.LEVELS] == [True] * 4
    assert access_rules.covers(access_rules.EXECUTE, access_rules.READ) and not access_rules.covers(
        access_rules.READ, access_rules.EXECUTE
    )
    assert not access_rules.covers(access_rules.NONE, access_rules.READ)
    grants = {"owner": "UPDATE", "ABACO_WORLD": "READ", "jane": "NONE", "joe": "EXECUTE"}
    assert access_rules.effective_level(grants, "owner") == "UPDATE"
    assert access_rules.effective_level(grants, "jane") == "READ"  # NONE for jane, READ for the world
    assert access_rules.effective_level(grants, "joe") == "EXECUTE"
    assert access_rules.effective_level(grants, "stranger") == "READ"
    assert access_rules.effective_level({}, "stranger") == "NONE"


@pytest.mark.parametrize(
    "method, path, level",
    [
        ("GET", "/actors/a", "READ"),
        ("GET", "/actors/a/executions/e/logs", "READ"),
        ("POST", "/actors/a/messages", "EXECUTE"),
        ("DELETE", "/actors/a/messages", "UPDATE"),
        ("POST", "/actors/a/state", "UPDATE"),
        ("PUT", "/actors/a", "UPDATE"),
        ("DELETE", "/actors/a", "UPDATE"),
        ("POST", "/actors/a/nonces", "UPDATE"),
        ("POST", "/actors/a/executions/wait", "READ"),  # ours, a read
    ],
)
def test_required_level_per_request(method: str, path: str, level: str) -> None:
    assert access_rules.required_level(method, path) == level


def test_permission_map_and_grants() -> None:
    assert access_rules.permission_map("me", {}) == {"me": "UPDATE"}
    assert access_rules.permission_map("me", {"you": "READ", "me": "READ"}) == {"me": "READ", "you": "READ"}
    assert access_rules.parse_grant({"user": "tester", "level": "read"}) == ("tester", "READ")
    assert access_rules.parse_grant({"user": "ABACO_WORLD", "level": "NONE"}) == ("ABACO_WORLD", "NONE")
    for body, word in [
        ({"level": "READ"}, "user"),
        ({"user": "x"}, "level"),
        ({"user": "x", "level": "ALL"}, "level"),
    ]:
        with pytest.raises(AbacoError, match=f"Invalid {word}"):
            access_rules.parse_grant(body)


@pytest.mark.parametrize("alias", ["jane", "doe", "dots.in.my.name.alias", "with-dash_and_UNDERSCORE", "ünï"])
def test_good_aliases(alias: str) -> None:
    assert access_rules.check_alias(alias) == alias


@pytest.mark.parametrize("char", list("\\ \":/?#[]@!$&'()*+,;=") + ["\t", "\n"])
def test_every_forbidden_character_is_refused(char: str) -> None:
    with pytest.raises(AbacoError, match="forbidden characters") as caught:
        access_rules.check_alias(f"bad{char}alias")
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "word", ["executions", "nonces", "logs", "messages", "adapters", "admin", "aliases", "Admin"]
)
def test_reserved_words_are_refused(word: str) -> None:
    with pytest.raises(AbacoError, match="reserved word"):
        access_rules.check_alias(word)


@pytest.mark.parametrize("value", [None, "", 5])
def test_an_alias_is_a_non_empty_string(value: object) -> None:
    with pytest.raises(AbacoError, match="alias"):
        access_rules.check_alias(value)


def test_an_alias_cannot_look_like_an_actor_id() -> None:
    with pytest.raises(AbacoError, match="form of an actor id"):
        access_rules.check_alias(new_id())


def test_nonce_defaults_and_validation() -> None:
    nonce = access_rules.new_nonce({}, "me", 100.0, actor_id="A")
    assert (nonce.level, nonce.max_uses, nonce.remaining_uses, nonce.current_uses) == ("EXECUTE", -1, -1, 0)
    assert nonce.id.startswith("LOCAL_") and nonce.owner == "me" and nonce.roles
    shown = nonce.display("http://h")
    assert (
        shown["last_use_time"] == "None" and shown["_links"]["self"] == f"http://h/actors/A/nonces/{nonce.id}"
    )
    limited = access_rules.new_nonce(
        {"maxUses": "3", "level": "read", "description": "d"}, "me", 1.0, actor_id="A"
    )
    assert (limited.level, limited.max_uses, limited.remaining_uses, limited.description) == (
        "READ",
        3,
        3,
        "d",
    )
    for bad in (
        {"max_uses": 0},
        {"max_uses": -2},
        {"max_uses": "many"},
        {"level": "WRITE"},
        {"description": 3},
    ):
        with pytest.raises(AbacoError):
            access_rules.new_nonce(bad, "me", 1.0, actor_id="A")
    with pytest.raises(AbacoError, match="NONE, READ, EXECUTE"):  # an alias nonce cannot be UPDATE
        access_rules.new_nonce({"level": "UPDATE"}, "me", 1.0, alias="jane")
    assert access_rules.new_nonce({"level": "READ"}, "me", 1.0, alias="jane").target == "jane"


def test_redeeming_counts_uses_and_refuses_the_last_plus_one() -> None:
    nonce = access_rules.new_nonce({"max_uses": 3, "level": "READ"}, "me", 1.0, actor_id="A")
    with pytest.raises(AbacoError, match="needs EXECUTE") as caught:
        access_rules.redeem(nonce, "A", "EXECUTE", 2.0)
    assert caught.value.status == 400 and caught.value.message.startswith("Not authorized -- ")
    for t in (2.0, 3.0, 4.0):
        nonce = access_rules.redeem(nonce, "A", "READ", t)
    assert (nonce.current_uses, nonce.remaining_uses, nonce.last_use_time) == (3, 0, 4.0)
    with pytest.raises(AbacoError, match="no remaining uses"):
        access_rules.redeem(nonce, "A", "READ", 5.0)


def test_an_unlimited_nonce_counts_but_never_runs_out() -> None:
    nonce = access_rules.new_nonce({}, "me", 1.0, actor_id="A")
    for _ in range(5):
        nonce = access_rules.redeem(nonce, "A", "EXECUTE", 2.0)
    assert (nonce.current_uses, nonce.remaining_uses) == (5, -1)


def test_a_nonce_opens_only_its_own_actor_or_alias() -> None:
    actor_nonce = access_rules.new_nonce({}, "me", 1.0, actor_id="A")
    with pytest.raises(AbacoError, match="access to this actor"):
        access_rules.redeem(actor_nonce, "B", "READ", 2.0)
    with pytest.raises(
        AbacoError, match="access to this actor"
    ):  # an actor nonce is not redeemed via an alias
        access_rules.redeem(actor_nonce, "jane", "READ", 2.0)
    alias_nonce = access_rules.new_nonce({}, "me", 1.0, alias="jane")
    assert access_rules.redeem(alias_nonce, "jane", "EXECUTE", 2.0).current_uses == 1
    with pytest.raises(AbacoError, match="access to this alias"):
        access_rules.redeem(alias_nonce, "A", "READ", 2.0)
