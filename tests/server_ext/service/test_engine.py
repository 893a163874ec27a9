"""The engine's decisions, driven directly: no sockets, no Docker, no SQLite."""

from __future__ import annotations

import pytest

from server_ext.service import engine
from server_ext.service.errors import AbacoError, TooLarge
from server_ext.service.models import Actor, Execution, Registration, parse_registration

MAX = 1000


def classify(body: bytes, ctype: str | None = None, query: dict | None = None) -> engine.Message:
    return engine.classify_message(ctype, body, query or {}, MAX)


def test_form_message_is_a_str():
    m = classify(b"message=some+test+message", "application/x-www-form-urlencoded")
    assert (m.content_type, m.value) == ("str", "some test message")


def test_query_message_wins():
    m = classify(b'{"a": 1}', "application/json", {"message": ["from query"]})
    assert (m.content_type, m.value) == ("str", "from query")


def test_json_with_message_field_is_a_str_and_dicts_become_their_repr():
    assert classify(b'{"message": "hello"}', "application/json").value == "hello"
    m = classify(b'{"message": {"a": 1}}', "application/json")
    assert (m.content_type, m.value) == ("str", "{'a': 1}")


def test_pure_json_is_json():
    m = classify(b'{"username": "jdoe", "n": 1}', "application/json")
    assert m.content_type == "application/json" and m.value == {"username": "jdoe", "n": 1}
    assert engine.msg_value(m.content_type, m.value) == "{'username': 'jdoe', 'n': 1}"


def test_falsy_json_is_accepted_as_str():
    m = classify(b"{}", "application/json")
    assert (m.content_type, m.value) == ("str", {})


def test_binary_keeps_bytes_and_echoes_omitted():
    m = classify(b"\x00\x01", "application/octet-stream")
    assert m.payload == b"\x00\x01" and m.echo() == "binary - omitted"
    assert engine.msg_value(m.content_type, None) is None


@pytest.mark.parametrize("body", [b"hello", b"{not json", b""])
def test_unparseable_bodies_are_400(body):
    with pytest.raises(AbacoError) as err:
        classify(body, "text/plain")
    assert err.value.status == 400 and "message" in err.value.message


def test_oversized_body_is_413():
    with pytest.raises(TooLarge) as err:
        classify(b"x" * (MAX + 1), "application/octet-stream")
    assert err.value.status == 413


def _actor(**reg) -> Actor:
    return Actor(id="A1", owner="me", reg=Registration(image="img", **reg))


def test_environment_precedence_and_contract():
    actor = _actor(default_environment={"key1": "value1", "key2": "value2", "_abaco_actor_id": "spoof"})
    execution = Execution(
        id="E1",
        actor_id="A1",
        executor="me",
        status="SUBMITTED",
        message_received_time=0.0,
        content_type="application/json",
        message={"x": True},
        environment={"key1": "valueABC"},
    )
    env = engine.execution_environment(
        actor, execution, worker_id="W1", api_server="http+unix://x", access_token="tok", username="me"
    )
    assert env["key1"] == "valueABC" and env["key2"] == "value2"
    assert env["_abaco_actor_id"] == "A1"  # system variables win over user ones
    assert env["MSG"] == "{'x': True}"
    assert env["_abaco_Content_Type"] == env["_abaco-Content-Type"] == "application/json"
    for name in (
        "_abaco_execution_id",
        "_abaco_worker_id",
        "_abaco_container_repo",
        "_abaco_actor_state",
        "_abaco_actor_name",
        "_abaco_api_server",
        "_abaco_access_token",
        "_abaco_actor_dbid",
        "_abaco_username",
        "_abaco_actor_revision",
        "_actor_configs",
    ):
        assert name in env, name


def test_query_environment_drops_the_message_and_credentials():
    query = {
        "message": ["m"],
        "key1": ["a", "b"],
        "token": ["secret"],
        "x-nonce": ["LOCAL_x"],
        "SLEEP": ["0"],
    }
    assert engine.query_environment(query) == {"key1": "b", "SLEEP": "0"}


@pytest.mark.parametrize(
    ("stateless", "max_workers", "queued", "busy", "expected"),
    [(False, 6, 10, 1, 1), (True, 6, 0, 0, 1), (True, 6, 3, 1, 4), (True, 2, 10, 0, 2)],
)
def test_target_workers(stateless, max_workers, queued, busy, expected):
    assert engine.target_workers(stateless, max_workers, queued, busy) == expected


def test_logs_truncated_with_marker():
    assert engine.truncate_logs("abcdef", 4) == "ab\n" + engine.LOG_TRUNCATED.strip() + "\nef"
    assert engine.truncate_logs("abc", 4) == "abc"


def test_call_times_from_the_runners_markers():
    from abaco_nb.func_runner import CALL_MARKER, END_MARKER  # the other side of the contract

    lines = [CALL_MARKER.format(index=i, time=100.0 + i) for i in range(4)] + [END_MARKER.format(time=104.5)]
    log = "preamble\n" + "\nprinted\n".join(lines) + "\nabaco-nb runner: 4 call(s), 0 failed\n"
    assert engine.call_times(log) == (0, 4.5)  # calls 0 to the chunk's last took 4.5 s
    assert engine.call_times(engine.truncate_logs(log, 160)) == (0, 4.5)  # head and tail survive
    assert engine.call_times("\n".join(lines[2:])) == (2, 2.5)
    assert engine.call_times(lines[0] + "\n") is None  # stopped before its end: no figure
    assert engine.call_times("result: 42\n") is None  # not an executor chunk


def test_log_expiry_clamped():
    assert engine.log_expiry(None, 100, 1000, 0) == 100
    assert engine.log_expiry(5000, 100, 1000, 0) == 1000


class TestRegistration:
    def test_image_required(self):
        with pytest.raises(AbacoError, match="image"):
            parse_registration({"name": "x"})

    def test_defaults(self):
        reg = parse_registration({"image": "abaco-nb/test"})
        assert reg.stateless is True and reg.description == "" and reg.default_environment == {}

    def test_camel_and_form_values(self):
        reg = parse_registration(
            {"image": "i", "defaultEnvironment": {"a": 1}, "stateless": "false", "maxWorkers": "1"}
        )
        assert reg.default_environment == {"a": "1"} and reg.stateless is False and reg.max_workers == 1

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"image": "i", "stateless": "abcd"}, "stateless"),
            ({"image": "i", "use_container_uid": "abcd"}, "use_container_uid"),
            ({"image": "i", "default_environment": "abcd"}, "default_environment"),
            ({"image": "i", "max_workers": "many"}, "max_workers"),
            ({"image": "i", "mem_limit": "lots"}, "mem_limit"),
            ({"image": 5}, "image"),
            ({"image": "i", "bogus": 1}, "bogus"),
        ],
    )
    def test_bad_fields_are_named(self, body, field):
        with pytest.raises(AbacoError, match=field):
            parse_registration(body)

    def test_stateful_one_worker(self):
        with pytest.raises(AbacoError, match="stateful actors can only have 1 worker"):
            parse_registration({"image": "i", "stateless": False, "max_workers": 3})
