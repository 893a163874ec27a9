"""An HTTP server whose connections are bounded: in number, and in how long they may dawdle.

1,100 connections that never finished their headers once froze the service (the 1024-descriptor limit,
then an error logged per accept: 138,269 lines). Here:

- a connection has ``HEADER_TIMEOUT`` seconds for each request's headers (and to sit idle between
  requests), and ``BODY_TIMEOUT`` for its body;
- at most ``max_connections`` are open; a new one beyond that closes the connection that has waited
  longest for headers (a half-open one, or an idle keep-alive), never one serving a request, so the
  service keeps answering; with none such, the new connection is closed;
- the descriptor limit is raised to the hard limit at start (``raise_fd_limit``), and the cap stays
  well below it, so the database and the executions' files always have descriptors.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

from tornado import httpserver, httputil, iostream

log = logging.getLogger("abaco_nb.server")

# Seconds for a request's headers, and for an idle keep-alive connection (tornado has one timeout for
# both). Not shorter: a client reusing a kept-alive connection at the moment the server's timer fires
# gets a reset (requests does not resend a POST), and notebook clients sit idle for tens of seconds
# between cells. Half-open connections are bounded by the cap below, not by this timer.
HEADER_TIMEOUT = 75.0
BODY_TIMEOUT = 600.0  # seconds for a body (256 MiB over a slow link)
DEFAULT_MAX_CONNECTIONS = 2048
RESERVED_FDS = 512  # descriptors kept for everything but connections


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; the soft limit in effect afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    return soft


def connection_cap(wanted: int = DEFAULT_MAX_CONNECTIONS) -> int:
    """``wanted``, but never so many that connections could take the descriptors the service needs."""
    return max(16, min(wanted, raise_fd_limit() - RESERVED_FDS))


class _Marking(httputil.HTTPMessageDelegate):
    """Forwards to the real delegate; tells the server when a request's headers have arrived."""

    def __init__(self, inner: httputil.HTTPMessageDelegate, busy: Any) -> None:
        self.inner = inner
        self.busy = busy

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        self.busy()
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


class BoundedHTTPServer(httpserver.HTTPServer):
    """``HTTPServer`` with the header and body timeouts and the connection cap above."""

    def initialize(self, *args: Any, max_connections: int = DEFAULT_MAX_CONNECTIONS, **kwargs: Any) -> None:
        kwargs.setdefault("idle_connection_timeout", HEADER_TIMEOUT)
        kwargs.setdefault("body_timeout", BODY_TIMEOUT)
        super().initialize(*args, **kwargs)
        self.max_connections = connection_cap(max_connections)
        self._waiting: dict[Any, float] = {}  # connection -> since when it waits for headers
        self._streams: dict[Any, iostream.IOStream] = {}
        self._refused = 0

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        # counted as ours (closed ones leave at once; tornado forgets them a little later)
        if len(self._streams) >= self.max_connections and not self._evict_one():
            self._refused += 1
            if self._refused in (1, 10, 100) or self._refused % 1000 == 0:
                log.warning(
                    "%d connection(s) refused: %d open, all serving requests",
                    self._refused,
                    len(self._connections),
                )
            stream.close()
            return
        before = set(self._connections)
        super().handle_stream(stream, address)
        for conn in self._connections - before:
            self._streams[conn] = stream
            self._waiting[conn] = time.monotonic()  # waits for headers from now (its loop starts later)

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for headers; False when none is waiting."""
        if not self._waiting:
            return False
        oldest = min(self._waiting, key=self._waiting.__getitem__)
        self._waiting.pop(oldest, None)
        stream = self._streams.pop(oldest, None)
        if stream is not None:
            stream.close()
        return True

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> Any:
        self._waiting[server_conn] = time.monotonic()
        delegate = super().start_request(server_conn, request_conn)
        return _Marking(delegate, lambda: self._waiting.pop(server_conn, None))

    def on_close(self, server_conn: object) -> None:
        self._waiting.pop(server_conn, None)
        self._streams.pop(server_conn, None)
        super().on_close(server_conn)
