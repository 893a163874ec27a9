"""Collecting an execution's results from its datagram socket.

Abaco's contract: the container sends each result as one datagram to ``/_abaco_results.sock``. We bind
one AF_UNIX SOCK_DGRAM socket per execution on the host (mode 0777, so any container uid can send),
read it while the execution runs, and drain it after the exit. The receive buffer is far above Abaco's
128 KiB, so frames up to the kernel's datagram limit (~212 KB here) arrive whole.

One reader thread serves every collector of the process (an epoll selector): a thread per execution
cost its start and join, 1-3 ms on a busy service, on each execution's way to its fork and to its end.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
from collections.abc import Callable

MAX_DATAGRAM = 4 * 1024 * 1024
BATCH_BYTES = 16 * 1024 * 1024  # at most this much per store transaction


class _Reader:
    """The thread that reads every open collector's socket while its execution runs."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, collector: ResultCollector) -> None:
        with self._lock:
            self._selector.register(collector.sock, selectors.EVENT_READ, collector)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="results-reader", daemon=True)
                self._thread.start()

    def remove(self, collector: ResultCollector) -> None:
        with self._lock:
            try:
                self._selector.unregister(collector.sock)
            except (KeyError, ValueError):
                pass

    def _run(self) -> None:
        while True:
            try:
                events = self._selector.select(timeout=1.0)
            except OSError:  # a socket closed under the selector: the next round has the rest
                continue
            for key, _ in events:
                key.data.pump()


_READER = _Reader()


class ResultCollector:
    """Binds ``path`` and hands the datagrams to ``on_results`` until closed: every datagram waiting at
    a wake-up goes in one list (one store transaction instead of one per frame: a 1,000-call chunk sends
    1,000 frames). Frames keep their order: every receive and hand-over happens under the collector's
    lock, whether the reader or :meth:`close` drains."""

    def __init__(self, path: str, on_results: Callable[[list[bytes]], None]) -> None:
        self.path = path
        self._on_results = on_results
        self._lock = threading.Lock()
        self._closed = False
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        except OSError:
            pass
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.sock.setblocking(False)
        _READER.add(self)

    def _drain(self) -> list[bytes]:
        """The datagrams waiting now (up to ``BATCH_BYTES``)."""
        batch: list[bytes] = []
        size = 0
        while size < BATCH_BYTES:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except OSError:  # BlockingIOError: nothing more waiting (or closed)
                break
            if data:
                batch.append(data)
                size += len(data)
        return batch

    def pump(self) -> None:
        """Hand over what is waiting now (the reader, when the socket is readable)."""
        with self._lock:
            if self._closed:
                return
            batch = self._drain()
            if batch:
                self._on_results(batch)

    def close(self) -> None:
        """Stop reading, then drain what is left so no result sent before the exit is lost."""
        _READER.remove(self)
        with self._lock:
            if self._closed:
                return
            while batch := self._drain():
                self._on_results(batch)
            self._closed = True
            self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
