"""agavepy 0.9.5, the client Abaco's own docs use, against a real abaco-nb serve (process runtime)."""

from __future__ import annotations

import json

import pytest

from tests.server_ext.serve_fixture import Served

from .conftest import COUNTER_ACTOR, ECHO_ACTOR, client_python, run_driver

pytestmark = pytest.mark.clients


def test_actor_lifecycle(abaco_serve: Served) -> None:
    out = run_driver("agavepy", "agave_actors.py", abaco_serve, "abaco-nb/test")
    added = out["added"]
    assert added["status"] == "SUBMITTED" and added["revision"] == 1 and added["name"] == "agave-crud"
    assert added["default_environment"] == {"key1": "value1", "key2": "value2"}
    assert out["ready"]["status"] == "READY"
    assert added["id"] in out["listed_ids"]
    assert out["got"]["description"] == "registered with agavepy"
    # PUT is a full replacement that keeps the name; the same image means no new revision.
    updated = out["updated"]
    assert updated["description"] == "updated with agavepy" and updated["name"] == "agave-crud"
    assert updated["default_environment"]["key2"] == "new_value" and updated["revision"] == 1
    assert out["got_after_update"]["default_environment"]["key2"] == "new_value"
    assert out["deleted"] is None  # agavepy returns None for result: null
    assert out["get_deleted"]["status"] == 404 and out["get_deleted"]["envelope_status"] == "error"
    assert out["get_deleted"]["message"] == f"No actor found with id: {added['id']}."
    bad = out["bad_registration"]
    assert bad["status"] == 400 and "image" in bad["message"]


def test_session_header_auth_also_works(abaco_serve: Served) -> None:
    out = run_driver("agavepy", "agave_actors.py", abaco_serve, "abaco-nb/test", env={"AUTH_MODE": "session"})
    assert out["ready"]["status"] == "READY"


def test_messages_executions_logs_results(abaco_serve: Served) -> None:
    out = run_driver("agavepy", "agave_messages.py", abaco_serve, ECHO_ACTOR)
    sent = out["sent"]
    for receipt in sent.values():
        assert receipt["executionId"] == receipt["execution_id"]
    assert sent["string"]["msg"] == "hello"
    assert sent["dict_message"]["msg"] == "{'a': 1}"  # a dict "message" is str()-ed, as Abaco does
    assert sent["pure_json"]["msg"] == {"username": "jdoe", "application_id": "print-env-cli"}
    assert sent["binary"]["msg"] == "binary - omitted"

    expected_logs = {
        "string": ["CT=str", "MSG=hello", "DICT={}"],
        "dict_message": ["CT=str", "MSG={'a': 1}", "DICT={'a': 1}"],
        "pure_json": [
            "CT=application/json",
            "MSG={'username': 'jdoe', 'application_id': 'print-env-cli'}",
            "DICT={'username': 'jdoe', 'application_id': 'print-env-cli'}",
        ],
        "environment": ["CT=str", "MSG=hi", "FOO=bar"],
        "binary": ["CT=application/octet-stream", "MSG=None", "BIN=b'\\x00\\x01binary-bytes\\xff'"],
    }
    for name, lines in expected_logs.items():
        run = out[name]
        assert run["execution"]["status"] == "COMPLETE", run
        assert run["execution"]["exit_code"] == 0
        for line in lines:
            assert line in run["logs"].splitlines(), (name, run["logs"])
        content_type = lines[0].removeprefix("CT=")
        assert run["results"] == [f"result-of-{content_type}", ""]  # one frame, then an empty body
        assert run["result_status"] == [200, 200]

    assert out["raw_string"]["status"] == 400 and "message" in out["raw_string"]["message"]
    summary = out["executions"]
    assert summary["total_executions"] == 5 and len(summary["executions"]) == 5
    assert {e["status"] for e in summary["executions"]} == {"COMPLETE"}
    assert set(summary["ids"]) == {r["executionId"] for r in sent.values()}
    assert out["messages"]["messages"] == 0
    assert out["add_worker"]["status"] == 200
    assert out["workers"] and all(w["status"] in ("READY", "BUSY") for w in out["workers"])
    assert out["unknown_execution"]["status"] == 400  # Abaco: a missing execution is a 400


def test_state(abaco_serve: Served) -> None:
    out = run_driver("agavepy", "agave_state.py", abaco_serve, COUNTER_ACTOR)
    assert out["initial"] == {"state": {}}
    assert out["updated"]["state"] == {"count": 2}  # updateState returns the actor
    assert out["after_update"] == {"state": {"count": 2}}
    assert out["execution"]["status"] == "COMPLETE", out["logs"]
    assert "count=5" in out["logs"]  # the execution saw state 2, added 3, and updated it
    assert out["after_execution"] == {"state": {"count": 5}}
    assert out["raw_string_state"]["status"] == 400
    assert out["stateless_get"] == {
        "status": 404,
        "message": "actor is stateless.",
        "envelope_status": "error",
    }
    assert out["stateless_update"]["status"] == 404


def test_abaco_executor(abaco_serve: Served) -> None:
    """agavepy's own AbacoExecutor: the function pickled by the client venv's cloudpickle runs in our
    function runner (abaco-nb/py3-func on the process runtime) and comes back through /results."""
    out = run_driver("agavepy", "agave_executor.py", abaco_serve)
    assert out["status"] == "READY"
    assert out["submit"] == [13]
    assert out["blocking"] == [11]
    assert out["map"] == [[2], [5]]
    assert out["failing_done_poll"] == []  # no result frame; the execution still ends COMPLETE
    assert "ValueError: boom from the executor" in out["failing_logs"]


def test_agavepy_actors_get_context_inside_an_execution(abaco_serve: Served) -> None:
    """A reactor written for Abaco, using the real ``agavepy.actors.get_context`` (the agavepy venv's
    interpreter as a ``local:`` actor): every key it reads from the environment is set."""
    image = (
        f"local:{client_python('agavepy')} -c '"
        "import json; from agavepy.actors import get_context; c = get_context(); "
        'keys = ["raw_message", "content_type", "execution_id", "username", "state", "actor_dbid", '
        '"actor_id", "message_dict", "raw_message_parse_log"]; '
        'print("CONTEXT=" + json.dumps({k: c[k] for k in keys}))\''
    )
    actor = abaco_serve.register({"image": image, "stateless": False})
    abaco_serve.request("POST", f"/actors/{actor['id']}/state", json={"n": 1})
    sent = abaco_serve.request("POST", f"/actors/{actor['id']}/messages", json={"x": 1, "y": "z"})
    execution_id = sent.json()["result"]["execution_id"]
    execution = abaco_serve.wait_execution(actor["id"], execution_id)
    logs = abaco_serve.request("GET", f"/actors/{actor['id']}/executions/{execution_id}/logs").json()
    assert execution["status"] == "COMPLETE" and execution["exit_code"] == 0, logs
    line = [x for x in logs["result"]["logs"].splitlines() if x.startswith("CONTEXT=")][0]
    context = json.loads(line.removeprefix("CONTEXT="))
    assert context["raw_message"] == "{'x': 1, 'y': 'z'}"  # a JSON message arrives as its Python repr
    assert context["message_dict"] == {"x": 1, "y": "z"}  # ... so agavepy 0.9.5's literal_eval parses it
    assert context["raw_message_parse_log"] == ""
    assert context["content_type"] == "application/json"  # agavepy reads _abaco_Content-Type
    assert context["execution_id"] == execution_id and context["actor_id"] == actor["id"]
    assert context["actor_dbid"].endswith(actor["id"]) and context["username"]
    assert context["state"] == "{'n': 1}"  # agavepy hands the state over as the string it finds
    abaco_serve.request("DELETE", f"/actors/{actor['id']}")


@pytest.mark.docker
def test_abaco_executor_with_our_image_on_docker(tmp_path, built_images) -> None:
    """The same agavepy AbacoExecutor run against the docker runtime: its pickled functions run in the
    real abaco-nb/py3-func container and the results come back over the results socket."""
    from tests.serve import start_serve

    served = start_serve(tmp_path / "docker", runtime="docker", token="agave-docker")
    try:
        out = run_driver("agavepy", "agave_executor.py", served, timeout=300)
    finally:
        served.stop()
    assert out["submit"] == [13] and out["blocking"] == [11] and out["map"] == [[2], [5]]
    assert out["failing_done_poll"] == [] and "ValueError: boom from the executor" in out["failing_logs"]
