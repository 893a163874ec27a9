"""A schema-based fuzzer over ``server_ext/openapi.yaml`` against a real ``abaco-nb serve`` (issue 9).

Schemathesis generates requests from the document (examples, boundary values, random data, and
stateful sequences through its links) with the service token, for a bounded time. It must find no 5xx
answer and no answer that violates the document (camelCase answers and implicit searches included);
afterwards the service must still answer and its thread count must be bounded.

Requests time out after 30 s: a generated long-poll (``?wait=300`` on an execution that never starts)
would otherwise hold the run for minutes; a timeout is an error of the run, not a failure of a check.

The service runs with ``--execution-uids on``: should a generated ``local:`` image ever name a real
program, it runs as an unprivileged uid of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import serve
from tests.server_ext.serve_fixture import Served, ok

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "server_ext" / "openapi.yaml"
MAX_TIME = int(os.environ.get("ABACO_NB_FUZZ_SECONDS", "120"))
MAX_THREADS = 200


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


@pytest.mark.timeout(MAX_TIME + 300)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or shutil.which("schemathesis")
    if cli is None:
        if os.environ.get("CI"):
            pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
        pytest.skip("schemathesis is not installed")
    token = "fuzz-token-" + "f" * 24
    extra = ["--sync-timeout", "20", *(["--execution-uids", "on"] if os.geteuid() == 0 else [])]
    s = serve.start_serve(tmp_path, token=token, extra=extra)
    served = Served(url=s.url, token=s.token, proc=s.proc, db=s.db, log=s.log)
    try:
        served.register({"image": "abaco-nb/test", "name": "fuzz-target"})  # something to find
        argv = [
            cli, "run", str(SCHEMA), "--url", served.url, "--header", f"Authorization: Bearer {token}",
            "--checks", "not_a_server_error,response_schema_conformance", "--max-time", str(MAX_TIME),
            "--workers", "2", "--request-timeout", "30", "--no-color", "--seed", "9",
        ]  # fmt: skip
        run = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=MAX_TIME + 240,
            cwd=tmp_path,
        )
        summary = run.stdout[-8000:]
        assert re.search(r"\d+ generated", run.stdout), summary + run.stderr[-2000:]
        # Failures are what the checks found (a 5xx, an answer the document does not describe). An
        # error inside the fuzzer itself (it has its own bugs) costs coverage, not the verdict.
        assert "Failures:" not in run.stdout and "Server error" not in run.stdout, summary
        assert served.proc.poll() is None, "the service died under the fuzzer"
        ok(served.request("GET", "/actors", timeout=60))
        assert threads(served.proc.pid) <= MAX_THREADS, threads(served.proc.pid)
    finally:
        served.stop()
