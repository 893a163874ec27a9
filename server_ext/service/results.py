"""Collecting an execution's results from its datagram socket.

Abaco's contract: the container sends each result as one datagram to ``/_abaco_results.sock``. We bind
one AF_UNIX SOCK_DGRAM socket per execution on the host (mode 0777, so any container uid can send),
read it from a thread while the execution runs, and drain it after the exit. The receive buffer is far
above Abaco's 128 KiB, so frames up to the kernel's datagram limit (~212 KB here) arrive whole.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

MAX_DATAGRAM = 4 * 1024 * 1024


class ResultCollector:
    """Binds ``path`` and hands every datagram to ``on_result`` until closed."""

    def __init__(self, path: str, on_result: Callable[[bytes], None]) -> None:
        self.path = path
        self._on_result = on_result
        if os.path.exists(path):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        except OSError:
            pass
        self._sock.bind(path)
        os.chmod(path, 0o777)
        self._sock.settimeout(0.2)
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"results-{os.path.basename(path)}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return
            if data:  # an empty datagram is our own wake-up call (and carries no result anyway)
                self._on_result(data)

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
        self._sock.setblocking(False)
        while True:
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, OSError):
                break
            if data:
                self._on_result(data)
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
