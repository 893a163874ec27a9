"""Start a real ``abaco-nb serve`` subprocess for a test, and stop (or kill) it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests


@dataclass
class Served:
    """A running service: its URL, token and the process, plus a requests session that is authorised."""

    url: str
    token: str
    proc: subprocess.Popen[bytes]
    db: Path
    log: Path
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def api(self, path: str) -> str:
        return f"{self.url}{path}"

    def stop(self) -> None:
        terminate(self.proc)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_serve(
    tmp: Path,
    runtime: str = "process",
    token: str = "test-token",
    extra: list[str] | None = None,
    db: Path | None = None,
    env: dict[str, str] | None = None,
) -> Served:
    """Start ``abaco-nb serve`` on a free loopback port and wait until it answers (``env``: variables
    added to the service's environment, e.g. a ``DOCKER_HOST`` the test controls)."""
    tmp.mkdir(parents=True, exist_ok=True)
    db = db or tmp / "abaco.db"
    conn = tmp / f"conn-{time.monotonic_ns()}.json"
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    cmd = [
        sys.executable, "-m", "server_ext", "serve", "--runtime", runtime, "--db", str(db), "--port", "0",
        "--connection-file", str(conn), *(extra or []),
    ]  # fmt: skip
    with open(log, "wb") as out:  # the token in the environment: a command line is readable by anyone
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ABACO_NB_SERVE_TOKEN": token, **(env or {})},
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"abaco-nb serve exited: {log.read_text()}")
        if conn.exists():
            try:
                info = json.loads(conn.read_text())
                break
            except ValueError:
                pass
        time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError(f"abaco-nb serve did not start: {log.read_text()}")
    return Served(url=info["url"], token=token, proc=proc, db=db, log=log)


def wait_status(
    served: Served,
    actor_id: str,
    eid: str,
    statuses: tuple[str, ...] = ("COMPLETE", "ERROR"),
    timeout: float = 60,
) -> dict:
    """Poll an execution until it reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        r = served.session.get(served.api(f"/actors/{actor_id}/executions/{eid}"))
        r.raise_for_status()
        result = r.json()["result"]
        if result["status"] in statuses:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"execution {eid} still {result['status']} after {timeout} s")
        time.sleep(0.1)


def wait_ready(served: Served, actor_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = served.session.get(served.api(f"/actors/{actor_id}")).json()["result"]
        if result["status"] in ("READY", "ERROR"):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"actor {actor_id} still {result['status']}")
        time.sleep(0.05)


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` seconds: how every test stops a server it started.
    Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)
