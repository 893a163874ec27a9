"""%abaco magics in a real IPython shell against a real ``abaco-nb serve --runtime process``."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from IPython.core.error import UsageError

from abaco_nb.client import Client
from abaco_nb.records import ActorList, ExecutionList
from tests.serve import start_serve


def abaco(ip, line: str):
    return ip.run_line_magic("abaco", line)


def test_connect_returns_a_client_with_reprs(ip, served):
    client = abaco(ip, f"connect {served.url} --token {served.token}")
    assert isinstance(client, Client)
    assert served.url in repr(client) and "given to %abaco connect" in client._repr_html_()


def test_register_send_wait_shows_logs_with_env_override(ip):
    actor = abaco(ip, "register abaco-nb/test --name mtest -e key1=value1 -e SLEEP=0")
    assert actor.status == "READY" and actor.default_environment["key1"] == "value1"
    assert "mtest" in actor._repr_html_() and "READY" in repr(actor)
    done = abaco(ip, 'send mtest "some test message" -q key1=valueABC --wait')
    assert done.status == "COMPLETE"
    assert "Contents of MSG: some test message" in done.logs
    assert "key1=valueABC" in done.logs
    assert "COMPLETE" in done._repr_html_() and "some test message" in repr(done)


def test_send_json_and_the_send_cell_magic(ip):
    abaco(ip, "register abaco-nb/test --name mjson -e SLEEP=0")
    done = abaco(ip, """send mjson '{"a": 1}' --wait""")
    assert "Contents of MSG:" in done.logs and "{'a': 1}" in done.logs
    cell = ip.run_cell_magic("abaco", "send mjson --wait", '{"b": [1, 2]}\n')
    assert "{'b': [1, 2]}" in cell.logs
    text = ip.run_cell_magic("abaco", "send mjson --wait", "plain text body\n")
    assert "Contents of MSG: plain text body" in text.logs


def test_actors_executions_and_logs_are_assignable_tables(ip):
    abaco(ip, "register abaco-nb/test --name mlist -e SLEEP=0")
    receipt = abaco(ip, 'send mlist "one"')
    assert receipt.execution_id in receipt._repr_html_()
    abaco(ip, f"execution mlist {receipt.execution_id}")
    ip.run_cell("actors = %abaco actors")
    actors = ip.user_ns["actors"]
    assert isinstance(actors, ActorList) and "mlist" in repr(actors) and "<table" in actors._repr_html_()
    abaco(ip, 'send mlist "two" --wait')
    executions = abaco(ip, "executions mlist")
    assert isinstance(executions, ExecutionList) and len(executions) == 2
    assert all(e.status == "COMPLETE" and e.exit_code == 0 for e in executions)
    assert "abaco-status-complete" in executions._repr_html_()
    latest = abaco(ip, "logs mlist")
    assert "Contents of MSG: two" in latest and "<pre" in latest._repr_html_()
    first = abaco(ip, f"logs mlist {receipt.execution_id}")
    assert "Contents of MSG: one" in first


def test_logs_follow_streams_a_running_execution(ip):
    abaco(ip, "register abaco-nb/test --name mfollow -e SLEEP=1")
    receipt = abaco(ip, 'send mfollow "followed"')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        execution = abaco(ip, f"logs mfollow {receipt.execution_id} --follow")
    assert execution.status == "COMPLETE"
    assert "Contents of MSG: followed" in out.getvalue() and "Contents of root file system" in out.getvalue()


def test_state_get_and_set(ip):
    abaco(ip, "register abaco-nb/test --name mstate --stateful -e SLEEP=0")
    assert abaco(ip, "state mstate") == {}
    state = abaco(ip, """state mstate '{"count": 3}'""")
    assert state == {"count": 3} and "count" in state._repr_html_()
    assert abaco(ip, "state mstate").value == {"count": 3}


def test_workers_scale_and_delete(ip):
    actor = abaco(ip, "register abaco-nb/test --name mwork -e SLEEP=0")
    workers = abaco(ip, "workers mwork --num 2")
    assert len(workers) == 2 and "workers" in workers._repr_html_()
    notice = abaco(ip, "delete mwork")
    assert actor.id in notice
    assert actor.id not in [a.id for a in abaco(ip, "actors")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("send no-such-actor hi", "no actor with id or name 'no-such-actor'"),
        ("register", "the following arguments are required: image"),
        ("register abaco-nb/test -e novalue", "-e expects KEY=VALUE"),
        ('send x "unbalanced', "cannot parse the arguments"),
        ("frobnicate", "no command 'frobnicate'"),
        ("sned x hi", "did you mean 'send'"),
        ("send x hi --wiat", "did you mean --wait?"),
        ("send", "see %abaco help send"),
        ("register no/such-image --name bad", "needs a container"),
        ("connect http://127.0.0.1:9 --token x", "cannot reach the Abaco service"),
        ("help nothing", "no command 'nothing'"),
    ],
)
def test_bad_input_is_one_clear_line(ip, served, line, expected):
    with pytest.raises(UsageError) as info:
        abaco(ip, line)
    message = str(info.value)
    assert expected in message and "\n" not in message and "Traceback" not in message
    abaco(ip, f"connect {served.url} --token {served.token}")  # the failed connect must not stick


def test_help_documents_every_command(ip):
    text = abaco(ip, "help")
    for command in (
        "connect",
        "actors",
        "register",
        "update",
        "delete",
        "send",
        "executions",
        "logs",
        "state",
        "workers",
        "dashboard",
        "%%abaco send",
        "%%abaco actor",
        "%%abaco map",
    ):
        assert command in text
    assert "--follow" in abaco(ip, "help logs")
    assert "usage" in str(abaco(ip, "send --help"))


def test_actor_names_and_ids_tab_complete(ip):
    actor = abaco(ip, "register abaco-nb/test --name mcomplete -e SLEEP=0")
    _, names = ip.Completer.complete(line_buffer="%abaco send mcomp", cursor_pos=len("%abaco send mcomp"))
    assert "mcomplete" in names
    _, ids = ip.Completer.complete(line_buffer=f"%abaco logs {actor.id[:4]}", cursor_pos=12 + 4)
    assert actor.id in ids
    _, commands = ip.Completer.complete(line_buffer="%abaco reg", cursor_pos=len("%abaco reg"))
    assert commands == ["register"]


def test_update_changes_the_default_environment(ip):
    abaco(ip, "register abaco-nb/test --name mupd -e key1=a -e SLEEP=0")
    actor = abaco(ip, "update mupd -e key1=b -e SLEEP=0")
    assert actor.default_environment["key1"] == "b"
    assert "key1=b" in abaco(ip, 'send mupd "x" --wait').logs


def test_cell_actor_runs_a_handler_with_context_and_state(ip, served):
    source = """
from abaco_nb.actors import update_state

def handler(message, context):
    count = context.state if isinstance(context.state, int) else 0
    update_state(count + 1)
    print("got", message, "from", context.actor_name)
    return {"count": count + 1}
"""
    actor = ip.run_cell_magic("abaco", "actor mcell --stateful", source)
    assert actor.status == "READY" and actor.image == "abaco-nb/py3-func"
    first = ip.run_cell_magic("abaco", "send mcell --wait", '{"n": 1}')
    assert first.status == "COMPLETE", first.logs
    assert "got {'n': 1} from mcell" in first.logs
    abaco(ip, 'send mcell "second" --wait')
    assert abaco(ip, "state mcell") == 2
    client = Client(served.url, served.token)
    import cloudpickle

    assert cloudpickle.loads(client.result(actor.id, first.execution_id)) == {"count": 1}
    # re-running the cell updates the same actor instead of registering another
    again = ip.run_cell_magic("abaco", "actor mcell --stateful", source.replace('"got"', '"again"'))
    assert again.id == actor.id
    assert "again" in abaco(ip, 'send mcell "third" --wait').logs


def test_cell_actor_mistakes_are_one_line(ip):
    with pytest.raises(UsageError, match="syntax error on line 1"):
        ip.run_cell_magic("abaco", "actor mbad", "def handler(:\n")
    with pytest.raises(UsageError, match="several functions"):
        ip.run_cell_magic("abaco", "actor mbad", "def a(): pass\ndef b(): pass\n")
    with pytest.raises(UsageError, match="cell magics are"):
        ip.run_cell_magic("abaco", "nothing", "x")


def test_magic_results_survive_json_roundtrip_of_state(ip):
    abaco(ip, "register abaco-nb/test --name mjs --stateful -e SLEEP=0")
    abaco(ip, """state mjs '[1, "two", null]'""")
    assert json.loads(json.dumps(abaco(ip, "state mjs").value)) == [1, "two", None]


def test_sweep_cell_magic_maps_over_the_grid(ip):
    ip.run_cell("def scaled(a, b):\n    return a * 10 + b")
    ip.user_ns["bs"] = [1, 2]
    result = ip.run_cell_magic("abaco", "map a=range(3) b=bs -o sweep_out --wait", "scaled(a, b)")
    assert ip.user_ns["sweep_out"] is result and len(result) == 6
    assert result.results == [1, 2, 11, 12, 21, 22]
    assert result.table()[-1] == {"a": 2, "b": 2, "result": 22, "status": "done"}
    assert "6/6 finished" in result._repr_html_()
    with pytest.raises(UsageError, match="last line must be an expression"):
        ip.run_cell_magic("abaco", "map a=range(2)", "x = a")
    with pytest.raises(UsageError, match="cannot evaluate a"):
        ip.run_cell_magic("abaco", "map a=undefined_name", "a")


@pytest.mark.docker
def test_cell_actor_runs_in_the_executor_image_on_docker(built_images, tmp_path, served, ip):
    docker_served = start_serve(tmp_path / "docker", runtime="docker", token="docker-token")
    shell = ip  # start_ipython() returns the one global shell only once per process
    try:
        shell.run_line_magic("abaco", f"connect {docker_served.url} --token {docker_served.token}")
        source = "from abaco_nb.actors import update_state\n\ndef handler(context):\n    update_state(7)\n    print('in a container', context.actor_name)\n"
        shell.run_cell_magic("abaco", "actor mdocker --stateful", source)
        done = shell.run_line_magic("abaco", 'send mdocker "hi" --wait')
        assert done.status == "COMPLETE", done.logs
        assert "in a container mdocker" in done.logs
        assert shell.run_line_magic("abaco", "state mdocker") == 7
    finally:
        shell.run_line_magic("abaco", f"connect {served.url} --token {served.token}")
        docker_served.stop()


def test_options_go_anywhere_and_values_are_python_expressions(ip):
    abaco(ip, "register abaco-nb/test --name many -e SLEEP=0")
    done = abaco(ip, 'send many -q key1=early "options first" --wait')
    assert "Contents of MSG: options first" in done.logs and "key1=early" in done.logs
    ip.user_ns["offset"] = 100
    result = ip.run_cell_magic("abaco", "map a=range(2) b=[1, 2] --wait c=[{'k': offset}]", "a + b + c['k']")
    assert result.results == [101, 102, 102, 103]
    assert "4/4 finished" in result._repr_html_() and "pending" not in result._repr_html_()
    with pytest.raises(UsageError, match="did you mean --wait"):
        ip.run_cell_magic("abaco", "map a=[1] --wiat", "a")
    assert "usage" in str(abaco(ip, "help map")) or "%%abaco map" in abaco(ip, "help map")


def test_rerunning_register_reuses_the_named_actor_and_duplicates_are_named(ip, capsys):
    first = abaco(ip, "register abaco-nb/test --name mrerun -e SLEEP=0")
    again = abaco(ip, "register abaco-nb/test --name mrerun -e SLEEP=0")
    assert again.id == first.id and "reusing actor" in capsys.readouterr().err
    changed = abaco(ip, "register abaco-nb/test --name mrerun -e SLEEP=0 -e key1=new")
    assert changed.id == first.id and changed.default_environment["key1"] == "new"
    assert "updated it (default_environment)" in capsys.readouterr().err
    other = abaco(ip, "register abaco-nb/test --name mrerun -e SLEEP=0 --new")
    assert other.id != first.id
    abaco(ip, "actor mrerun")
    err = capsys.readouterr().err
    assert "2 actors are named 'mrerun'" in err and first.id in err


def test_a_failed_registration_says_how_to_fix_or_remove_it(ip):
    with pytest.raises(UsageError) as info:
        abaco(ip, "register no/such-image --name mbroken")
    assert "%abaco update" in str(info.value) and "%abaco delete" in str(info.value)
