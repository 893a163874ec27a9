"""A real ``jupyter server`` subprocess with the extension, and a real kernel it started.

The kernel is started through the server's REST API (so it inherits the server's environment, as a
notebook's kernel does) and driven with ``jupyter_client`` over its connection file. Its code is the
same in both modes: ``abaco_nb.connect()``, register, send, read the logs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from jupyter_client.blocking.client import BlockingKernelClient

from tests.serve import start_serve, terminate

JUPYTER_TOKEN = "jupyter-test-token"
KERNEL_CODE = """
import os, abaco_nb
c = abaco_nb.connect()
print("HOW:", c.how)
print("REMOTE TOKEN VISIBLE:", "ABACO_NB_REMOTE_TOKEN" in os.environ)
a = c.register("abaco-nb/test", name="from-kernel", default_environment={"SLEEP": "0"})
c.wait_until_ready(a.id)
r = c.send(a.id, "hello from a kernel")
ex = c.execution(a.id, r.execution_id, wait=60)
print("STATUS:", ex.status)
print("LOGS:", c.logs(a.id, r.execution_id))
from abaco_nb import AbacoExecutor
def f(x):
    return 3 * x + 5
ex = AbacoExecutor(c, progress=False)
print("EXECUTOR:", ex.blocking_call(f, 3), [r.result()[0] for r in ex.map(f, range(4))])
ex.delete()
"""


@dataclass
class Jupyter:
    proc: subprocess.Popen[bytes]
    url: str  # ends with "/"
    runtime_dir: Path
    log: Path

    def api(self, path: str) -> str:
        return self.url + path

    @property
    def session(self) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"token {JUPYTER_TOKEN}"
        return s

    def stop(self) -> int:
        return terminate(self.proc, timeout=60)


def start_jupyter(tmp: Path, abaco: dict[str, Any], env: dict[str, str] | None = None) -> Jupyter:
    """``jupyter server`` on loopback with a token; config in a private config dir; ready when
    ``/api/status`` answers."""
    for name in ("config", "data", "runtime", "root"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    config = {
        "ServerApp": {
            "ip": "127.0.0.1",
            "port": 0,
            "open_browser": False,
            "allow_root": True,
            "root_dir": str(tmp / "root"),
            "jpserver_extensions": {"server_ext": True},
        },
        "IdentityProvider": {"token": JUPYTER_TOKEN},
        "AbacoApp": abaco,
    }
    (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    environ = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        **(env or {}),
    }
    for key in ("ABACO_NB_URL", "ABACO_NB_TOKEN"):
        environ.pop(key, None)
    log = tmp / f"jupyter-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server"], stdout=out, stderr=subprocess.STDOUT, env=environ
        )
    info_file = tmp / "runtime" / f"jpserver-{proc.pid}.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter server exited: {log.read_text()[-3000:]}")
        if info_file.exists():
            try:
                url = json.loads(info_file.read_text())["url"]
                if requests.get(
                    url + "api/status", timeout=2, headers={"Authorization": f"token {JUPYTER_TOKEN}"}
                ).ok:
                    return Jupyter(proc, url, tmp / "runtime", log)
            except (ValueError, KeyError, requests.RequestException):
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"jupyter server did not start: {log.read_text()[-3000:]}")


def wait_for_kernel(client: BlockingKernelClient, timeout: float = 90) -> None:
    """``wait_for_ready``, asked again while the kernel is still starting.

    A client made without a ``KernelManager`` judges the kernel by its heartbeat, and the heartbeat
    channel has not had its first beat one second after the first ``kernel_info`` request when the
    machine is loaded: ``wait_for_ready`` then says "Kernel died before replying to kernel_info" about a
    kernel that is merely importing. A kernel that really died keeps failing until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.wait_for_ready(timeout=max(1.0, deadline - time.monotonic()))
            return
        except RuntimeError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def run_in_kernel(jupyter: Jupyter, code: str) -> str:
    """Start a kernel through the server, run ``code``, return its stdout (fail on an error)."""
    session = jupyter.session
    kernel = session.post(jupyter.api("api/kernels"), json={"name": "python3"}, timeout=30).json()
    client = BlockingKernelClient(connection_file=str(jupyter.runtime_dir / f"kernel-{kernel['id']}.json"))
    client.load_connection_file()
    client.start_channels()
    out: list[str] = []
    errors: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append("\n".join(msg["content"]["traceback"]))

    try:
        wait_for_kernel(client)
        client.execute_interactive(code, output_hook=collect, timeout=150)
    finally:
        client.stop_channels()
        session.delete(jupyter.api(f"api/kernels/{kernel['id']}"), timeout=30)
    assert not errors, re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors))
    return "".join(out)


@pytest.fixture
def remote(tmp_path: Path) -> Any:
    served = start_serve(tmp_path / "remote", runtime="process", token="the-remote-token")
    yield served
    served.stop()


def test_kernel_finds_the_embedded_service(tmp_path: Path) -> None:
    jupyter = start_jupyter(tmp_path, {"runtime": "process", "db_path": str(tmp_path / "abaco" / "abaco.db")})
    try:
        out = run_in_kernel(jupyter, KERNEL_CODE)
    finally:
        assert jupyter.stop() == 0
    assert "HOW: ABACO_NB_URL from the environment" in out
    assert "STATUS: COMPLETE" in out
    assert "Contents of MSG: hello from a kernel" in out
    assert "EXECUTOR: [14] [5, 8, 11, 14]" in out


def test_kernel_code_unchanged_in_proxy_mode(tmp_path: Path, remote: Any) -> None:
    abaco = {"remote_url": remote.url, "remote_api": "v3"}
    jupyter = start_jupyter(tmp_path, abaco, env={"ABACO_NB_REMOTE_TOKEN": remote.token})
    try:
        out = run_in_kernel(jupyter, KERNEL_CODE)
    finally:
        assert jupyter.stop() == 0
    assert "HOW: ABACO_NB_URL from the environment" in out
    assert "REMOTE TOKEN VISIBLE: False" in out
    assert "Contents of MSG: hello from a kernel" in out
    assert "EXECUTOR: [14] [5, 8, 11, 14]" in out  # the executor works through the proxy too
    names = [a["name"] for a in remote.session.get(remote.api("/actors")).json()["result"]]
    assert "from-kernel" in names  # it ran on the remote


def test_stop_ends_workers_cleanly_and_restart_resumes_queued_work(tmp_path: Path) -> None:
    abaco = {"runtime": "process", "db_path": str(tmp_path / "abaco" / "abaco.db")}
    jupyter = start_jupyter(tmp_path, abaco)
    s = jupyter.session
    base = jupyter.api("abaco/actors")
    try:
        reg = {"image": "abaco-nb/test", "stateless": False, "default_environment": {"SLEEP": "0"}}
        actor = s.post(base, json=reg, timeout=30).json()["result"]
        aid = actor["id"]
        # The first message runs long (its own SLEEP), so the others are still queued at the stop.
        first = s.post(f"{base}/{aid}/messages", data={"message": "long"}, params={"SLEEP": "60"}, timeout=30)
        queued = [s.post(f"{base}/{aid}/messages", data={"message": f"q{i}"}, timeout=30) for i in range(2)]
        ids = [r.json()["result"]["execution_id"] for r in (first, *queued)]
        deadline = time.monotonic() + 60
        while s.get(f"{base}/{aid}/executions/{ids[0]}", timeout=30).json()["result"]["status"] != "RUNNING":
            assert time.monotonic() < deadline, "the first execution never started"
            time.sleep(0.1)
    finally:
        assert jupyter.stop() == 0  # SIGTERM: Jupyter stops the extension, the extension its workers
    jupyter = start_jupyter(tmp_path, abaco)
    try:
        s = jupyter.session
        base = jupyter.api("abaco/actors")  # a new port
        ended = {}
        for eid in ids:
            response = s.get(f"{base}/{aid}/executions/{eid}", params={"wait": 60}, timeout=90)
            ended[eid] = response.json()["result"]
    finally:
        jupyter.stop()
    assert ended[ids[0]]["status"] == "ERROR"
    assert "shut down" in ended[ids[0]]["status_message"]
    assert [ended[eid]["status"] for eid in ids[1:]] == ["COMPLETE", "COMPLETE"]


def test_jupyter_lists_the_extension_enabled_and_ok() -> None:
    """Checks the install itself (the data file, or scripts/setup.d for an editable install)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=120,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    assert re.search(r"server_ext enabled", text), text
    assert re.search(r"server_ext 0\.1\.0 OK", text), text
