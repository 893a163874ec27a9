"""The seed document's curl examples, replayed against a real ``abaco-nb serve --runtime process``.

The commands are taken from ../shared/seed/abaco-reactors-and-executors.txt when it is there (an
embedded copy otherwise, checked against the seed when both exist). The seed's export dropped every
URL (``https://api.tacc.utexas.edu/actors/v2/...``) together with the line break before it; putting
``$BASE/actors/v2/`` back is the only change, as a user would change the base URL. ``$TOKEN`` is the
service token. The process runtime runs ``abacosamples/test`` as the same shell script as the
image, so the examples need no Docker.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from tests.server_ext import serve_fixture
from tests.server_ext.serve_fixture import REPO, Served

abaco_serve = serve_fixture.abaco_serve  # the session's shared server

SEED = REPO.parent / "shared" / "seed" / "abaco-reactors-and-executors.txt"

# The seed's curl commands verbatim (without the leading "$ "), in the order the seed gives them.
EMBEDDED = {
    "register": 'curl -H "Authorization: Bearer $TOKEN" \\\n-H "Content-Type: application/json" \\\n'
    '-d \'{"image": "abacosamples/test", "name": "test", "description": "My test actor using the '
    'abacosamples image.", "default_environment":{"key1": "value1", "key2": "value2"} }\' \\',
    "update": 'curl -X PUT -H "Authorization: Bearer $TOKEN" \\\n-H "Content-Type: application/json" \\\n'
    '-d \'{"image": "abacosamples/test", "name": "test", "description": "My test actor using the '
    'abacosamples image.", "default_environment":{"key1": "value1", "key2": "new_value"} }\' \\$REACTOR_ID',
    "update_force": 'curl -X PUT -H "Authorization: Bearer $TOKEN" \\\n-H "Content-Type: application/json" \\\n'
    '-d \'{"image": "abacosamples/test", "name": "test", "force": True, "description": "My test '
    'actor using the abacosamples image.", "default_environment":{"key1": "value1", "key2": '
    '"new_value"} }\' \\$REACTOR_ID',
    "send_raw": 'curl -H "Authorization: Bearer $TOKEN" -d "message=some test message"$REACTOR_ID/messages',
    "send_json": 'curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d '
    '\'{"username": "jdoe", "application_id": "print-env-cli-DggdGbK-0.1.0" }\'$REACTOR_ID/messages ',
    "send_override": 'curl -H "Authorization: Bearer $TOKEN" -d "message=some test message"'
    "$REACTOR_ID/messages?key1=valueABC",
    "get_execution": 'curl -H "Authorization: Bearer $TOKEN"$REACTOR_ID/executions/$EXECUTION_ID',
    "get_logs": 'curl -H "Authorization: Bearer $TOKEN"$REACTOR_ID/executions/$EXECUTION_ID/logs',
}

# The execution fields of the seed's example response (camelCase, as TACC's production showed them).
SEED_EXECUTION_FIELDS = {
    "_links",
    "actorId",
    "apiServer",
    "cpu",
    "executor",
    "exitCode",
    "finalState",
    "id",
    "io",
    "messageReceivedTime",
    "runtime",
    "startTime",
    "status",
    "workerId",
}
SEED_FINAL_STATE_FIELDS = {
    "Dead",
    "Error",
    "ExitCode",
    "FinishedAt",
    "OOMKilled",
    "Paused",
    "Pid",
    "Restarting",
    "Running",
    "StartedAt",
    "Status",
}


def seed_commands(text: str) -> list[str]:
    """Every ``$ curl`` command of the seed, continuation lines joined as written."""
    commands, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("$ curl"):
            command = [line[2:]]
            while command[-1].endswith("\\") and lines[i + len(command)].strip():
                command.append(lines[i + len(command)])
            commands.append("\n".join(command))
    return commands


def commands() -> dict[str, str]:
    if SEED.exists():
        found = seed_commands(SEED.read_text())
        assert len(found) == len(EMBEDDED), found
        return dict(zip(EMBEDDED, found, strict=True))
    return EMBEDDED


def restore_url(command: str) -> str:
    """Put back the base URL the seed's export dropped: a trailing ``\\`` (registration) continues to
    ``$BASE/actors/v2``; ``$REACTOR_ID`` (glued to the previous word, or after ``\\``) gets its prefix."""
    if command.rstrip().endswith("\\"):
        return command.rstrip() + "\n$BASE/actors/v2"
    return re.sub(r"\s*\\?\$REACTOR_ID", " $BASE/actors/v2/$REACTOR_ID", command)


def curl(served: Served, name: str, **env: str) -> dict[str, Any]:
    """Run one seed command by bash with TOKEN/BASE (and REACTOR_ID, EXECUTION_ID) set; status + JSON."""
    command = restore_url(commands()[name]).replace("curl ", "curl -sS -w '\\n%{http_code}' ", 1)
    proc = subprocess.run(
        ["bash", "-c", command],
        env={"PATH": "/usr/bin:/bin", "TOKEN": served.token, "BASE": served.url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    body, _, status = proc.stdout.rpartition("\n")
    return {"status": int(status), "json": json.loads(body), "command": command}


def test_embedded_commands_are_the_seeds() -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not beside this checkout")
    assert seed_commands(SEED.read_text()) == list(EMBEDDED.values())


def test_register_and_update(abaco_serve: Served) -> None:
    registered = curl(abaco_serve, "register")
    assert registered["status"] == 200, registered
    actor = registered["json"]["result"]
    assert registered["json"]["status"] == "success"
    assert actor["image"] == "abacosamples/test" and actor["name"] == "test"
    assert actor["default_environment"] == {"key1": "value1", "key2": "value2"}
    assert actor["status"] == "SUBMITTED" and actor["revision"] == 1
    assert abaco_serve.wait_ready(actor["id"])["status"] == "READY"

    # PUT without force, same image: updated in place, no new revision.
    updated = curl(abaco_serve, "update", REACTOR_ID=actor["id"])
    assert updated["status"] == 200, updated
    assert updated["json"]["result"]["default_environment"]["key2"] == "new_value"
    assert updated["json"]["result"]["revision"] == 1 and updated["json"]["result"]["name"] == "test"

    # The seed's "force": True is Python, not JSON. Abaco's Flask JSON parsing refused that body with
    # a 400 too; the message says what is wrong and where.
    forced = curl(abaco_serve, "update_force", REACTOR_ID=actor["id"])
    assert forced["status"] == 400, forced
    assert forced["json"]["status"] == "error" and forced["json"]["result"] is None
    assert "not valid JSON" in forced["json"]["message"]
    assert abaco_serve.request("GET", f"/actors/{actor['id']}").json()["result"]["revision"] == 1

    # The same command with JSON's true forces a new revision (a re-check of the image).
    fixed = commands()["update_force"].replace('"force": True', '"force": true')
    proc = subprocess.run(
        ["bash", "-c", restore_url(fixed)],
        env={
            "PATH": "/usr/bin:/bin",
            "TOKEN": abaco_serve.token,
            "BASE": abaco_serve.url,
            "REACTOR_ID": actor["id"],
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(proc.stdout)["result"]
    assert result["revision"] == 2 and result["status"] == "SUBMITTED"
    assert abaco_serve.wait_ready(actor["id"])["status"] == "READY"

    # A message now sees the updated default environment.
    sent = curl(abaco_serve, "send_raw", REACTOR_ID=actor["id"])
    execution_id = sent["json"]["result"]["execution_id"]
    abaco_serve.wait_execution(actor["id"], execution_id)
    logs = curl(abaco_serve, "get_logs", REACTOR_ID=actor["id"], EXECUTION_ID=execution_id)
    assert "key2=new_value" in logs["json"]["result"]["logs"].splitlines()


def test_messages_executions_and_logs(abaco_serve: Served) -> None:
    actor_id = curl(abaco_serve, "register")["json"]["result"]["id"]
    abaco_serve.wait_ready(actor_id)

    raw = curl(abaco_serve, "send_raw", REACTOR_ID=actor_id)
    as_json = curl(abaco_serve, "send_json", REACTOR_ID=actor_id)
    override = curl(abaco_serve, "send_override", REACTOR_ID=actor_id)
    for sent in (raw, as_json, override):
        assert sent["status"] == 200 and sent["json"]["status"] == "success", sent
    assert raw["json"]["result"]["msg"] == "some test message"
    assert as_json["json"]["result"]["msg"] == {
        "username": "jdoe",
        "application_id": "print-env-cli-DggdGbK-0.1.0",
    }
    ids = {
        name: s["json"]["result"]["execution_id"]
        for name, s in (("raw", raw), ("json", as_json), ("override", override))
    }
    for execution_id in ids.values():
        abaco_serve.wait_execution(actor_id, execution_id)

    # GET the execution exactly as the seed does (snake_case by default) ...
    got = curl(abaco_serve, "get_execution", REACTOR_ID=actor_id, EXECUTION_ID=ids["raw"])
    assert got["status"] == 200 and got["json"]["message"] == "Actor execution retrieved successfully."
    execution = got["json"]["result"]
    assert execution["status"] == "COMPLETE" and execution["exit_code"] == 0
    assert execution["actor_id"] == actor_id and execution["id"] == ids["raw"]
    assert execution["runtime"] >= 2  # the test script sleeps 2 s; runtime is in seconds
    # ... and with ?case=camel: every field of the seed's example response, in its spelling.
    camel = curl(abaco_serve, "get_execution", REACTOR_ID=actor_id, EXECUTION_ID=ids["raw"] + "?case=camel")
    result = camel["json"]["result"]
    assert SEED_EXECUTION_FIELDS <= set(result), SEED_EXECUTION_FIELDS - set(result)
    assert SEED_FINAL_STATE_FIELDS <= set(result["finalState"])
    assert set(result["_links"]) == {"logs", "owner", "self"}
    assert result["finalState"]["Status"] == "exited" and result["finalState"]["ExitCode"] == 0
    assert result["exitCode"] == 0 and result["workerId"] and result["executor"]
    assert set(camel["json"]) >= {"message", "result", "status", "version"}

    logs = {
        name: curl(abaco_serve, "get_logs", REACTOR_ID=actor_id, EXECUTION_ID=eid)["json"]
        for name, eid in ids.items()
    }
    for envelope in logs.values():
        assert envelope["message"] == "Logs retrieved successfully." and envelope["status"] == "success"
        assert set(envelope["result"]["_links"]) == {"execution", "owner", "self"}
    raw_lines = logs["raw"]["result"]["logs"].splitlines()
    assert "Contents of MSG: some test message" in raw_lines
    assert "key1=value1" in raw_lines and "key2=value2" in raw_lines
    json_logs = logs["json"]["result"]["logs"]
    assert (
        "Contents of MSG: {'username': 'jdoe', 'application_id': 'print-env-cli-DggdGbK-0.1.0'}" in json_logs
    )
    assert "_abaco_Content_Type=application/json" in json_logs.splitlines()
    override_lines = logs["override"]["result"]["logs"].splitlines()
    assert "Contents of MSG: some test message" in override_lines
    assert "key1=valueABC" in override_lines and "key2=value2" in override_lines
    assert f"_abaco_execution_id={ids['override']}" in override_lines
