"""The per-node agent of the swarm runtime: it owns an execution's unix sockets on the node that runs it.

A unix socket cannot cross machines, and Abaco's container contract needs two of them inside the
container (``/_abaco_results.sock``, ``/_abaco_api.sock``) plus a regular file (``/_abaco_binary_data``).
The service deploys this file as a swarm *global* service (one task per node, host network, the code
delivered as a swarm config, its token as a swarm secret). Before the service creates an execution's
job it picks the node and asks that node's agent to prepare the execution: the agent makes
``<dir>/<eid>/`` on the node with the binary message, a bound datagram socket and a listening stream
socket. The job bind-mounts those three paths at the contract's paths, so the container sees exactly
what it sees on the docker runtime and needs no network to call back.

What arrives on the sockets is relayed to the service's callback endpoint (``swarm_relay``), always
with the agent token: results datagrams in batches (``POST /results/<eid>``, each frame length-
prefixed, retried until the service takes them, so a ``kill -9`` of the service loses none), and every
API connection as a ``CONNECT /api/<eid>`` tunnel whose bytes are the container's own HTTP requests,
authenticated by the execution's own token (the agent adds no authority of its own to them).

The agent's own HTTP API (bearer agent token) on ``0.0.0.0:<port>`` of the node's host network:
``PUT /executions/<eid>?callback=host:port`` (body: the binary message, header ``X-Abaco-Binary: 1``),
``POST /executions/<eid>/finish?container=<id>`` (flush the results, then the container's exit state
read from the node's Docker, which task status lacks: ``OOMKilled``, times, error),
``POST /executions/<eid>/stop?container=<id>&grace=<s>`` (Docker's stop on the node: the task then ends
with its exit code and its logs, which removing the service would lose), ``DELETE /executions/<eid>``
and ``GET /executions``. Docker calls only ever touch containers labelled with the execution's id.

A *warm task* (``PUT /executions/<wid>?warm=1``, see ``swarm_warm``) is prepared the same way with one
more socket, ``control.sock``, whose connections are tunnelled to ``CONNECT /control/<wid>`` of the
service (the warm pool's zygote protocol, unchanged); its directory is the task's worker directory
(children's logs), so it is world-writable, and its binary file is rewritten in place per execution
(``PUT /executions/<wid>/binary``: the bind mount holds the inode). ``GET``/``DELETE
/executions/<wid>/log?name=<eid>.log`` read and drop a child's log, ``POST
/executions/<wid>/oom?container=<id>&python=<path>`` reads the task container's memory-cgroup
``oom_kill`` count from inside it (``docker exec``: the cgroup is the container's own there).

Standard library only: it runs on the executor image's Python, whatever the node has.
"""

from __future__ import annotations

import hmac
import http.client
import json
import os
import re
import select
import shutil
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_DATAGRAM = 4 * 1024 * 1024
LABEL_EXECUTION = "abaco-nb.execution_id"
# base.STATE_KEYS, copied: this program runs on the nodes with the standard library only.
STATE_KEYS = (
    "Status",
    "Running",
    "Paused",
    "Restarting",
    "OOMKilled",
    "Dead",
    "Pid",
    "ExitCode",
    "Error",
    "StartedAt",
    "FinishedAt",
)


def _log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


class _UnixHTTP(http.client.HTTPConnection):
    """HTTP to the node's Docker over its unix socket."""

    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def docker(method: str, path: str, timeout: float = 60, body: object = None) -> tuple[int, object]:
    conn = _UnixHTTP(os.environ.get("ABACO_NB_AGENT_DOCKER", "/var/run/docker.sock"), timeout)
    try:
        if body is None:
            conn.request(method, path)
        else:
            conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        try:
            return response.status, json.loads(body) if body else None
        except ValueError:
            return response.status, body.decode("utf-8", "replace")
    finally:
        conn.close()


class Execution:
    """One prepared execution: its directory, the results relay and the API tunnel listener."""

    def __init__(
        self, agent: Agent, eid: str, callback: str, binary: bytes | None, warm: bool = False
    ) -> None:
        self.agent, self.eid, self.callback, self.warm = agent, eid, callback, warm
        self.dir = os.path.join(agent.root, eid)
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        os.chmod(self.dir, 0o777 if warm else 0o755)  # a warm task's children write their logs here
        self.binary_path = os.path.join(self.dir, "binary")
        with open(self.binary_path + ".tmp", "wb") as f:
            f.write(binary or b"")
        os.chmod(self.binary_path + ".tmp", 0o644 if warm else 0o444)
        os.replace(self.binary_path + ".tmp", self.binary_path)
        self.results_path = os.path.join(self.dir, "results.sock")
        self.api_path = os.path.join(self.dir, "api.sock")
        self.control_path = os.path.join(self.dir, "control.sock")
        for path in (self.results_path, self.api_path, self.control_path):
            if os.path.exists(path):
                os.unlink(path)
        self.results = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.results.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        except OSError:
            pass
        self.results.bind(self.results_path)
        os.chmod(self.results_path, 0o777)
        self.results.setblocking(False)
        self.api = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.api.bind(self.api_path)
        os.chmod(self.api_path, 0o777)
        self.api.listen(64)
        self.control: socket.socket | None = None
        if warm:
            self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.control.bind(self.control_path)
            os.chmod(self.control_path, 0o777)
            self.control.listen(4)
        self.pending: list[bytes] = []
        self.lock = threading.Lock()  # one delivery at a time, in order
        self.closed = threading.Event()
        if self.control is not None:
            threading.Thread(
                target=self._api_loop, args=(self.control, "control"), daemon=True, name=f"control-{eid}"
            ).start()
        threading.Thread(target=self._results_loop, daemon=True, name=f"results-{eid}").start()
        threading.Thread(
            target=self._api_loop, args=(self.api, "api"), daemon=True, name=f"api-{eid}"
        ).start()

    # -- results ------------------------------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            try:
                data = self.results.recv(MAX_DATAGRAM)
            except OSError:
                return
            if data:
                self.pending.append(data)

    def deliver(self) -> bool:
        """Send what was received so far to the service; True when nothing is left pending."""
        with self.lock:
            self._drain()
            while self.pending:
                batch: list[bytes] = []
                size = 0
                for frame in self.pending:
                    if batch and size + len(frame) > 16 * 1024 * 1024:
                        break
                    batch.append(frame)
                    size += len(frame)
                body = b"".join(struct.pack(">I", len(f)) + f for f in batch)
                try:
                    status = self.agent.call_service(self.callback, "POST", f"/results/{self.eid}", body)
                except OSError as exc:
                    _log("results of", self.eid, "not delivered yet:", exc)
                    return False
                if status >= 500:
                    return False
                if status != 200:  # the service no longer runs this execution: nothing will take them
                    _log("results of", self.eid, "refused with", status, "; dropped", len(batch))
                del self.pending[: len(batch)]
            return True

    def _results_loop(self) -> None:
        poller = select.poll()
        poller.register(self.results, select.POLLIN)
        while not self.closed.is_set():
            ready = poller.poll(200)
            if ready or self.pending:
                if not self.deliver():
                    self.closed.wait(1.0)

    # -- API tunnel ---------------------------------------------------------------------------------

    def _api_loop(self, listener: socket.socket, kind: str) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn, kind), daemon=True).start()

    def write_binary(self, data: bytes) -> None:
        """A warm task's next execution: the same inode, new content (overwritten, then cut at its
        end: a truncate to 0 first costs a journalled block release per execution)."""
        with open(self.binary_path, "r+b") as f:
            f.write(data)
            f.truncate()

    def _tunnel(self, inner: socket.socket, kind: str = "api") -> None:
        try:
            host, port = self.callback.rsplit(":", 1)
            outer = socket.create_connection((host, int(port)), timeout=30)
        except OSError as exc:
            _log("API tunnel of", self.eid, "cannot reach the service:", exc)
            inner.close()
            return
        try:
            outer.sendall(
                f"CONNECT /{kind}/{self.eid} HTTP/1.1\r\nHost: {self.callback}\r\n"
                f"Authorization: Bearer {self.agent.token}\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = outer.recv(4096)
                if not chunk:
                    raise OSError("the service closed the tunnel")
                head += chunk
            if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
                raise OSError(head.split(b"\r\n", 1)[0].decode("latin-1"))
            outer.settimeout(None)
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                inner.sendall(rest)
            pipe(inner, outer)
        except OSError as exc:
            _log("API tunnel of", self.eid, "failed:", exc)
        finally:
            inner.close()
            outer.close()

    def close(self) -> None:
        self.closed.set()
        self.deliver()
        for sock in (self.results, self.api, self.control):
            if sock is None:
                continue
            try:
                sock.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides are done (half-closes passed on)."""

    def one_way(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    other = threading.Thread(target=one_way, args=(b, a), daemon=True)
    other.start()
    one_way(a, b)
    other.join()


class Agent:
    def __init__(self, root: str, token: str, node: str) -> None:
        self.root, self.token, self.node = root, token, node
        self.executions: dict[str, Execution] = {}
        self.lock = threading.Lock()
        self._conns = threading.local()

    def call_service(self, callback: str, method: str, path: str, body: bytes) -> int:
        """One request to the service's callback endpoint on a kept-alive connection per thread."""
        conns = getattr(self._conns, "map", None)
        if conns is None:
            conns = self._conns.map = {}
        for attempt in (0, 1):
            conn = conns.get(callback)
            if conn is None:
                host, port = callback.rsplit(":", 1)
                conn = conns[callback] = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                conn.request(
                    method,
                    path,
                    body=body,
                    headers={
                        "Authorization": f"Bearer {self.token}",
                        "Content-Type": "application/octet-stream",
                    },
                )
                response = conn.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conns.pop(callback, None)
                if attempt:
                    raise
        raise OSError("unreachable")

    def prepare(self, eid: str, callback: str, binary: bytes | None, warm: bool = False) -> Execution:
        with self.lock:
            execution = self.executions.get(eid)
            if execution is not None:  # the service restarted: its callback may have moved
                execution.callback = callback
                return execution
            execution = self.executions[eid] = Execution(self, eid, callback, binary, warm)
            return execution

    def drop(self, eid: str) -> None:
        with self.lock:
            execution = self.executions.pop(eid, None)
        if execution is not None:
            execution.close()
        else:
            shutil.rmtree(os.path.join(self.root, eid), ignore_errors=True)


LOG_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.log$")
OOM_PROBE = (
    "import os\n"
    "for p in ('/sys/fs/cgroup/memory.events', '/sys/fs/cgroup/memory/memory.oom_control'):\n"
    "    if os.path.exists(p):\n"
    "        print(open(p).read())\n"
)


def oom_kills_inside(container: str, python: str) -> int | None:
    """The ``oom_kill`` count of the container's memory cgroup, read inside it (``docker exec``)."""
    status, created = docker(
        "POST",
        f"/containers/{container}/exec",
        30,
        {"Cmd": [python, "-c", OOM_PROBE], "AttachStdout": True, "AttachStderr": False},
    )
    if status != 201 or not isinstance(created, dict):
        return None
    _, out = docker("POST", f"/exec/{created['Id']}/start", 30, {"Detach": False, "Tty": False})
    found = re.search(r"oom_kill (\d+)", out if isinstance(out, str) else json.dumps(out))
    return int(found.group(1)) if found else None


def container_of(eid: str, container: str) -> dict[str, Any] | None:
    """The node's inspect of ``container`` if it is this execution's, else None."""
    if not re.match(r"^[0-9a-f]{12,64}$", container or ""):
        return None
    status, data = docker("GET", f"/containers/{container}/json")
    if status != 200 or not isinstance(data, dict):
        return None
    if ((data.get("Config") or {}).get("Labels") or {}).get(LABEL_EXECUTION) != eid:
        return None
    return data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    agent: Agent

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[list[str], dict[str, str]] | None:
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.agent.token}".encode()):
            self._reply(401, {"message": "wrong agent token"})
            return None
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = dict(urllib.parse.parse_qsl(url.query))
        if len(parts) >= 2 and not EID.match(parts[1]):
            self._reply(400, {"message": "invalid execution id"})
            return None
        return parts, query

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _raw(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _log_path(self, parts: list[str], query: dict[str, str]) -> str | None:
        """``/executions/<wid>/log?name=<eid>.log`` of a prepared warm task, else None (404 sent)."""
        execution = self.agent.executions.get(parts[1]) if len(parts) == 3 and parts[2] == "log" else None
        if execution is None or not execution.warm or not LOG_NAME.match(query.get("name", "")):
            self._reply(404, {"message": "no such warm task or log name"})
            return None
        return os.path.join(execution.dir, query["name"])

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            return
        parts, query = route
        if len(parts) == 3 and parts[0] == "executions":
            path = self._log_path(parts, query)
            if path is not None:
                try:
                    with open(path, "rb") as f:
                        self._raw(200, f.read())
                except FileNotFoundError:
                    self._raw(200, b"")
            return
        if parts == ["executions"]:
            self._reply(200, {"node": self.agent.node, "executions": sorted(self.agent.executions)})
        elif parts == ["health"]:
            self._reply(200, {"node": self.agent.node})
        else:
            self._reply(404, {"message": "no such route"})

    def do_PUT(self) -> None:
        route = self._route()
        if route is None:
            return
        parts, query = route
        body = self._body()
        if len(parts) == 3 and parts[0] == "executions" and parts[2] == "binary":
            execution = self.agent.executions.get(parts[1])
            if execution is None or not execution.warm:
                self._reply(404, {"message": "no such warm task"})
                return
            execution.write_binary(body)
            self._reply(200, {"size": len(body)})
            return
        if len(parts) != 2 or parts[0] != "executions" or ":" not in query.get("callback", ""):
            self._reply(400, {"message": "PUT /executions/<eid>?callback=host:port"})
            return
        binary = body if self.headers.get("X-Abaco-Binary") == "1" else None
        try:
            execution = self.agent.prepare(parts[1], query["callback"], binary, query.get("warm") == "1")
        except OSError as exc:
            self._reply(500, {"message": f"cannot prepare {parts[1]}: {exc}"})
            return
        self._reply(
            200,
            {
                "node": self.agent.node,
                "dir": execution.dir,
                "binary": execution.binary_path,
                "results": execution.results_path,
                "api": execution.api_path,
            },
        )

    def do_POST(self) -> None:
        route = self._route()
        if route is None:
            return
        parts, query = route
        self._body()
        if len(parts) != 3 or parts[0] != "executions":
            self._reply(404, {"message": "no such route"})
            return
        eid, action = parts[1], parts[2]
        execution = self.agent.executions.get(eid)
        if action == "finish":
            delivered = execution.deliver() if execution is not None else True
            info = container_of(eid, query.get("container", ""))
            state = {k: (info.get("State") or {}).get(k) for k in STATE_KEYS} if info else None
            self._reply(200, {"delivered": delivered, "state": state})
        elif action == "oom":
            python = query.get("python", "python3")
            if container_of(eid, query.get("container", "")) is None or not python.startswith(
                ("/", "python")
            ):
                self._reply(404, {"message": "no such container of this warm task on this node"})
                return
            self._reply(200, {"oom_kill": oom_kills_inside(query["container"], python)})
        elif action == "stop":
            if container_of(eid, query.get("container", "")) is None:
                self._reply(404, {"message": "no such container of this execution on this node"})
                return
            grace = max(0, int(float(query.get("grace", "10"))))
            status, data = docker("POST", f"/containers/{query['container']}/stop?t={grace}", grace + 60)
            self._reply(200 if status in (204, 304) else 502, {"docker": status, "detail": data})
        else:
            self._reply(404, {"message": "no such route"})

    def do_DELETE(self) -> None:
        route = self._route()
        if route is None:
            return
        parts, query = route
        if len(parts) == 3 and parts[0] == "executions":
            path = self._log_path(parts, query)
            if path is not None:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                self._reply(200, {"removed": query["name"]})
            return
        if len(parts) != 2 or parts[0] != "executions":
            self._reply(404, {"message": "no such route"})
            return
        self.agent.drop(parts[1])
        self._reply(200, {"removed": parts[1]})


def main() -> None:
    root = os.environ.get("ABACO_NB_AGENT_DIR", "/run/abaco-nb-agent")
    with open(os.environ.get("ABACO_NB_AGENT_TOKEN_FILE", "/run/secrets/abaco-nb-agent-token")) as f:
        token = f.read().strip()
    port = int(os.environ.get("ABACO_NB_AGENT_PORT", "7781"))
    node = os.environ.get("ABACO_NB_AGENT_NODE", socket.gethostname())
    os.makedirs(root, mode=0o755, exist_ok=True)
    for name in os.listdir(root):  # an agent restarted: sockets of a previous life are dead inodes
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    agent = Agent(root, token, node)
    Handler.agent = agent
    server = ThreadingHTTPServer((os.environ.get("ABACO_NB_AGENT_HOST", "0.0.0.0"), port), Handler)
    server.daemon_threads = True
    _log("abaco-nb agent of node", node, "on port", port, "dir", root)
    server.serve_forever()


if __name__ == "__main__":
    main()
