"""Aliases, nonces and permissions over HTTP against a real ``abaco-nb serve``: Abaco's v2 suite
scenarios (reference/abaco-api.md §6.2) plus the refusals that keep a nonce to its actor and level."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.server_ext import serve_fixture
from tests.server_ext.serve_fixture import Served, ok, python_command, refused

abaco_serve = serve_fixture.abaco_serve  # the session's shared server

QUICK = python_command('print("hello from " + __import__("os").environ["_abaco_actor_id"])')


@pytest.fixture(scope="module")
def actor(abaco_serve: Served) -> dict[str, Any]:
    return abaco_serve.register({"image": QUICK, "name": "aliases-nonces"})


def test_nonce_defaults(abaco_serve: Served, actor: dict[str, Any]) -> None:
    aid = actor["id"]
    fresh = abaco_serve.register({"image": QUICK})
    assert ok(abaco_serve.request("GET", f"/actors/{fresh['id']}/nonces")) == []
    nonce = ok(abaco_serve.request("POST", f"/actors/{aid}/nonces"))
    assert nonce["level"] == "EXECUTE" and nonce["max_uses"] == -1
    assert nonce["current_uses"] == 0 and nonce["remaining_uses"] == -1
    assert nonce["id"].startswith("LOCAL_") and nonce["roles"] and nonce["last_use_time"]
    assert nonce["actor_id"] == aid and nonce["owner"] == actor["owner"]
    assert "tenant" not in nonce
    listed = ok(abaco_serve.request("GET", f"/actors/v2/{aid}/nonces"))
    assert nonce["id"] in [n["id"] for n in listed]
    assert ok(abaco_serve.request("GET", f"/v3/actors/{aid}/nonces/{nonce['id']}"))["id"] == nonce["id"]
    camel = ok(abaco_serve.request("GET", f"/actors/{aid}/nonces/{nonce['id']}?case=camel"))
    assert camel["maxUses"] == -1 and camel["remainingUses"] == -1
    ok(abaco_serve.request("DELETE", f"/actors/{aid}/nonces/{nonce['id']}"))
    assert refused(abaco_serve.request("GET", f"/actors/{aid}/nonces/{nonce['id']}")) == "Nonce not found."
    for body in ({"max_uses": 0}, {"max_uses": -5}, {"maxUses": "x"}, {"level": "ALL"}):
        assert "Invalid" in refused(abaco_serve.request("POST", f"/actors/{aid}/nonces", json=body))


def test_limited_read_nonce(abaco_serve: Served, actor: dict[str, Any]) -> None:
    """Abaco's suite: a message POST fails, 3 GETs succeed, the 4th fails; 3 used, 0 remaining."""
    aid = actor["id"]
    nonce = ok(abaco_serve.request("POST", f"/actors/{aid}/nonces", json={"max_uses": 3, "level": "READ"}))
    nid = nonce["id"]
    message = refused(
        abaco_serve.request(
            "POST", f"/actors/{aid}/messages?x-nonce={nid}", auth=False, json={"message": "x"}
        )
    )
    assert message.startswith("Not authorized -- ") and "EXECUTE" in message
    for _ in range(3):
        assert ok(abaco_serve.request("GET", f"/actors/{aid}?x-nonce={nid}", auth=False))["id"] == aid
    assert "no remaining uses" in refused(
        abaco_serve.request("GET", f"/actors/{aid}?x-nonce={nid}", auth=False)
    )
    after = ok(abaco_serve.request("GET", f"/actors/{aid}/nonces/{nid}"))
    assert after["current_uses"] == 3 and after["remaining_uses"] == 0 and after["last_use_time"] != "None"


def test_unlimited_nonce_counts_uses_and_runs_as_its_owner(
    abaco_serve: Served, actor: dict[str, Any]
) -> None:
    aid = actor["id"]
    nid = ok(abaco_serve.request("POST", f"/actors/{aid}/nonces"))["id"]
    for path in (f"/actors/{aid}", f"/actors/{aid}/executions", f"/v3/actors/{aid}/messages"):
        ok(abaco_serve.request("GET", f"{path}?x-nonce={nid}", auth=False))
    assert ok(abaco_serve.request("GET", f"/actors/{aid}/nonces/{nid}"))["current_uses"] == 3
    sent = ok(
        abaco_serve.request(
            "POST", f"/actors/{aid}/messages?x-nonce={nid}", auth=False, data={"message": "n"}
        )
    )
    execution = abaco_serve.wait_execution(aid, sent["execution_id"])
    assert execution["status"] == "COMPLETE" and execution["executor"] == actor["owner"]
    used = ok(abaco_serve.request("GET", f"/actors/{aid}/nonces/{nid}"))
    assert used["current_uses"] == 4 and used["remaining_uses"] == -1
    # EXECUTE does not reach UPDATE routes, and nothing happened
    assert "needs UPDATE" in refused(
        abaco_serve.request("DELETE", f"/actors/{aid}?x-nonce={nid}", auth=False)
    )
    assert ok(abaco_serve.request("GET", f"/actors/{aid}"))["status"] == "READY"


def test_a_nonce_opens_its_own_actor_only_and_leaks_nothing(
    abaco_serve: Served, actor: dict[str, Any]
) -> None:
    aid = actor["id"]
    other = abaco_serve.register({"image": QUICK})
    nid = ok(abaco_serve.request("POST", f"/actors/{aid}/nonces", json={"level": "UPDATE"}))["id"]
    assert "access to this actor" in refused(
        abaco_serve.request("GET", f"/actors/{other['id']}?x-nonce={nid}", auth=False)
    )
    assert "access to this actor" in refused(
        abaco_serve.request("GET", f"/actors/NOPE?x-nonce={nid}", auth=False)
    )
    assert "access to this actor" in refused(abaco_serve.request("GET", f"/actors?x-nonce={nid}", auth=False))
    assert "access to this actor" in refused(
        abaco_serve.request("POST", f"/actors?x-nonce={nid}", auth=False, json={"image": QUICK})
    )
    # an unknown nonce: the same answer whether or not the actor exists
    for path in (f"/actors/{aid}", "/actors/NOPE", "/actors"):
        assert (
            refused(abaco_serve.request("GET", f"{path}?x-nonce=LOCAL_nope", auth=False))
            == "Nonce not found."
        )
    # a token that is sent is what counts: a wrong one is a 401 even with a good nonce
    wrong = abaco_serve.request(
        "GET", f"/actors/{aid}?x-nonce={nid}", auth=False, headers={"Authorization": "Bearer wrong"}
    )
    assert refused(wrong, 401)
    refused(abaco_serve.request("GET", f"/actors/{aid}?x-nonce={nid}&token=wrong", auth=False), 401)
    assert refused(abaco_serve.request("GET", f"/actors/{aid}", auth=False), 401)


def test_a_nonce_use_is_atomic(abaco_serve: Served, actor: dict[str, Any]) -> None:
    """Twenty concurrent requests on a five-use nonce: exactly five get through."""
    aid = actor["id"]
    nid = ok(abaco_serve.request("POST", f"/actors/{aid}/nonces", json={"max_uses": 5, "level": "READ"}))[
        "id"
    ]
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    abaco_serve.request("GET", f"/actors/{aid}/state?x-nonce={nid}", auth=False).status_code
                ),
                range(20),
            )
        )
    # state of a stateless actor is a 404 after the nonce was redeemed; refusals are 400
    assert sorted(codes) == [400] * 15 + [404] * 5
    assert ok(abaco_serve.request("GET", f"/actors/{aid}/nonces/{nid}"))["current_uses"] == 5


def test_alias_crud_and_use_in_place_of_the_id(abaco_serve: Served, actor: dict[str, Any]) -> None:
    aid = actor["id"]
    second = abaco_serve.register({"image": QUICK})
    created = ok(abaco_serve.request("POST", "/actors/aliases", json={"alias": "jane", "actor_id": aid}))
    assert created["alias"] == "jane" and created["actor_id"] == aid and created["owner"] == actor["owner"]
    ok(
        abaco_serve.request(
            "POST", "/v3/actors/aliases", data={"alias": "dots.in.my.name.alias", "actorId": aid}
        )
    )
    duplicate = refused(
        abaco_serve.request("POST", "/actors/aliases", json={"alias": "jane", "actor_id": aid})
    )
    assert "already exists" in duplicate
    names = [a["alias"] for a in ok(abaco_serve.request("GET", "/actors/aliases"))]
    assert {"jane", "dots.in.my.name.alias"} <= set(names)
    assert ok(abaco_serve.request("GET", "/actors/aliases/jane"))["actor_id"] == aid
    assert ok(abaco_serve.request("GET", "/actors/aliases/jane/permissions")) == {actor["owner"]: "UPDATE"}

    # the alias works in place of the id, and links show the id
    shown = ok(abaco_serve.request("GET", "/actors/jane"))
    assert shown["id"] == aid and shown["_links"]["self"].endswith(f"/actors/{aid}")
    sent = ok(abaco_serve.request("POST", "/actors/dots.in.my.name.alias/messages", json={"message": "hi"}))
    assert sent["_links"]["self"].endswith(f"/actors/{aid}/executions/{sent['execution_id']}")
    done = ok(abaco_serve.request("GET", f"/actors/jane/executions/{sent['execution_id']}?wait=60"))
    assert done["status"] == "COMPLETE" and done["actor_id"] == aid
    assert (
        f"hello from {aid}"
        in ok(abaco_serve.request("GET", f"/actors/jane/executions/{sent['execution_id']}/logs"))["logs"]
    )
    summary = ok(abaco_serve.request("GET", "/v3/actors/jane/executions"))
    assert summary["actor_id"] == aid and sent["execution_id"] in summary["ids"]
    assert ok(abaco_serve.request("GET", "/actors/jane/messages"))["messages"] == 0

    # PUT re-points it; DELETE removes it
    moved = ok(abaco_serve.request("PUT", "/actors/aliases/jane", json={"actor_id": second["id"]}))
    assert moved["actor_id"] == second["id"]
    assert ok(abaco_serve.request("GET", "/actors/jane"))["id"] == second["id"]
    assert "cannot be updated" in refused(
        abaco_serve.request("PUT", "/actors/aliases/jane", json={"alias": "joe", "actor_id": aid})
    )
    refused(abaco_serve.request("PUT", "/actors/aliases/jane", json={"actor_id": "NOPE"}), 404)
    for name in ("jane", "dots.in.my.name.alias"):
        assert ok(abaco_serve.request("DELETE", f"/actors/aliases/{name}")) is None
    refused(abaco_serve.request("GET", "/actors/aliases/jane"), 404)
    assert refused(abaco_serve.request("GET", "/actors/jane"), 404) == "No actor found with id: jane."


def test_alias_nonce_redeemed_with_no_token(abaco_serve: Served, actor: dict[str, Any]) -> None:
    aid = actor["id"]
    ok(abaco_serve.request("POST", "/actors/aliases", json={"alias": "doe", "actor_id": aid}))
    nonce = ok(
        abaco_serve.request("POST", "/actors/aliases/doe/nonces", json={"level": "EXECUTE", "max_uses": 2})
    )
    assert nonce["alias"] == "doe" and nonce["actor_id"] is None
    assert "NONE, READ, EXECUTE" in refused(
        abaco_serve.request("POST", "/actors/aliases/doe/nonces", json={"level": "UPDATE"})
    )
    nid = nonce["id"]
    sent = ok(
        abaco_serve.request("POST", f"/actors/doe/messages?x-nonce={nid}", auth=False, json={"message": "a"})
    )
    assert abaco_serve.wait_execution(aid, sent["execution_id"])["status"] == "COMPLETE"
    # an alias nonce opens the alias, not the actor id
    assert "access to this alias" in refused(
        abaco_serve.request("GET", f"/actors/{aid}?x-nonce={nid}", auth=False)
    )
    assert [n["id"] for n in ok(abaco_serve.request("GET", "/actors/aliases/doe/nonces"))] == [nid]
    assert ok(abaco_serve.request("GET", f"/actors/aliases/doe/nonces/{nid}"))["current_uses"] == 1
    refused(abaco_serve.request("GET", f"/actors/{aid}/nonces/{nid}"))  # not one of the actor's own
    ok(abaco_serve.request("DELETE", f"/actors/aliases/doe/nonces/{nid}"))
    assert refused(abaco_serve.request("GET", f"/actors/doe?x-nonce={nid}", auth=False)) == "Nonce not found."
    ok(abaco_serve.request("DELETE", "/actors/aliases/doe"))


@pytest.mark.parametrize("char", list(" \"\\:/?#[]@!$&'()*+,;="))
def test_forbidden_characters(abaco_serve: Served, actor: dict[str, Any], char: str) -> None:
    resp = abaco_serve.request(
        "POST", "/actors/aliases", json={"alias": f"bad{char}name", "actor_id": actor["id"]}
    )
    assert "forbidden characters" in refused(resp)


@pytest.mark.parametrize("word", ["executions", "nonces", "logs", "messages", "adapters", "admin"])
def test_reserved_words(abaco_serve: Served, actor: dict[str, Any], word: str) -> None:
    resp = abaco_serve.request("POST", "/actors/aliases", json={"alias": word, "actor_id": actor["id"]})
    assert "reserved word" in refused(resp)


def test_alias_refusals(abaco_serve: Served, actor: dict[str, Any]) -> None:
    post = lambda body: abaco_serve.request("POST", "/actors/aliases", json=body)  # noqa: E731
    assert "actor id" in refused(post({"alias": actor["id"], "actor_id": actor["id"]}))
    assert "Invalid alias" in refused(post({"actor_id": actor["id"]}))
    assert "Invalid actor_id" in refused(post({"alias": "nobody"}))
    assert refused(post({"alias": "nobody", "actor_id": "NOPE"}), 404) == "No actor found with id: NOPE."
    refused(abaco_serve.request("POST", "/actors/aliases"))  # no body
    refused(abaco_serve.request("PATCH", "/actors/aliases/x"), 405)


def test_deleting_the_actor_keeps_its_alias_which_then_404s(abaco_serve: Served) -> None:
    doomed = abaco_serve.register({"image": QUICK})
    ok(abaco_serve.request("POST", "/actors/aliases", json={"alias": "orphan", "actor_id": doomed["id"]}))
    nid = ok(abaco_serve.request("POST", f"/actors/{doomed['id']}/nonces"))["id"]
    ok(
        abaco_serve.request(
            "POST", f"/actors/{doomed['id']}/permissions", json={"user": "x", "level": "READ"}
        )
    )
    ok(abaco_serve.request("DELETE", f"/actors/{doomed['id']}"))
    assert ok(abaco_serve.request("GET", "/actors/aliases/orphan"))["actor_id"] == doomed["id"]
    message = refused(abaco_serve.request("GET", "/actors/orphan/executions"), 404)
    assert "points at actor" in message and "no longer exists" in message
    assert (
        refused(abaco_serve.request("GET", f"/actors/{doomed['id']}?x-nonce={nid}", auth=False))
        == "Nonce not found."
    )
    ok(abaco_serve.request("DELETE", "/actors/aliases/orphan"))


def test_permissions(abaco_serve: Served, actor: dict[str, Any]) -> None:
    """Abaco's suite: the owner holds UPDATE; a new user adds an entry; changing its level does not."""
    aid = actor["id"]
    fresh = abaco_serve.register({"image": QUICK})
    assert ok(abaco_serve.request("GET", f"/actors/{fresh['id']}/permissions")) == {fresh["owner"]: "UPDATE"}
    ok(
        abaco_serve.request(
            "POST", f"/actors/{aid}/permissions", json={"user": "testshareuser", "level": "READ"}
        )
    )
    added = ok(
        abaco_serve.request("POST", f"/actors/{aid}/permissions", data={"user": "tester", "level": "UPDATE"})
    )
    assert len(added) == 3 and added["tester"] == "UPDATE"
    changed = ok(
        abaco_serve.request("POST", f"/actors/{aid}/permissions", json={"user": "tester", "level": "READ"})
    )
    assert len(changed) == 3 and changed["tester"] == "READ"
    none = ok(
        abaco_serve.request("POST", f"/actors/{aid}/permissions", json={"user": "tester", "level": "NONE"})
    )
    assert none["tester"] == "NONE"  # stored, not deleted
    camel = ok(abaco_serve.request("GET", f"/actors/{aid}/permissions?case=camel"))
    assert "testshareuser" in camel  # user names are data, never re-cased
    assert "Invalid level" in refused(
        abaco_serve.request("POST", f"/actors/{aid}/permissions", json={"user": "x", "level": "OWNER"})
    )
    refused(abaco_serve.request("GET", "/actors/NOPE/permissions"), 404)
