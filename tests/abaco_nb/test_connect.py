"""``abaco_nb.connect()``: each way of finding the service, against real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from abaco_nb.client import AbacoConnectionError
from abaco_nb.connection import connect, connection_file_path
from tests.serve import start_serve
from tests.server_ext.test_extension_jupyter import start_jupyter


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: Any) -> Path:
    """No inherited service: an empty data dir and runtime dir, no ABACO_NB_* variables."""
    for key in ("ABACO_NB_URL", "ABACO_NB_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    return tmp_path


def stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def test_connection_file_path_agrees_with_the_server(isolated: Path, monkeypatch: Any) -> None:
    from server_ext.standalone import connection_file_path as server_path

    assert connection_file_path() == server_path() == str(isolated / "data" / "abaco-nb" / "connection.json")
    monkeypatch.delenv("JUPYTER_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(isolated / "xdg"))
    assert connection_file_path() == server_path()


def test_explicit_url_and_environment(isolated: Path, monkeypatch: Any) -> None:
    client = connect("http://127.0.0.1:9/abaco", token="t")
    assert client.how == "the url given to connect()" and client.token == "t"
    monkeypatch.setenv("ABACO_NB_URL", "http://127.0.0.1:9/abaco")
    monkeypatch.setenv("ABACO_NB_TOKEN", "from-env")
    client = connect()
    assert client.how.startswith("ABACO_NB_URL") and client.token == "from-env"
    assert connect("http://127.0.0.1:9/abaco/").token == "from-env"  # same URL: the env token goes with it


def test_connection_file_of_a_live_server_and_not_of_a_dead_one(isolated: Path) -> None:
    path = Path(connection_file_path())
    served = start_serve(isolated / "serve", runtime="process", token="tok")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": served.url, "token": "tok", "pid": served.proc.pid}))
    try:
        client = connect(start=False)
        assert client.how.startswith(f"connection file {path} (abaco-nb serve")
        assert client.actors() == []
    finally:
        served.stop()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path.write_text(json.dumps({"url": served.url, "token": "tok", "pid": int(dead.stdout)}))
    with pytest.raises(AbacoConnectionError, match="no Abaco service found"):
        connect(start=False)


def test_running_jupyter_server_with_the_extension(isolated: Path, monkeypatch: Any) -> None:
    db = isolated / "jd" / "abaco-nb" / "abaco.db"  # the default layout under data dir "jd"
    jupyter = start_jupyter(isolated / "jupyter", {"runtime": "process", "db_path": str(db)})
    try:
        # The kernel-less case: a script that shares the server's runtime dir finds it by its jpserver file.
        monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter.runtime_dir))
        client = connect(start=False)
        assert client.how.startswith(f"running Jupyter server {jupyter.url}")
        assert client.base_url == jupyter.url + "abaco"
        assert client.actors() == []
        # The extension's own connection file is found first when the data dir is the database's.
        monkeypatch.setenv("JUPYTER_DATA_DIR", str(isolated / "jd"))
        client = connect(start=False)
        assert "Jupyter server extension" in client.how
        assert client.actors() == []
    finally:
        jupyter.stop()


def test_starts_one_shared_server_even_when_two_processes_ask_at_once(isolated: Path) -> None:
    code = (
        "import abaco_nb; c = abaco_nb.connect(runtime='process'); c.actors(); print(c.base_url, '|', c.how)"
    )
    env = {**os.environ}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    info = json.loads(Path(connection_file_path()).read_text())
    try:
        lines = [out.decode().strip() for out, _err in outputs]
        assert all(p.returncode == 0 for p in procs), outputs
        urls = {line.split(" | ")[0] for line in lines}
        assert urls == {info["url"]}, lines  # one server for both
        hows = sorted(line.split(" | ")[1] for line in lines)
        assert hows[0].startswith("connection file") and hows[1].startswith("started abaco-nb serve"), hows
        started_err = next(err.decode() for out, err in outputs if b"started" in out)
        assert f"started abaco-nb serve (pid {info['pid']}" in started_err
        # The server outlives the process that started it: a later connect() reuses it.
        client = connect(start=False)
        assert client.how.startswith("connection file") and client.actors() == []
        # its log shows the token: private to the user, as the connection file and the database are
        directory = Path(connection_file_path()).parent
        for name in ("serve.log", "connection.json", "abaco.db"):
            assert (directory / name).stat().st_mode & 0o777 == 0o600, name
        assert directory.stat().st_mode & 0o777 == 0o700
    finally:
        stop_pid(int(info["pid"]))
