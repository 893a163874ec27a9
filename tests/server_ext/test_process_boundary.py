"""The process runtime is a boundary, against a real ``abaco-nb serve`` run as root (issue 9).

An execution runs as a uid of its own, in its own session and a private directory; it cannot read
the database, the connection file, the run directory or another execution's files, and the token is
on no command line. The service's files are 0600/0700, its run directory is its own (and locked), and
nothing is left in the temp dir after SIGTERM. The data directory here is made world-traversable on
purpose, so that only the files' own modes protect them.

The attacks are ``/bin/sh`` commands, which any user can run: this machine's Python may live under a
private home that other users cannot enter (the service then runs its Python executions as root and
says so, unless ``--execution-uids on``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import serve
from tests.server_ext.serve_fixture import Served, ok

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"), reason="the boundary needs the service to run as root"
)

TOKEN = "boundary-test-token-" + "x" * 20


def sh(script: str) -> str:
    """A ``local:`` image running ``script`` with /bin/sh (split like a shell: no single quotes)."""
    assert "'" not in script
    return f"local:/bin/sh -c '{script}'"


def start(data: Path, *extra: str) -> Served:
    s = serve.start_serve(data, token=TOKEN, extra=["--execution-uids", "on", *extra])
    return Served(url=s.url, token=s.token, proc=s.proc, db=s.db, log=s.log)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    data = Path(tempfile.mkdtemp(prefix="abaco-nb-boundary-"))
    os.chmod(data, 0o755)  # world-readable on purpose: only the service's own file modes protect them
    s = start(data)
    yield s
    s.stop()
    shutil.rmtree(data, ignore_errors=True)


def run(served: Served, script: str, timeout: int = 60) -> tuple[dict[str, Any], str]:
    actor = served.register({"image": sh(script)})
    sent = ok(served.request("POST", f"/actors/{actor['id']}/messages", data={"message": "go"}))
    execution = served.wait_execution(actor["id"], sent["execution_id"], timeout)
    logs = ok(served.request("GET", f"/actors/{actor['id']}/executions/{sent['execution_id']}/logs"))["logs"]
    served.request("DELETE", f"/actors/{actor['id']}")
    return execution, logs


def connection_file(served: Served) -> Path:
    """The connection file this service wrote (several services may share a directory)."""
    for path in served.db.parent.glob("conn-*.json"):
        if json.loads(path.read_text()).get("pid") == served.proc.pid:
            return path
    raise AssertionError("no connection file of this service")


def connection(served: Served) -> dict[str, Any]:
    return dict(json.loads(connection_file(served).read_text()))


def test_an_execution_runs_as_a_user_of_its_own_in_its_own_session_and_directory(served: Served) -> None:
    script = (
        'echo uid=$(id -u) gid=$(id -g) groups=$(id -G); echo sid=$(cut -d" " -f6 /proc/$$/stat) pid=$$; '
        "echo home=$HOME pwd=$(pwd) tmp=$TMPDIR; ls -ld $HOME"
    )
    first, logs = run(served, script)
    assert first["status"] == "COMPLETE", (first, logs)
    uid = int(re.search(r"uid=(\d+)", logs).group(1))  # type: ignore[union-attr]
    assert uid >= 1_900_000_000 and f"gid={uid} groups={uid}" in logs, logs
    sid, pid = re.search(r"sid=(\d+) pid=(\d+)", logs).groups()  # type: ignore[union-attr]
    assert sid == pid, logs  # a session leader: stopped as a whole, detached from the service's
    home = re.search(r"home=(\S+) pwd=(\S+) tmp=(\S+)", logs).groups()  # type: ignore[union-attr]
    assert home[0] == home[1] == home[2] and "drwx------" in logs, logs
    _, again = run(served, "id -u")
    assert int(again.strip().splitlines()[-1]) != uid  # the next execution: another uid


def test_an_execution_cannot_read_the_services_files(served: Served) -> None:
    info = connection(served)
    run_dir = os.path.dirname(info["api_socket"])
    targets = [
        str(served.db),
        f"{served.db}-wal",
        f"{served.db}-shm",
        str(connection_file(served)),
        run_dir,
        f"{run_dir}/proc",
        f"{run_dir}/messages",
        f"{run_dir}/results",
    ]
    script = "; ".join(
        f"if cat {t} >/dev/null 2>&1 || ls -A {t}/ >/dev/null 2>&1; then echo READ {t}; else echo DENIED {t}; fi"
        for t in targets
    )
    script += '; cat /proc/$PPID/cmdline | tr "\\0" " "; echo; cat /proc/$PPID/environ && echo ENVIRON-READ'
    execution, logs = run(served, script)
    assert execution["status"] == "COMPLETE", (execution, logs)
    for t in targets:
        assert f"DENIED {t}" in logs, logs
    assert TOKEN not in logs and "ENVIRON-READ" not in logs, logs


def test_an_execution_cannot_read_another_executions_files(served: Served) -> None:
    writer = served.register(
        {"image": sh("echo secret-of-a > $HOME/secret; chmod 644 $HOME/secret; sleep 30")}
    )
    sent = ok(served.request("POST", f"/actors/{writer['id']}/messages", data={"message": "a"}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        execution = ok(served.request("GET", f"/actors/{writer['id']}/executions/{sent['execution_id']}"))
        if execution["status"] == "RUNNING":
            break
        time.sleep(0.1)
    time.sleep(0.5)
    other = f"$(dirname $HOME)/{sent['execution_id']}"
    _, logs = run(
        served,
        f"cat {other}/secret || echo DENIED; ls {other} || echo NOLIST; ls $(dirname $HOME) || echo NOROOT",
    )
    assert "secret-of-a" not in logs and "DENIED" in logs and "NOLIST" in logs and "NOROOT" in logs, logs
    served.request("DELETE", f"/actors/{writer['id']}")


def test_the_services_files_are_private(served: Served) -> None:
    info = connection(served)
    run_dir = os.path.dirname(info["api_socket"])
    for path in (served.db, Path(f"{served.db}-wal"), Path(f"{served.db}-shm"), connection_file(served)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    for path in (run_dir, f"{run_dir}/proc", f"{run_dir}/messages", f"{run_dir}/results"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    assert os.path.basename(run_dir).startswith("abaco-nb-run-")  # its own, not one beside the database
    with open(f"/proc/{served.proc.pid}/cmdline", "rb") as f:
        assert TOKEN.encode() not in f.read()


def test_run_directories_are_unique_locked_and_removed_after_sigterm(tmp_path: Path) -> None:
    one, two = start(tmp_path / "same", "--db", str(tmp_path / "same" / "a.db")), None
    try:
        two = start(tmp_path / "same", "--db", str(tmp_path / "same" / "b.db"))
        run_one, run_two = (os.path.dirname(connection(s)["api_socket"]) for s in (one, two))
        assert run_one != run_two
        # the same run directory, given twice: the second service is refused
        shared = tmp_path / "shared-run"
        three = start(tmp_path / "three", "--run-dir", str(shared))
        argv = [
            sys.executable, "-m", "server_ext", "serve", "--runtime", "process", "--db", str(tmp_path / "c.db"),
            "--run-dir", str(shared), "--port", "0",
        ]  # fmt: skip
        refused = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "ABACO_NB_SERVE_TOKEN": "t"},
        )
        assert refused.returncode != 0 and "in use by another abaco-nb service" in refused.stderr, refused
        three.stop()
        # after SIGTERM: the run directory and the executions' directories are gone
        _, logs = run(one, "echo home=$HOME")
        sandbox = os.path.dirname(re.search(r"home=(\S+)", logs).group(1))  # type: ignore[union-attr]
        assert os.path.isdir(sandbox) and os.path.isdir(run_one)
        one.stop()
        assert one.proc.returncode == 0
        assert not os.path.exists(sandbox) and not os.path.exists(run_one)
    finally:
        for s in (one, two):
            if s is not None:
                s.stop()


def test_token_flag_warns_and_the_environment_is_preferred(tmp_path: Path) -> None:
    s = start(tmp_path, "--token", "on-the-command-line")
    try:
        assert connection(s)["token"] == "on-the-command-line"
        log = s.log.read_text()
        assert "--token puts the token on the command line" in log and "ABACO_NB_SERVE_TOKEN" in log
    finally:
        s.stop()
