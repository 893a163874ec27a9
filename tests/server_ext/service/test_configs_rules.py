"""actor_config_rules.py and admin.py decided without a socket; actor_configs over a real SQLite store (encryption,
alias matching, what an execution gets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server_ext.service import actor_config_rules, admin, engine
from server_ext.service.access_rules import Alias
from server_ext.service.actor_configs import ActorConfigs
from server_ext.service.errors import AbacoError, NotFound
from server_ext.service.models import Actor, Execution, Registration, Worker
from server_ext.service.store import Store


def test_parse_config_accepts_both_spellings_and_splits_actors() -> None:
    parsed = actor_config_rules.parse_config(
        {"name": "c", "value": [1], "isSecret": "yes", "actors": " a, b,,a "}
    )
    assert parsed == actor_config_rules.ConfigInput("c", [1], True, ["a", "b"], " a, b,,a ")
    assert parsed.actors_text == " a, b,,a "  # returned as sent, as Abaco does
    assert (
        actor_config_rules.parse_config({"value": None, "is_secret": 0, "actors": ["x"]}, name="c").name
        == "c"
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ({"value": 1, "is_secret": False, "actors": "a"}, "name"),
        ({"name": "a b", "value": 1, "is_secret": False, "actors": "a"}, "name"),
        ({"name": "c", "is_secret": False, "actors": "a"}, "value"),
        ({"name": "c", "value": 1, "actors": "a"}, "is_secret"),
        ({"name": "c", "value": 1, "is_secret": "maybe", "actors": "a"}, "is_secret"),
        ({"name": "c", "value": 1, "is_secret": True}, "actors"),
        ({"name": "c", "value": 1, "is_secret": True, "actors": ","}, "actors"),
    ],
)
def test_parse_config_refusals_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(AbacoError) as err:
        actor_config_rules.parse_config(body)
    assert err.value.status == 400 and field in err.value.message


def test_environment_variable_is_the_str_of_the_dict() -> None:
    actor = Actor(id="A1", owner="me", reg=Registration(image="img"))
    execution = Execution(
        id="E1",
        actor_id="A1",
        executor="me",
        status="SUBMITTED",
        message_received_time=0.0,
        content_type="str",
    )
    env = engine.execution_environment(
        actor,
        execution,
        worker_id="W",
        api_server="",
        access_token="",
        username="me",
        actor_configs={"pw": "x", "n": {"a": 1}},
    )
    assert env["_actor_configs"] == "{'pw': 'x', 'n': {'a': 1}}"
    bare = engine.execution_environment(
        actor, execution, worker_id="W", api_server="", access_token="", username="me"
    )
    assert bare["_actor_configs"] == "{}"


def test_configs_over_a_store_encrypt_and_match_aliases(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "db"))
    for actor_id in ("A1", "A2"):
        store.put_actor(Actor(id=actor_id, owner="me", reg=Registration(image="img")))
    store.add_alias(Alias(alias="two", actor_id="A2", owner="me", create_time=0.0))
    ops = ActorConfigs(store)
    secret = ops.create({"name": "pw", "value": "hunter2", "is_secret": True, "actors": "A1,two"}, "me")
    assert secret.value != "hunter2" and "hunter2" not in store.get_config("pw").value  # type: ignore[union-attr]
    ops.create({"name": "plain", "value": 5, "is_secret": False, "actors": "A1"}, "me")
    assert ops.values_for("A1") == {"pw": "hunter2", "plain": 5}
    assert ops.values_for("A2") == {"pw": "hunter2"}  # through its alias
    assert ops.values_for("A3") == {}
    with pytest.raises(NotFound, match="nobody"):
        ops.create({"name": "x", "value": 1, "is_secret": False, "actors": "A1,nobody"}, "me")
    with pytest.raises(AbacoError, match="already exists"):
        ops.create({"name": "plain", "value": 1, "is_secret": False, "actors": "A1"}, "me")
    # the key lives in the store: a restarted service decrypts what the last one encrypted
    assert ActorConfigs(Store(str(tmp_path / "db"))).values_for("A2") == {"pw": "hunter2"}
    ops.update("pw", {"value": {"k": "v"}, "is_secret": False, "actors": "A2"})
    assert ops.get("pw").value == {"k": "v"} and ops.values_for("A1") == {"plain": 5}
    ops.delete("pw")
    with pytest.raises(NotFound):
        ops.get("pw")


def test_admin_summaries() -> None:
    actors = [
        Actor(id="A1", owner="me", reg=Registration(image="i"), status="READY"),
        Actor(id="A2", owner="me", reg=Registration(image="j"), status="ERROR"),
    ]
    workers = [
        Worker(id="W1", actor_id="A1", status="READY", image="i", create_time=0.0),
        Worker(id="W2", actor_id="A1", status="BUSY", image="i", create_time=0.0),
    ]

    def ex(eid: str, actor_id: str, runtime: int) -> Execution:
        return Execution(
            id=eid,
            actor_id=actor_id,
            executor="me",
            status="COMPLETE",
            message_received_time=0.0,
            content_type="str",
            runtime=runtime,
            cpu=1,
            io=2,
        )

    executions = [ex("E1", "A1", 3), ex("E2", "A1", 4), ex("E3", "GONE", 10)]
    assert admin.utilization(actors, workers, 7) == {
        "currentActors": 1,
        "totalActors": 2,
        "workers": 2,
        "commandQueue": 7,
    }
    assert admin.workers_summary(actors, workers) == {
        "total_workers": 2,
        "ready_workers": 1,
        "requested_workers": 0,
        "error_workers": 0,
        "busy_workers": 1,
        "actors_no_workers": 1,
    }
    result = admin.executions_summary(actors, executions)
    summary = result["summary"]
    assert summary["total_actors_all"] == 3 and summary["total_actors_all_with_executions"] == 2
    assert summary["total_executions_all"] == 3 and summary["total_execution_runtime_all"] == 17
    assert summary["total_actors_existing"] == 2 and summary["total_actors_existing_with_executions"] == 1
    assert summary["total_executions_existing"] == 2 and summary["total_execution_io_existing"] == 4
    assert [(a["actor_id"], a["total_executions"]) for a in result["actors"]] == [("A1", 2), ("A2", 0)]
