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
