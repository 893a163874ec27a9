"""The pure event rules (server_ext/service/events.py): which events, their fields, links and webhooks."""

from __future__ import annotations

import pytest

from server_ext.service import events
from server_ext.service.errors import AbacoError
from server_ext.service.models import ERROR, READY, SUBMITTED, Actor, Execution, Registration

T = 1_700_000_000.5  # 2023-11-14T22:13:20.5 UTC


def actor(link: str = "", webhook: str = "") -> Actor:
    return Actor(id="A1", owner="me", reg=Registration(image="abaco-nb/test", link=link, webhook=webhook))


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (SUBMITTED, READY, events.ACTOR_READY),
        (SUBMITTED, ERROR, events.ACTOR_ERROR),
        (READY, ERROR, events.ACTOR_ERROR),  # a restart found the image gone
        (ERROR, READY, events.ACTOR_READY),
        (READY, READY, None),  # a restart re-checked a READY actor: nothing new to tell
        (ERROR, ERROR, None),
    ],
)
def test_status_events_on_changes_only(before: str, after: str, expected: str | None) -> None:
    assert events.status_event_type(before, after) == expected


def test_only_actors_with_a_link_or_webhook_produce_events() -> None:
    assert not events.wants_events(actor())
    assert events.wants_events(actor(link="B"))
    assert events.wants_events(actor(webhook="http://127.0.0.1:1/"))


def test_event_fields_match_abaco() -> None:
    a = actor(link="B", webhook="http://h/x")
    a.status, a.status_message = ERROR, "pull failed"
    event = events.status_event(a, events.ACTOR_ERROR, T)
    assert event == {
        "tenant_id": "local",
        "event_type": "ACTOR_ERROR",
        "event_time_utc": "2023-11-14T22:13:20.500000",
        "event_time_display": "2023-11-14T22:13:20.500000Z",
        "actor_id": "A1",
        "actor_dbid": "LOCAL_A1",
        "_abaco_link": "B",
        "_abaco_webhook": "http://h/x",
        "status_message": "pull failed",
    }
    execution = Execution(
        id="E1", actor_id="A1", executor="me", status="COMPLETE", message_received_time=T, content_type="str"
    )
    execution.exit_code = 3
    done = events.execution_event(a, execution, T)
    assert done["event_type"] == "EXECUTION_COMPLETE"
    assert (done["execution_id"], done["status"], done["exit_code"]) == ("E1", "COMPLETE", 3)
    assert "status_message" not in done


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://example.org/a?b=c", ""])
def test_good_webhooks(url: str) -> None:
    assert events.check_webhook(url) == url


@pytest.mark.parametrize(
    "url",
    ["example.org/hook", "ftp://example.org/", "http://", "not a url", "http://exa mple.org/", "file:///x"],
)
def test_bad_webhooks_are_400_naming_the_field(url: str) -> None:
    with pytest.raises(AbacoError) as err:
        events.check_webhook(url)
    assert err.value.status == 400 and "webhook" in err.value.message


def test_links_must_name_an_actor_and_make_no_cycle() -> None:
    links = {"B": "C", "C": None, "X": "Y", "Y": "X"}  # X <-> Y: an old cycle among others
    link_of = links.get
    events.check_link(None, "B", link_of)  # a new actor cannot close a cycle
    events.check_link("A", "B", link_of)  # A -> B -> C
    events.check_link("A", "X", link_of)  # an existing cycle elsewhere does not hang the walk
    with pytest.raises(AbacoError, match="no actor"):
        events.check_link("A", None, link_of)
    with pytest.raises(AbacoError) as err:
        events.check_link("A", "A", link_of)  # self-link
    assert err.value.message == "Error: this update would result in a cycle of linked actors."
    with pytest.raises(AbacoError, match="cycle of linked actors"):
        events.check_link("C", "B", link_of)  # C -> B -> C
