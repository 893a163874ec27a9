"""The execution environment from outside, against a real ``abaco-nb serve`` (issue 9).

A query parameter (or a ``default_environment`` entry) becomes a variable only when it is a plain
identifier that no loader, interpreter or shell acts on and that is not the contract's; any other is a
400 naming it, before anything is queued. The rule is ``server_ext/service/environment.py``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from server_ext.service import environment
from tests.server_ext import serve_fixture
from tests.server_ext.serve_fixture import Served, ok, python_command, refused

abaco_serve = serve_fixture.abaco_serve

DUMP_ENV = python_command("import os, json; print(json.dumps(dict(os.environ)))")
REFUSED_QUERY = [
    "BASH_FUNC_echo%%",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "BASH_ENV",
    "ENV",
    "PATH",
    "HOME",
    "IFS",
    "SHELLOPTS",
    "PS4",
    "PERL5OPT",
    "NODE_OPTIONS",
    "DYLD_INSERT_LIBRARIES",
    "ABACO_NB_BINARY_DATA",
    "_abaco_access_token",
    "_abaco_actor_id",
    "MSG",
    "_actor_configs",
    "with space",
    "a=b",
    "9lives",
]


@pytest.fixture(scope="module")
def dumper(abaco_serve: Served) -> Any:
    actor = abaco_serve.register({"image": DUMP_ENV, "default_environment": {"key1": "default"}})
    yield actor
    abaco_serve.request("DELETE", f"/actors/{actor['id']}")


@pytest.mark.parametrize("name", REFUSED_QUERY)
def test_a_refused_query_name_is_a_400_naming_it(
    abaco_serve: Served, dumper: dict[str, Any], name: str
) -> None:
    aid = dumper["id"]
    before = ok(abaco_serve.request("GET", f"/actors/{aid}/executions"))["total_executions"]
    path = f"/actors/{aid}/messages?{quote(name, safe='')}={quote('() { id; }')}&key1=x"
    message = refused(abaco_serve.request("POST", path, data={"message": "hi"}))
    assert "Invalid query parameter" in message and repr(name) in message, message
    assert ok(abaco_serve.request("GET", f"/actors/{aid}/executions"))["total_executions"] == before


def test_allowed_names_reach_the_execution_and_nothing_else_does(
    abaco_serve: Served, dumper: dict[str, Any]
) -> None:
    aid = dumper["id"]
    path = f"/actors/{aid}/messages?key1=override&Mixed_Case2=y&_private=z&token={abaco_serve.token}"
    sent = ok(abaco_serve.request("POST", path, data={"message": "hi"}))
    execution = abaco_serve.wait_execution(aid, sent["execution_id"])
    assert execution["status"] == "COMPLETE", execution
    logs = ok(abaco_serve.request("GET", f"/actors/{aid}/executions/{sent['execution_id']}/logs"))["logs"]
    env = json.loads(logs.strip().splitlines()[-1])
    assert env["key1"] == "override" and env["Mixed_Case2"] == "y" and env["_private"] == "z"
    assert env["MSG"] == "hi" and "token" not in env
    assert abaco_serve.token not in logs


@pytest.mark.parametrize(
    "name", ["PATH", "LD_PRELOAD", "BASH_FUNC_x%%", "PYTHONHOME", "_abaco_api_server", "A=B", "A\0B", ""]
)
def test_default_environment_follows_the_same_rule(abaco_serve: Served, name: str) -> None:
    body = {"image": DUMP_ENV, "default_environment": {name: "x"}}
    message = refused(abaco_serve.request("POST", "/actors", json=body))
    assert message.startswith("Invalid default_environment") and repr(name) in message, message


def test_a_nul_in_a_value_is_refused(abaco_serve: Served, dumper: dict[str, Any]) -> None:
    body = {"image": DUMP_ENV, "default_environment": {"ok_name": "a\0b"}}
    assert "NUL" in refused(abaco_serve.request("POST", "/actors", json=body))
    path = f"/actors/{dumper['id']}/messages?key1=a%00b"
    assert "NUL" in refused(abaco_serve.request("POST", path, data={"message": "hi"}))


def test_the_rule_is_one_pure_function() -> None:
    assert environment.allowed("key1") and environment.allowed("_x") and environment.allowed("LDX")
    for name in REFUSED_QUERY:
        assert not environment.allowed(name), name
    assert environment.only_allowed({"PATH": "/x", "ok": "1"}) == {"ok": "1"}
