"""A unix-socket proxy to the machine's Docker engine that a test can cut, stall and restore.

A service started with ``DOCKER_HOST=unix://<proxy.path>`` reaches Docker only through it, so a test
can make Docker unreachable for that service alone, without touching the daemon everyone shares:

- ``cut()``: every open connection is closed and the socket is gone (new connections are refused),
  as when the engine is down;
- ``stall()``: connections are accepted but nothing is forwarded until ``restore()`` (a slow engine);
- ``restore()``: back to forwarding.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

DOCKER_SOCKET = "/var/run/docker.sock"


class DockerProxy:
    def __init__(self, path: Path, upstream: str = DOCKER_SOCKET) -> None:
        self.path = str(path)
        self.upstream = upstream
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener: socket.socket | None = None
        self.connections = 0  # accepted so far (a test can tell the service used it)
        self._listen()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="docker-proxy").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut() or close()
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def cut(self) -> None:
        """Docker is gone for the service: open connections die, new ones are refused."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            self._drop(sock)
        self._flowing.set()

    def stall(self) -> None:
        """Accept, but forward nothing until ``restore()``."""
        self._flowing.clear()

    def restore(self) -> None:
        if self._listener is None:
            self._listen()
        self._flowing.set()

    def close(self) -> None:
        self.cut()


@contextlib.contextmanager
def docker_proxy(path: Path) -> Iterator[DockerProxy]:
    proxy = DockerProxy(path)
    try:
        yield proxy
    finally:
        proxy.close()
