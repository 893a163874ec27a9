"""``kill -9`` of the service with messages queued and running: nothing accepted is lost, nothing
completed runs twice, the interrupted execution ends ERROR with a reason."""

from __future__ import annotations

import shlex
import sys

from tests.serve import start_serve, wait_ready, wait_status


def test_kill9_with_queued_and_running_messages(tmp_path):
    ledger = tmp_path / "ledger.txt"
    code = (
        "import os, time; eid = os.environ['_abaco_execution_id']; "
        f"open({str(ledger)!r}, 'a').write('start ' + eid + chr(10)); time.sleep(0.6); "
        f"open({str(ledger)!r}, 'a').write('end ' + eid + chr(10))"
    )
    image = "local:" + shlex.join([sys.executable, "-c", code])
    served = start_serve(tmp_path / "svc")
    r = served.session.post(served.api("/actors"), json={"image": image, "stateless": False})
    aid = r.json()["result"]["id"]
    wait_ready(served, aid)
    eids = [
        served.session.post(served.api(f"/actors/{aid}/messages"), data={"message": str(i)}).json()["result"][
            "execution_id"
        ]
        for i in range(6)
    ]
    wait_status(served, aid, eids[1], ("RUNNING",))  # one done, one running, four queued
    served.kill9()
    restarted = start_serve(tmp_path / "svc", db=served.db)
    try:
        results = {eid: wait_status(restarted, aid, eid, timeout=60) for eid in eids}
    finally:
        restarted.stop()
    statuses = [results[e]["status"] for e in eids]
    assert statuses.count("ERROR") <= 1, statuses  # only the one running at the kill
    for result in results.values():
        if result["status"] == "ERROR":
            assert "Interrupted" in result["status_message"]
    lines = ledger.read_text().split()
    starts = [lines[i + 1] for i in range(0, len(lines), 2) if lines[i] == "start"]
    assert len(starts) == len(set(starts)), "an execution ran twice"
    completed = [e for e in eids if results[e]["status"] == "COMPLETE"]
    assert set(completed) <= set(starts) and len(completed) >= 5
    assert len(results) == 6  # every accepted message reached exactly one terminal execution


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_kill9_while_an_executor_call_runs_in_a_zygote_child(tmp_path):
    """Executor executions are forked by the process runtime's zygote; after a kill -9 of the service the
    child is found by its environment marker, stopped, and its execution ends ERROR."""
    import time

    import cloudpickle

    def sleeper(pid_file: str) -> None:  # defined here so cloudpickle sends it by value
        import os
        import time

        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)

    pid_file = tmp_path / "pid"
    served = start_serve(tmp_path / "svc")
    try:  # a failure before the kill must not leave the service running
        registration = {"image": "abaco-nb/py3-func", "stateless": False}
        r = served.session.post(served.api("/actors"), json=registration)
        aid = r.json()["result"]["id"]
        wait_ready(served, aid)
        message = cloudpickle.dumps({"func": sleeper, "args": [str(pid_file)], "kwargs": {}})
        binary = {"Content-Type": "application/octet-stream"}
        r = served.session.post(served.api(f"/actors/{aid}/messages"), data=message, headers=binary)
        eid = r.json()["result"]["execution_id"]
        wait_status(served, aid, eid, ("RUNNING",))
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the call did not start"
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        with open(f"/proc/{pid}/stat") as f:
            zygote = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{zygote}/cmdline", "rb") as f:
            assert b"zygote" in f.read()  # forked by the zygote, not started with Popen
        served.kill9()
    finally:
        served.stop()  # nothing to do after the kill
    assert _alive(pid)  # its own session: it outlives the service, as a Popen'd process would
    restarted = start_serve(tmp_path / "svc", db=served.db)
    try:
        result = wait_status(restarted, aid, eid, timeout=60)
    finally:
        restarted.stop()
    assert result["status"] == "ERROR" and "Interrupted" in result["status_message"]
    deadline = time.monotonic() + 15
    while _alive(pid) or _alive(zygote):
        assert time.monotonic() < deadline, "the leftover or the old zygote is still running"
        time.sleep(0.05)
