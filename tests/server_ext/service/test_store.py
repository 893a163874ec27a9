"""The store's transactions: what is acknowledged is on disk, claims are atomic, order is FIFO."""

from __future__ import annotations

import threading

from server_ext.service import lifecycle
from server_ext.service.models import Execution
from server_ext.service.store import Store


def _claim(worker: str, at: float):
    return lambda e: lifecycle.claim(e, worker, at)


def _execution(eid: str, actor: str = "A") -> Execution:
    return Execution(
        id=eid,
        actor_id=actor,
        executor="me",
        status="SUBMITTED",
        message_received_time=0.0,
        content_type="str",
        message=eid,
    )


def test_submit_is_durable_and_fifo(tmp_path):
    store = Store(str(tmp_path / "db"))
    for i in range(3):
        store.submit(_execution(f"E{i}"), b"payload" if i == 1 else None)
    store.close()
    reopened = Store(str(tmp_path / "db"))  # a new connection sees every commit
    assert reopened.queue_length("A") == 3
    assert reopened.get_payload("E1") == b"payload"
    claimed = [reopened.claim_next("A", _claim("W", 1.0)) for _ in range(3)]
    assert [c.id for c in claimed if c] == ["E0", "E1", "E2"]
    assert reopened.get_execution("E0").status == "RUNNING"
    assert reopened.claim_next("A", _claim("W", 1.0)) is None


def test_concurrent_claims_never_share_a_message(tmp_path):
    store = Store(str(tmp_path / "db"))
    for i in range(200):
        store.submit(_execution(f"E{i}"), None)
    taken: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while (e := store.claim_next("A", _claim("W", 1.0))) is not None:
            with lock:
                taken.append(e.id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(f"E{i}" for i in range(200))


def test_requeue_first_goes_to_the_head(tmp_path):
    store = Store(str(tmp_path / "db"))
    for i in range(3):
        store.submit(_execution(f"E{i}"), None)
    first = store.claim_next("A", _claim("W", 1.0))
    assert first is not None
    store.requeue_first(lifecycle.requeued(first))
    again = store.claim_next("A", _claim("W", 2.0))
    assert again is not None and again.id == "E0" and again.start_time == 2.0


def test_results_pop_in_order_and_stay_readable(tmp_path):
    store = Store(str(tmp_path / "db"))
    store.add_result("E", b"one", 1.0)
    store.add_result("E", b"two", 2.0)
    assert store.pop_result("E") == b"one"
    assert store.pop_result("E") == b"two"
    assert store.pop_result("E") is None
    assert store.all_results("E") == [b"one", b"two"]
