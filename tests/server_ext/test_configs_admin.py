"""Actor configs and the admin and utilization routes over HTTP against a real ``abaco-nb serve``
(checklist items 32 and 34): CRUD, permissions, secrets encrypted at rest and shown as ciphertext,
``_actor_configs`` in a real execution's environment, and who may read the admin routes."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest

from tests.server_ext import serve_fixture
from tests.server_ext.serve_fixture import Served, ok, refused

abaco_serve = serve_fixture.abaco_serve  # the session's shared server


@pytest.fixture(scope="module")
def env_actor(abaco_serve: Served) -> dict[str, Any]:
    """abaco-nb/test prints its environment (``env``) and exits at once with SLEEP=0."""
    return abaco_serve.register({"image": "abaco-nb/test", "default_environment": {"SLEEP": "0"}})


def test_config_crud_and_permissions(abaco_serve: Served, env_actor: dict[str, Any]) -> None:
    aid = env_actor["id"]
    made = ok(
        abaco_serve.request(
            "POST",
            "/actors/configs",
            json={"name": "cfg-crud", "value": {"a": [1, 2]}, "is_secret": False, "actors": aid},
        )
    )
    assert made == {"name": "cfg-crud", "value": {"a": [1, 2]}, "is_secret": False, "actors": aid}
    assert "cfg-crud" in [c["name"] for c in ok(abaco_serve.request("GET", "/actors/configs"))]
    assert ok(abaco_serve.request("GET", "/v3/actors/configs/cfg-crud")) == made
    camel = ok(abaco_serve.request("GET", "/actors/configs/cfg-crud?case=camel"))
    assert camel["isSecret"] is False and camel["value"] == {"a": [1, 2]}

    # PUT replaces value, secrecy and actors (a form works, isSecret spelling too)
    updated = ok(
        abaco_serve.request(
            "PUT", "/actors/configs/cfg-crud", data={"value": "plain", "isSecret": "false", "actors": aid}
        )
    )
    assert updated["value"] == "plain"
    msg = refused(
        abaco_serve.request(
            "PUT",
            "/actors/configs/cfg-crud",
            json={"name": "other", "value": 1, "is_secret": False, "actors": aid},
        )
    )
    assert "name" in msg

    # permissions: the owner holds UPDATE; grants are added
    perms = ok(abaco_serve.request("GET", "/actors/configs/cfg-crud/permissions"))
    assert list(perms.values()) == ["UPDATE"]
    perms = ok(
        abaco_serve.request(
            "POST", "/actors/configs/cfg-crud/permissions", json={"user": "jane", "level": "READ"}
        )
    )
    assert perms["jane"] == "READ" and len(perms) == 2
    assert "level" in refused(
        abaco_serve.request(
            "POST", "/actors/configs/cfg-crud/permissions", json={"user": "j", "level": "ALL"}
        )
    )

    # a duplicate is 400; delete, then 404
    dup = {"name": "cfg-crud", "value": 1, "is_secret": False, "actors": aid}
    assert "already exists" in refused(abaco_serve.request("POST", "/actors/configs", json=dup))
    assert ok(abaco_serve.request("DELETE", "/actors/configs/cfg-crud")) is None
    refused(abaco_serve.request("GET", "/actors/configs/cfg-crud"), 404)
    refused(abaco_serve.request("DELETE", "/actors/configs/cfg-crud"), 404)
    refused(abaco_serve.request("GET", "/actors/configs/cfg-crud/permissions"), 404)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"value": 1, "is_secret": False, "actors": "{aid}"}, "name"),
        ({"name": "a/b", "value": 1, "is_secret": False, "actors": "{aid}"}, "name"),
        ({"name": "cfg-v", "is_secret": False, "actors": "{aid}"}, "value"),
        ({"name": "cfg-v", "value": 1, "actors": "{aid}"}, "is_secret"),
        ({"name": "cfg-v", "value": 1, "is_secret": "perhaps", "actors": "{aid}"}, "is_secret"),
        ({"name": "cfg-v", "value": 1, "is_secret": False}, "actors"),
        ({"name": "cfg-v", "value": 1, "is_secret": False, "actors": " , "}, "actors"),
        ({"name": "cfg-v", "value": 1, "is_secret": False, "actors": 7}, "actors"),
    ],
)
def test_config_validation_names_the_field(
    abaco_serve: Served, env_actor: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    filled = {k: (v.format(aid=env_actor["id"]) if isinstance(v, str) else v) for k, v in body.items()}
    message = refused(abaco_serve.request("POST", "/actors/configs", json=filled))
    assert field in message, message


def test_config_unknown_actor_is_404_naming_it(abaco_serve: Served, env_actor: dict[str, Any]) -> None:
    body = {
        "name": "cfg-missing",
        "value": 1,
        "is_secret": False,
        "actors": f"{env_actor['id']},no-such-actor",
    }
    assert "no-such-actor" in refused(abaco_serve.request("POST", "/actors/configs", json=body), 404)
    refused(abaco_serve.request("GET", "/actors/configs/cfg-missing"), 404)


def test_secret_is_ciphertext_on_get_and_plain_in_the_execution(
    abaco_serve: Served, env_actor: dict[str, Any]
) -> None:
    aid = env_actor["id"]
    ok(abaco_serve.request("POST", "/actors/aliases", json={"alias": "cfg-env-alias", "actor_id": aid}))
    secret = ok(
        abaco_serve.request(
            "POST",
            "/actors/configs",
            json={"name": "cfg-secret", "value": "s3cr3t-pw", "isSecret": True, "actors": "cfg-env-alias"},
        )
    )
    assert secret["is_secret"] is True and isinstance(secret["value"], str)
    assert "s3cr3t-pw" not in secret["value"] and secret["value"].startswith("gAAAA")  # a Fernet token
    assert ok(abaco_serve.request("GET", "/actors/configs/cfg-secret"))["value"] == secret["value"]
    ok(
        abaco_serve.request(
            "POST",
            "/actors/configs",
            json={"name": "cfg-plain", "value": {"n": 3}, "is_secret": "false", "actors": aid},
        )
    )

    sent = ok(abaco_serve.request("POST", f"/actors/{aid}/messages", json={"message": "configs"}))
    abaco_serve.wait_execution(aid, sent["execution_id"])
    logs = ok(abaco_serve.request("GET", f"/actors/{aid}/executions/{sent['execution_id']}/logs"))["logs"]
    line = re.search(r"^_actor_configs=(.*)$", logs, re.M)
    assert line, logs
    assert ast.literal_eval(line.group(1)) == {"cfg-secret": "s3cr3t-pw", "cfg-plain": {"n": 3}}
    for name in ("cfg-secret", "cfg-plain"):
        ok(abaco_serve.request("DELETE", f"/actors/configs/{name}"))
    ok(abaco_serve.request("DELETE", "/actors/aliases/cfg-env-alias"))


def test_admin_and_utilization(abaco_serve: Served, env_actor: dict[str, Any]) -> None:
    aid = env_actor["id"]
    sent = ok(abaco_serve.request("POST", f"/actors/{aid}/messages", json={"message": "admin"}))
    abaco_serve.wait_execution(aid, sent["execution_id"])

    usage = ok(abaco_serve.request("GET", "/actors/utilization?case=snake"))
    assert set(usage) == {"currentActors", "totalActors", "workers", "commandQueue"}
    assert usage["totalActors"] >= usage["currentActors"] >= 1 and usage["workers"] >= 1

    actors = ok(abaco_serve.request("GET", "/actors/admin"))
    mine = next(a for a in actors if a["id"] == aid)
    assert mine["executions"] >= 1 and mine["workers"] >= 1 and mine["messages"] == 0
    assert mine["runtime"] == "process" and mine["image"] == "abaco-nb/test"

    workers = ok(abaco_serve.request("GET", "/actors/admin/workers"))
    summary = workers["summary"]
    assert summary["total_workers"] == len(workers["workers"])
    assert (
        summary["ready_workers"] + summary["busy_workers"] + summary["error_workers"]
        <= summary["total_workers"]
    )
    assert aid in {w["actor_id"] for w in workers["workers"]}

    executions = ok(abaco_serve.request("GET", "/actors/admin/executions"))
    totals = executions["summary"]
    mine = next(a for a in executions["actors"] if a["actor_id"] == aid)
    assert mine["total_executions"] >= 1
    assert totals["total_executions_all"] >= totals["total_executions_existing"] >= mine["total_executions"]
    assert totals["total_executions_existing"] == sum(a["total_executions"] for a in executions["actors"])
    assert (
        ok(abaco_serve.request("GET", "/actors/admin/executions?case=camel"))["summary"]["totalExecutionsAll"]
        >= 1
    )


def test_admin_routes_refuse_nonces(abaco_serve: Served, env_actor: dict[str, Any]) -> None:
    nonce = ok(abaco_serve.request("POST", f"/actors/{env_actor['id']}/nonces", json={"level": "READ"}))
    for path in (
        "/actors/admin",
        "/actors/admin/workers",
        "/actors/admin/executions",
        "/actors/utilization",
        "/actors/configs",
    ):
        message = refused(abaco_serve.request("GET", f"{path}?x-nonce={nonce['id']}", auth=False))
        assert message.startswith("Not authorized"), (path, message)
