"""The results collector: every datagram sent before the close is handed over, in order, whether the
shared reader or the close drains it, and collectors open together do not mix their frames."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from server_ext.service.results import ResultCollector


def _send(path: str, frames: list[bytes]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for frame in frames:
            s.sendto(frame, path)


def test_frames_arrive_in_order_per_collector_and_close_drains_the_rest(tmp_path: Path) -> None:
    got: dict[int, list[bytes]] = {i: [] for i in range(8)}
    lock = threading.Lock()

    def keep(i: int):
        def on_results(batch: list[bytes]) -> None:
            with lock:
                got[i].extend(batch)

        return on_results

    collectors = [ResultCollector(str(tmp_path / f"{i}.sock"), keep(i)) for i in range(8)]
    sent = {i: [f"{i}:{n}".encode() for n in range(300)] for i in range(8)}
    senders = [threading.Thread(target=_send, args=(c.path, sent[i])) for i, c in enumerate(collectors)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    time.sleep(0.05)  # the reader takes some, the close the rest
    for c in collectors:
        c.close()
    assert got == sent
    assert not any((tmp_path / f"{i}.sock").exists() for i in range(8))


def test_a_collector_opened_after_others_closed_still_reads(tmp_path: Path) -> None:
    for i in range(3):
        ResultCollector(str(tmp_path / f"old{i}.sock"), lambda batch: None).close()
    seen: list[bytes] = []
    arrived = threading.Event()

    def on_results(batch: list[bytes]) -> None:
        seen.extend(batch)
        arrived.set()

    c = ResultCollector(str(tmp_path / "new.sock"), on_results)
    _send(c.path, [b"one", b"two"])
    assert arrived.wait(5)  # read while open, not only at the close
    c.close()
    assert seen == [b"one", b"two"]
