"""The API through ``Api.handle`` in this process (tests/inprocess.py): the real Service, store and
process runtime, driven by ``abaco_nb.Client`` with a session whose adapter calls the API directly, so
these run in milliseconds each and need no server. The HTTP-level suites (test_service_http,
test_openapi, the real clients) keep checking the same answers over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from abaco_nb import AbacoAPIError, Client
from server_ext.service.service import Service
from tests.inprocess import BASE_URL, in_process


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Service]]:
    with in_process(tmp_path_factory.mktemp("inprocess")) as pair:
        yield pair


@pytest.fixture
def client(api: tuple[Client, Service]) -> Client:
    return api[0]


def test_register_send_wait_and_read_the_logs(client: Client) -> None:
    actor = client.register("abaco-nb/test", name="inproc", default_environment={"SLEEP": "0"})
    assert client.wait_until_ready(actor.id, timeout=30).status == "READY"
    receipt = client.send(actor.id, "hello in-process")
    execution = client.execution(actor.id, receipt.execution_id, wait=30)
    assert execution.status == "COMPLETE"
    assert "hello in-process" in client.logs(actor.id, execution.id)
    assert [e.id for e in client.wait(actor.id, [execution.id], timeout=1)] == [execution.id]
    client.delete(actor.id)
    assert actor.id not in {a.id for a in client.actors()}


def test_links_point_at_the_base_url_the_request_came_to(client: Client) -> None:
    actor = client.register("abaco-nb/test")
    sent = client.request("POST", f"/{actor.id}/messages", json={"message": "x"})
    assert sent["_links"]["self"].startswith(f"{BASE_URL}/actors/{actor.id}/executions/")


def test_an_unknown_actor_is_a_404_envelope(client: Client) -> None:
    with pytest.raises(AbacoAPIError) as info:
        client.actor("no-such-actor")
    assert info.value.status == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "/actors", b"{not json", 400, "not valid JSON"),
        ("POST", "/actors", b"[1, 2]", 400, "JSON object"),
        ("POST", "/actors", b"", 400, "image is required"),  # as Abaco: the refusal names the field
        ("PATCH", "/actors", b"", 405, ""),
        ("GET", "/nothing/here", b"", 404, "No such route"),
    ],
)
def test_bad_input_answers_an_envelope_naming_the_problem(
    client: Client, method: str, path: str, body: bytes, status: int, words: str
) -> None:
    resp = client.session.request(
        method, BASE_URL + path, data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == status
    envelope = resp.json()
    assert envelope["status"] == "error" and words in envelope["message"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_credentials_are_checked_as_abaco_nb_serve_checks_them(api: tuple[Client, Service]) -> None:
    client, _ = api
    anonymous = requests.Session()
    anonymous.adapters = client.session.adapters  # the same in-process API, no token
    assert anonymous.get(BASE_URL + "/actors").status_code == 401
    wrong = Client(BASE_URL, "wrong-token", session=anonymous)
    with pytest.raises(AbacoAPIError) as info:
        wrong.actors()
    assert info.value.status == 401


def test_a_nonce_alone_is_redeemed_and_counted(client: Client) -> None:
    actor = client.register("abaco-nb/test")
    nonce = client.create_nonce(actor.id, level="READ", max_uses=1)
    bare = requests.Session()
    bare.adapters = client.session.adapters
    first = bare.get(f"{BASE_URL}/actors/{actor.id}", params={"x-nonce": nonce.id})
    assert first.status_code == 200 and first.json()["result"]["id"] == actor.id
    again = bare.get(f"{BASE_URL}/actors/{actor.id}", params={"x-nonce": nonce.id})
    assert again.status_code in (400, 403), again.text


def test_state_round_trips_through_the_api(client: Client, tmp_path: Path) -> None:
    actor = client.register("abaco-nb/test", stateless=False)
    client.set_state(actor.id, {"count": 3})
    assert client.state(actor.id) == {"count": 3}
