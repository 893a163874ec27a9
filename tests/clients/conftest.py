"""Real Abaco clients (agavepy 0.9.5, tapipy) driving a real ``abaco-nb serve --runtime process``.

The clients live in their own virtual environments (.clients/agavepy, .clients/tapipy; created by
scripts/setup.d/20-client-venvs.sh) because their pins clash with Jupyter's. Each test runs a small
driver script (drivers/*.py) in that venv by subprocess; the driver prints one ``DRIVER-RESULT <json>``
line that the test asserts on. A missing venv skips with the command to make it, except in CI where
it fails: skipped client tests would hide breakage.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.server_ext.serve_fixture import PYTHON, Served, abaco_serve, python_command  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DRIVERS = Path(__file__).resolve().parent / "drivers"
CLIENT_VENVS = REPO / ".clients"

# The actor most client tests use: prints what it received and sends one bytes result.
ECHO_ACTOR = python_command(
    "import os; "
    "from abaco_nb.actors import get_context, get_binary_message, send_bytes_result; "
    'c = get_context(); ct = c["_abaco_Content_Type"]; '
    'print("CT=" + ct); print("MSG=" + str(c["raw_message"])); '
    'print("DICT=" + repr(dict(c["message_dict"]))); '
    'print("FOO=" + os.environ.get("foo", "-")); '
    'data = get_binary_message() if ct == "application/octet-stream" else b""; '
    'print("BIN=" + repr(data)); '
    'send_bytes_result(b"result-of-" + ct.encode())'
)
# A stateful actor: adds the number it is sent to state["count"] from inside the execution.
COUNTER_ACTOR = python_command(
    "from abaco_nb.actors import get_context, update_state; "
    'c = get_context(); s = c["state"] or {}; '
    'n = s.get("count", 0) + int(c["raw_message"]); '
    'update_state({"count": n}); print("count=" + str(n))'
)


def client_python(name: str) -> Path:
    """The interpreter of one client venv, or a skip (a failure in CI) saying how to create it."""
    python = CLIENT_VENVS / name / "bin" / "python"
    if not python.exists():
        reason = f"{python} is missing: run scripts/setup.d/20-client-venvs.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return python


def run_driver(
    client: str,
    script: str,
    served: Served,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """Run ``drivers/<script>`` in the ``client`` venv against ``served``; its DRIVER-RESULT as a dict."""
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "ABACO_URL": served.url,
        "ABACO_TOKEN": served.token,
        "PYTHONWARNINGS": "ignore",
        **(env or {}),
    }
    proc = subprocess.run(
        [str(client_python(client)), str(DRIVERS / script), *args],
        cwd=DRIVERS,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("DRIVER-RESULT "):
            return json.loads(line[len("DRIVER-RESULT ") :])
    raise AssertionError(
        f"{client} driver {script} exited {proc.returncode} without a result:\n"
        f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
