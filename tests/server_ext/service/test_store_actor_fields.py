"""Narrow actor writes: an image check's status and a cron pass's next run never overwrite other fields."""

from __future__ import annotations

from pathlib import Path

from server_ext.service.models import Actor, Registration
from server_ext.service.store import Store


def test_status_and_cron_writes_touch_only_their_fields(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "db"))
    actor = Actor(id="A", owner="me", reg=Registration(image="i"), cron_next_ex="2099-01-01 00")
    store.put_actor(actor)
    actor.state, actor.reg.description = {"n": 1}, "changed meanwhile"
    store.put_actor(actor)  # e.g. a state POST while the image was checked

    assert store.set_actor_status("A", 1, "READY", "")
    assert not store.set_actor_status("A", 2, "ERROR", "old revision")  # a PUT made revision 2: no
    assert store.set_cron_next_ex("A", "2099-01-01 00", "2099-01-02 00")
    assert not store.set_cron_next_ex("A", "2099-01-01 00", "2099-01-03 00")  # moved already
    assert not store.set_actor_status("B", 1, "READY", "")  # no such actor

    stored = store.get_actor("A")
    assert stored is not None
    assert (stored.status, stored.cron_next_ex, stored.state) == ("READY", "2099-01-02 00", {"n": 1})
    assert stored.reg.description == "changed meanwhile"
    actor.cron_next_ex = None
    store.put_actor(actor)
    assert store.set_cron_next_ex("A", None, "2099-02-01 00")  # from no schedule (NULL) works too
