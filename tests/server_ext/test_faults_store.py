"""Store faults against a real ``abaco-nb serve``: its SQLite file locked by another process, and the
disk under it full. Each is the real thing: a second process holding ``BEGIN EXCLUSIVE``, a tmpfs of
a few megabytes filled to the last byte.

What must hold (issue 10): workers survive store errors and retry with backoff; nothing stays
RUNNING; refusals answer 503 (locked) or 507 (full) with a message naming the database's file or
disk, within seconds rather than hanging; accepted work ends or runs once the fault goes; the
service starts on a full disk and says what is wrong.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.serve import Served, start_serve, wait_ready, wait_status
from tests.server_ext.serve_fixture import python_command

LOCK_SECONDS = 15  # the 95 s behaves the same; the suite stays fast
LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""
NAP = python_command(
    'import os, time; time.sleep(float(os.environ["NAP"])); print("ran", os.environ["_abaco_execution_id"])'
)


def _register(served: Served, **body: object) -> str:
    r = served.session.post(
        served.api("/actors"), json={"image": NAP, "default_environment": {"NAP": "0"}, **body}
    )
    assert r.status_code == 200, r.text
    actor = wait_ready(served, r.json()["result"]["id"])
    assert actor["status"] == "READY", actor
    return str(actor["id"])


def _post(served: Served, aid: str, message: str = "x", **query: str) -> requests.Response:
    return served.session.post(
        served.api(f"/actors/{aid}/messages"), data={"message": message}, params=query, timeout=30
    )


def _logs(served: Served, aid: str, eid: str) -> str:
    r = served.session.get(served.api(f"/actors/{aid}/executions/{eid}/logs"), timeout=30)
    return str(r.json()["result"]["logs"])


def test_database_locked_by_another_process(tmp_path):
    served = start_serve(tmp_path / "svc")
    locker = None
    try:
        aid = _register(served, default_environment={"NAP": "3"})
        running = [_post(served, aid).json()["result"]["execution_id"] for _ in range(3)]
        for eid in running:
            wait_status(served, aid, eid, ("RUNNING",))
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(served.db), str(LOCK_SECONDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"

        refused = _post(served, aid)  # a write: refused with the reason, not a hang
        assert refused.status_code == 503, refused.text
        assert (
            "locked by another process" in refused.json()["message"]
            and str(served.db) in refused.json()["message"]
        )
        assert served.session.get(served.api(f"/actors/{aid}"), timeout=30).status_code == 200  # reads work
        time.sleep(5)  # the three finish in their processes while their end cannot be stored
        during = [wait_status(served, aid, eid, ("RUNNING", "COMPLETE", "ERROR")) for eid in running]
        assert all(e["status"] == "RUNNING" for e in during), during  # nothing was decided wrongly
        assert locker.wait(timeout=LOCK_SECONDS + 30) == 0

        for eid in running:  # stored once the lock went: their real exit and logs
            result = wait_status(served, aid, eid, timeout=60)
            assert (result["status"], result["exit_code"]) == ("COMPLETE", 0), result
            assert f"ran {eid}" in _logs(served, aid, eid)
        after = _post(served, aid, NAP="0")  # the workers survived: new work runs
        assert after.status_code == 200, after.text
        assert wait_status(served, aid, after.json()["result"]["execution_id"])["status"] == "COMPLETE"
        assert served.proc.poll() is None
        executions = served.session.get(served.api(f"/actors/{aid}/executions")).json()["result"][
            "executions"
        ]
        assert {e["status"] for e in executions} == {"COMPLETE"}  # nothing stays RUNNING
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
        served.stop()


@contextlib.contextmanager
def small_disk(path: Path, size: str = "6m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, name: str = "filler") -> Path:
    """Write a file until the disk has no byte left."""
    filler = disk / name
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")
    return filler


def _disk_refusal(resp: requests.Response) -> None:
    assert resp.status_code in (503, 507), resp.text
    assert "disk" in resp.json()["message"] and "full" in resp.json()["message"], resp.text


def test_full_disk(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "abaco.db"
        served = start_serve(tmp_path / "svc", db=db)
        try:
            aid = _register(served, default_environment={"NAP": "2"}, max_workers=2)
            early = [_post(served, aid, f"early {i}").json()["result"]["execution_id"] for i in range(4)]
            for eid in early[:2]:  # two run, two wait in the mailbox, when the disk fills up
                wait_status(served, aid, eid, ("RUNNING",))
            filler = fill(disk)
            accepted, refused = list(early), 0
            for i in range(40):
                r = _post(served, aid, str(i))
                if r.status_code == 200:
                    accepted.append(r.json()["result"]["execution_id"])
                else:
                    _disk_refusal(r)
                    refused += 1
            assert refused > 0
            assert served.session.get(served.api(f"/actors/{aid}"), timeout=30).status_code == 200
            time.sleep(3)  # the two running ones end while nothing can be stored
            filler.unlink()  # space returns: every accepted message ends, none stays RUNNING
            for eid in accepted:
                result = wait_status(served, aid, eid, timeout=90)
                assert result["status"] == "COMPLETE", result
            r = _post(served, aid, "after")
            assert r.status_code == 200, r.text
            assert wait_status(served, aid, r.json()["result"]["execution_id"])["status"] == "COMPLETE"
        finally:
            served.stop()

        assert (disk / "abaco.db.reserve").exists()  # kept while there was room
        filler = fill(disk)  # the service starts on a full disk and says what is wrong
        served = start_serve(tmp_path / "svc2", db=db)
        try:
            assert served.session.get(served.api(f"/actors/{aid}"), timeout=30).status_code == 200
            text = served.log.read_text()
            assert "is full" in text and str(disk) in text and "reserve" in text, text
            rest = fill(disk, "filler2")  # what the reserve gave back: used up too
            _disk_refusal(_post(served, aid, "while full"))
            filler.unlink()
            rest.unlink()
            r = _post(served, aid, "freed")
            assert r.status_code == 200, r.text
            assert wait_status(served, aid, r.json()["result"]["execution_id"])["status"] == "COMPLETE"
        finally:
            served.stop()
