"""The swarm runtime's callback endpoint: where the node agents hand over what executions send.

It is the far end of the channel described in ``swarm_agent``: a small threaded HTTP server on the
manager (``swarm_callback``, host:port reachable from every node), separate from the Abaco API so that
API can stay on loopback. Every request carries the agent token. Two routes:

- ``POST /results/<eid>``: length-prefixed datagrams, re-sent one by one to the execution's local
  results socket (the dispatcher's ``ResultCollector``), so results from a remote node are collected
  exactly like those of a local container. 200 once every frame is queued there; 410 when the
  execution is no longer supervised (the agent drops them); 503 while it is unknown but may come back.
- ``CONNECT /api/<eid>``: a byte tunnel to the service's own API unix socket. The bytes are the
  container's HTTP requests with its execution token; the service authenticates them as it does for a
  container on the docker runtime.
- ``CONNECT /control/<wid>``: a warm task's zygote connecting to its pool (``swarm_warm``): a byte
  tunnel to the pool's local control listener.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .swarm_agent import pipe

log = logging.getLogger(__name__)


@dataclass
class Target:
    """The local ends of one execution's channel."""

    results_socket: str | None
    api_socket: str | None
    control_socket: str | None = None  # a warm task's: the warm pool's control listener (swarm_warm)


class Relay:
    """Owns the listener and the map execution id -> local sockets (see module docstring)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.token = token
        self.targets: dict[str, Target] = {}
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("relay: " + format, *args)

            def _authorised(self) -> bool:
                given = self.headers.get("Authorization", "").encode()
                if hmac.compare_digest(given, f"Bearer {relay.token}".encode()):
                    return True
                self._reply(401, b"wrong agent token")
                return False

            def _reply(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not self._authorised():
                    return
                parts = [p for p in self.path.split("/") if p]
                if len(parts) != 2 or parts[0] != "results":
                    self._reply(404)
                    return
                self._reply(*relay.deliver_results(parts[1], body))

            def do_CONNECT(self) -> None:
                if not self._authorised():
                    return
                parts = [p for p in self.path.split("/") if p]
                target = relay.targets.get(parts[1]) if len(parts) == 2 else None
                path = None
                if target is not None:
                    path = {"api": target.api_socket, "control": target.control_socket}.get(parts[0])
                if not path:
                    self._reply(404, b"no such execution")
                    return
                inner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    inner.connect(path)
                except OSError as exc:
                    inner.close()
                    self._reply(502, str(exc).encode())
                    return
                self.send_response(200)
                self.end_headers()
                self.wfile.flush()
                try:
                    pipe(self.connection, inner)
                finally:
                    inner.close()
                    self.close_connection = True

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="swarm-relay", daemon=True)
        self._thread.start()

    def deliver_results(self, eid: str, body: bytes) -> tuple[int, bytes]:
        target = self.targets.get(eid)
        if target is None:
            return 503, b"execution not supervised (yet)"
        if not target.results_socket or not os.path.exists(target.results_socket):
            return 410, b"results socket closed"
        frames, offset = [], 0
        while offset + 4 <= len(body):
            (size,) = struct.unpack_from(">I", body, offset)
            frames.append(body[offset + 4 : offset + 4 + size])
            offset += 4 + size
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
            try:
                out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
            except OSError:
                pass
            out.settimeout(60)
            try:
                for frame in frames:
                    out.sendto(frame, target.results_socket)
            except OSError as exc:
                log.warning("results of %s: %s", eid, exc)
                return 503, str(exc).encode()
        return 200, b""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
