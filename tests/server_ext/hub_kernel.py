"""Run code in a real kernel of a user's Hub-spawned Jupyter server, over Jupyter's REST and websocket API.

The test starts the user's server through the Hub (the spawner gives it the Hub's environment), asks it
for a kernel, and sends ``execute_request`` messages on the kernel's websocket, collecting what the cell
printed, returned or raised. That is what a notebook in the browser does, without the browser.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


@dataclass
class CellOutput:
    text: str = ""
    error: str = ""
    results: list[str] = field(default_factory=list)


def start_server(public: str, user: str, token: str, timeout: float = 180) -> str:
    """Start ``user``'s server through the Hub; returns its URL (``{public}/user/{user}``)."""
    headers = {"Authorization": f"token {token}"}
    answer = requests.post(f"{public}/hub/api/users/{user}/server", headers=headers, timeout=60)
    assert answer.status_code in (201, 202, 400), answer.text  # 400: already running
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = requests.get(f"{public}/hub/api/users/{user}", headers=headers, timeout=30).json()
        server = (model.get("servers") or {}).get("")
        if server and server.get("ready"):
            return f"{public}/user/{user}"
        time.sleep(0.5)
    raise AssertionError(f"{user}'s server did not become ready: {model}")


def new_kernel(server: str, token: str) -> str:
    answer = requests.post(
        f"{server}/api/kernels", headers={"Authorization": f"token {token}"}, json={}, timeout=60
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def execute(server: str, token: str, kernel_id: str, code: str, timeout: float = 180) -> CellOutput:
    """Run one cell. On a loop of its own, never made current: ``asyncio.run`` would leave the thread
    without a current loop, which later tests' fixtures (pytest-jupyter's) still ask for."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_execute(server, token, kernel_id, code, timeout))
    finally:
        loop.close()


async def _execute(server: str, token: str, kernel_id: str, code: str, timeout: float) -> CellOutput:
    url = server.replace("http://", "ws://", 1) + f"/api/kernels/{kernel_id}/channels"
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"})
    ws = await websocket_connect(request)
    msg_id = uuid.uuid4().hex
    message = {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "buffers": [],
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }
    await ws.write_message(json.dumps(message))
    out = CellOutput()
    replied = idle = False
    deadline = time.monotonic() + timeout
    try:
        while not (replied and idle):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the cell did not finish in {timeout} s; so far: {out}")
            raw = await asyncio.wait_for(ws.read_message(), left)
            if raw is None:
                raise AssertionError(f"the kernel's websocket closed; so far: {out}")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                out.text += content["text"]
            elif kind in ("execute_result", "display_data"):
                out.results.append(str(content["data"].get("text/plain", "")))
            elif kind == "error":
                out.error = f"{content['ename']}: {content['evalue']}"
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    finally:
        ws.close()
    return out
