"""abaco_nb.actors and abaco_nb.func_runner against environment variables and host sockets, no Docker.

The process runtime runs executions this way (host paths in ABACO_NB_BINARY_DATA /
ABACO_NB_RESULTS_SOCK), so these tests are also that runtime's contract.
"""

from __future__ import annotations

import ast
import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from abaco_nb import actors, func_runner
from abaco_nb.actors import (
    AbacoError,
    get_binary_message,
    get_client,
    get_context,
    send_bytes_result,
    send_python_result,
    update_state,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("_abaco") or key in ("MSG", actors.ENV_BINARY_DATA, actors.ENV_RESULTS_SOCKET):
            monkeypatch.delenv(key)
    return monkeypatch


class Results:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)

    def frames(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4 << 20))
            except (TimeoutError, BlockingIOError):
                return out


@pytest.fixture
def results(tmp_path, clean_env) -> Iterator[Results]:
    r = Results(str(tmp_path / "r.sock"))
    clean_env.setenv(actors.ENV_RESULTS_SOCKET, r.path)
    yield r
    r.sock.close()


# ---------------------------------------------------------------------------------------------------------
# get_context
# ---------------------------------------------------------------------------------------------------------


def test_context_keys_from_env(clean_env):
    env = {
        "MSG": "{'count': 3, 'flag': True}",
        "_abaco_Content_Type": "application/json",
        "_abaco_execution_id": "E1",
        "_abaco_username": "alice",
        "_abaco_actor_state": "{'total': 7}",
        "_abaco_actor_dbid": "TENANT_A1",
        "_abaco_actor_id": "A1",
        "_abaco_container_repo": "abaco-nb/test",
        "_abaco_actor_name": "acc",
        "_abaco_worker_id": "W1",
        "key1": "value1",
    }
    for k, v in env.items():
        clean_env.setenv(k, v)
    ctx = get_context()
    assert ctx["raw_message"] == env["MSG"]
    assert ctx["message_dict"] == {"count": 3, "flag": True}
    assert ctx.message_dict.count == 3  # AttrDict, as agavepy 0.9.5
    assert ctx["content_type"] == "application/json"  # falls back to the underscore spelling
    assert (ctx.execution_id, ctx.username, ctx.actor_dbid, ctx.actor_id) == (
        "E1",
        "alice",
        "TENANT_A1",
        "A1",
    )
    assert (ctx.actor_repo, ctx.actor_name, ctx.worker_id) == ("abaco-nb/test", "acc", "W1")
    assert ctx["state"] == {"total": 7}
    assert ctx["raw_state"] == "{'total': 7}"
    assert ctx["raw_message_parse_log"] == ""
    # every env var is merged in
    assert ctx["key1"] == "value1" and ctx["_abaco_Content_Type"] == "application/json"


def test_context_hyphen_content_type_wins(clean_env):
    clean_env.setenv("_abaco_Content-Type", "str")
    clean_env.setenv("_abaco_Content_Type", "application/json")
    assert get_context()["content_type"] == "str"


@pytest.mark.parametrize(
    ("msg", "expected", "logged"),
    [
        ('{"x": true, "y": null}', {"x": True, "y": None}, False),  # JSON fallback
        ("{'a': 1}", {"a": 1}, False),  # Python repr, as Abaco formats JSON messages
        ("hello world", {}, True),  # a plain string: no dict, a parse note
        ("[1, 2]", {}, False),  # parses, but not a dict
    ],
)
def test_message_dict_parsing(clean_env, msg, expected, logged):
    clean_env.setenv("MSG", msg)
    ctx = get_context()
    assert ctx["message_dict"] == expected
    assert bool(ctx["raw_message_parse_log"]) is logged


def test_state_parsed_when_possible(clean_env):
    clean_env.setenv("_abaco_actor_state", "5")
    assert get_context()["state"] == 5
    clean_env.setenv("_abaco_actor_state", "not python")
    assert get_context()["state"] == "not python"
    clean_env.delenv("_abaco_actor_state")
    ctx = get_context()
    assert ctx["state"] is None and ctx["raw_message"] is None and ctx["message_dict"] == {}


# ---------------------------------------------------------------------------------------------------------
# Binary messages and results
# ---------------------------------------------------------------------------------------------------------


def test_binary_message_regular_file_5mb(tmp_path, clean_env):
    payload = os.urandom(5 * 1024 * 1024)
    path = tmp_path / "bin"
    path.write_bytes(payload)
    clean_env.setenv(actors.ENV_BINARY_DATA, str(path))
    assert get_binary_message() == payload


def test_binary_message_prefilled_fifo(tmp_path, clean_env):
    """Real Abaco's FIFO: pre-filled before the reader starts; read until EAGAIN."""
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    writer = os.open(path, os.O_RDWR)
    try:
        os.write(writer, b"abc" * 1000)
        clean_env.setenv(actors.ENV_BINARY_DATA, path)
        assert get_binary_message() == b"abc" * 1000
    finally:
        os.close(writer)


def test_binary_message_missing_is_file_not_found(tmp_path, clean_env):
    clean_env.setenv(actors.ENV_BINARY_DATA, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        get_binary_message()


def test_one_send_one_frame_up_to_200kb(results):
    send_bytes_result(b"a" * 200_000)
    send_bytes_result(b"b")
    assert results.frames() == [b"a" * 200_000, b"b"]


def test_send_python_result_is_cloudpickle(results):
    send_python_result({"answer": 42, "f": [1.5]})
    assert [cloudpickle.loads(f) for f in results.frames()] == [{"answer": 42, "f": [1.5]}]


def test_send_errors_are_abaco_errors(tmp_path, results, clean_env):
    with pytest.raises(AbacoError, match="did not receive bytes"):
        send_bytes_result("text")  # type: ignore[arg-type]
    with pytest.raises(AbacoError, match="Could not serialize"):
        send_python_result(threading.Lock())
    clean_env.setenv(actors.ENV_RESULTS_SOCKET, str(tmp_path / "missing.sock"))
    with pytest.raises(AbacoError, match="Exception connecting to results socket"):
        send_bytes_result(b"x")


# ---------------------------------------------------------------------------------------------------------
# The API client: over a unix socket and over TCP
# ---------------------------------------------------------------------------------------------------------


class FakeAbaco(http.server.BaseHTTPRequestHandler):
    """Records requests; answers with Abaco's envelope. Actor 'stateless' has no state (404)."""

    seen: list[dict[str, Any]] = []
    state: Any = {"count": 1}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _reply(self, code: int, result: Any, message: str = "ok") -> None:
        status = "success" if code < 400 else "error"
        body = json.dumps({"message": message, "result": result, "status": status, "version": "t"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "type": self.headers.get("Content-Type"),
                "body": body,
            }
        )
        return body

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        if "stateless" in self.path:
            self._reply(404, None, "actor is stateless.")
        else:
            self._reply(200, {"state": type(self).state})

    def do_POST(self) -> None:  # noqa: N802
        body = self._record()
        if self.path.split("?")[0].endswith("/state"):
            type(self).state = json.loads(body)
            self._reply(200, {"id": "A1", "state": type(self).state})
        else:
            self._reply(200, {"execution_id": "E9", "msg": "ok"})


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)


class TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@pytest.fixture(params=["unix", "tcp"])
def api_server(request, tmp_path, clean_env) -> Iterator[str]:
    FakeAbaco.seen = []
    FakeAbaco.state = {"count": 1}
    if request.param == "unix":
        path = str(tmp_path / "api.sock")
        server: Any = UnixHTTPServer(path, FakeAbaco)
        url = "http+unix://" + urllib.parse.quote(path, safe="")
    else:
        server = TCPServer(("127.0.0.1", 0), FakeAbaco)
        url = f"http://127.0.0.1:{server.server_address[1]}/abaco"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    clean_env.setenv("_abaco_api_server", url)
    clean_env.setenv("_abaco_access_token", "tok")
    clean_env.setenv("_abaco_actor_id", "A1")
    yield url
    server.shutdown()
    server.server_close()


def test_update_and_get_state(api_server):
    prefix = "/abaco" if api_server.startswith("http://") else ""
    result = update_state({"count": 2})
    assert result["state"] == {"count": 2}
    assert get_client().actors.getState(actorId="A1") == {"state": {"count": 2}}
    post, get = FakeAbaco.seen
    assert post["method"] == "POST" and post["path"] == f"{prefix}/actors/A1/state"
    assert post["auth"] == "Bearer tok" and post["type"] == "application/json"
    assert json.loads(post["body"]) == {"count": 2}
    assert get["method"] == "GET" and get["path"] == f"{prefix}/actors/A1/state"


def test_string_state_sent_as_json(api_server):
    update_state("abc")
    assert json.loads(FakeAbaco.seen[0]["body"]) == "abc"


def test_send_messages(api_server):
    client = get_client()
    assert client.actors.sendMessage(actorId="B2", body="hi", environment={"k": "v"})["execution_id"] == "E9"
    client.actors.sendMessage(actorId="B2", body={"count": 1})
    client.actors.sendBinaryMessage(actorId="B2", message=b"\x00\x01")
    first, second, third = FakeAbaco.seen
    assert first["path"].endswith("/actors/B2/messages?k=v") and json.loads(first["body"]) == {
        "message": "hi"
    }
    assert json.loads(second["body"]) == {"count": 1}
    assert third["type"] == "application/octet-stream" and third["body"] == b"\x00\x01"


def test_http_errors_carry_the_envelope_message(api_server):
    with pytest.raises(AbacoError, match="404.*actor is stateless"):
        get_client().actors.getState(actorId="stateless")


def test_client_needs_api_server(clean_env):
    with pytest.raises(AbacoError, match="_abaco_api_server"):
        get_client()
    clean_env.setenv("_abaco_api_server", "http+unix://%2Fnonexistent%2Fapi.sock")
    clean_env.setenv("_abaco_actor_id", "A1")
    with pytest.raises(AbacoError, match="cannot reach"):
        update_state(1)


# ---------------------------------------------------------------------------------------------------------
# The function runner, in-process and as `python -m abaco_nb.func_runner`
# ---------------------------------------------------------------------------------------------------------


def _call(tmp_path: Path, clean_env: pytest.MonkeyPatch, func: Any, *args: Any, **kwargs: Any) -> None:
    path = tmp_path / "call.bin"
    path.write_bytes(cloudpickle.dumps({"func": func, "args": args, "kwargs": kwargs}))
    clean_env.setenv(actors.ENV_BINARY_DATA, str(path))


def test_runner_sends_result(tmp_path, results, clean_env, capsys):
    _call(tmp_path, clean_env, lambda a, b, c=0: a + b + c, 5, 7, c=5)
    assert func_runner.main() == 0
    assert [cloudpickle.loads(f) for f in results.frames()] == [17]
    assert "result: 17" in capsys.readouterr().out


def test_runner_failure_exits_1_without_result(tmp_path, results, clean_env, capsys):
    def boom():
        raise KeyError("missing")

    _call(tmp_path, clean_env, boom)
    assert func_runner.main() == 1
    assert results.frames() == []
    assert "KeyError: 'missing'" in capsys.readouterr().err


def test_runner_rejects_a_non_call_message(tmp_path, results, clean_env, capsys):
    (tmp_path / "call.bin").write_bytes(cloudpickle.dumps([1, 2]))
    clean_env.setenv(actors.ENV_BINARY_DATA, str(tmp_path / "call.bin"))
    assert func_runner.main() == 1
    assert "not a pickled" in capsys.readouterr().err


def test_runner_as_module_with_only_stdlib_and_cloudpickle(tmp_path, results, clean_env):
    """As in the image: abaco_nb is just actors.py + func_runner.py + an empty __init__, cloudpickle beside."""
    lib = tmp_path / "lib" / "abaco_nb"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    for name in ("actors.py", "func_runner.py"):
        (lib / name).write_bytes((REPO / "abaco_nb" / name).read_bytes())
    _call(tmp_path, clean_env, lambda: {"ok": True})
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "lib")}
    proc = subprocess.run(
        [sys.executable, "-s", "-m", "abaco_nb.func_runner"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert [cloudpickle.loads(f) for f in results.frames()] == [{"ok": True}]
    assert "result: {'ok': True}" in proc.stdout
    probe = subprocess.run(
        [sys.executable, "-s", "-c", "import abaco_nb.func_runner as m; print(m.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == str(lib / "func_runner.py")  # the copy ran, not the real package


def test_actors_module_imports_only_stdlib():
    """The in-image copy must not need the real package's dependencies."""
    tree = ast.parse((REPO / "abaco_nb" / "actors.py").read_text())
    top_level = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
        if not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
    }
    assert top_level <= set(sys.stdlib_module_names)
