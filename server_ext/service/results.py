"""Collecting an execution's results from its datagram socket.

Abaco's contract: the container sends each result as one datagram to ``/_abaco_results.sock``. We bind
one AF_UNIX SOCK_DGRAM socket per execution on the host (mode 0777, so any container uid can send),
read it from a thread while the execution runs, and drain it after the exit. The receive buffer is far
above Abaco's 128 KiB, so frames up to the kernel's datagram limit (~212 KB here) arrive whole.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable

MAX_DATAGRAM = 4 * 1024 * 1024
BATCH_BYTES = 16 * 1024 * 1024  # at most this much per store transaction


class ResultCollector:
    """Binds ``path`` and hands the datagrams to ``on_results`` until closed: every datagram waiting at
    a wake-up goes in one list (one store transaction instead of one per frame: a 1,000-call chunk sends
    1,000 frames)."""

    def __init__(self, path: str, on_results: Callable[[list[bytes]], None]) -> None:
        self.path = path
        self._on_results = on_results
        if os.path.exists(path):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        except OSError:
            pass
        self._sock.bind(path)
        os.chmod(path, 0o777)
        self._sock.setblocking(False)
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"results-{os.path.basename(path)}", daemon=True
        )
        self._thread.start()

    def _drain(self) -> list[bytes]:
        """The datagrams waiting now (up to ``BATCH_BYTES``); an empty one is our own wake-up call."""
        batch: list[bytes] = []
        size = 0
        while size < BATCH_BYTES:
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except OSError:  # BlockingIOError: nothing more waiting
                break
            if data:
                batch.append(data)
                size += len(data)
        return batch

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        while not self._closing.is_set():
            if not poller.poll(200):
                continue
            batch = self._drain()
            if batch:
                self._on_results(batch)

    def close(self) -> None:
        """Stop the reader, then drain what is left so no result sent before the exit is lost."""
        self._closing.set()
        try:  # wake the reader now rather than at its next timeout
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
                # Never block: with the queue full (net.unix.max_dgram_qlen, 10 by default) the reader is
                # awake anyway, and the drain below takes what it leaves.
                waker.setblocking(False)
                waker.sendto(b"", self.path)
        except OSError:
            pass
        self._thread.join()
        while batch := self._drain():
            self._on_results(batch)
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:  # gone already (or never a socket of ours): the results above are stored
            pass
