"""abaco-nb as a JupyterHub service, for real: one Hub (hub_fixture.py) for the module.

- the permission scenario (users_scenario.py) between alice, bob and the Hub admin, each with their
  own Hub token, through the Hub's proxy;
- bob's kernel, started by the Hub's spawner with the Hub's environment: ``connect()`` finds the team
  service, the magics see what alice shared, ``AbacoExecutor`` runs as bob;
- the browser sign-in through the Hub's OAuth, in headless chromium (tests/browser's setup);
- a token the Hub does not know is refused;
- agavepy 0.9.5 and tapipy as two different Hub users (their venvs in .clients, drivers in tests/clients/).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from tests.chromium import CHROMIUM, launch
from tests.server_ext.hub_fixture import PASSWORD, Hub, start_hub
from tests.server_ext.hub_kernel import execute, new_kernel, start_server
from tests.server_ext.users_scenario import IMAGE, As, run_sharing_scenario


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = start_hub(tmp_path_factory.mktemp("hub"))
    try:
        yield running
    finally:
        running.stop()


def user(hub: Hub, name: str) -> As:
    return As(hub.service, hub.tokens[name], name)


@pytest.mark.hub
def test_sharing_scenario_between_hub_users(hub: Hub) -> None:
    run_sharing_scenario(
        user(hub, "alice"), user(hub, "bob"), user(hub, "admin"), As(hub.service, None, "anonymous")
    )


@pytest.mark.hub
def test_unknown_tokens_are_refused(hub: Hub) -> None:
    assert As(hub.service, "not-a-hub-token", "x").call("GET", "/actors").status_code == 401
    assert requests.get(f"{hub.service}/actors", timeout=30).status_code == 401


@pytest.mark.hub
def test_bobs_kernel_from_the_hub_spawner(hub: Hub) -> None:
    """A kernel of bob's Hub-spawned server: connect() picks the team service as bob, the magics list
    what alice shared, a message runs as bob, and AbacoExecutor works."""
    alice = user(hub, "alice")
    shared = alice.ok(
        "POST", "/actors", json={"image": IMAGE, "name": "for-bob", "default_environment": {"SLEEP": "0"}}
    )
    alice.wait_ready(shared["id"])
    alice.ok("POST", f"/actors/{shared['id']}/permissions", json={"user": "bob", "level": "EXECUTE"})
    private = alice.ok("POST", "/actors", json={"image": IMAGE, "name": "alice-only"})

    server = start_server(hub.public, "bob", hub.tokens["bob"])
    kernel = new_kernel(server, hub.tokens["bob"])
    token = hub.tokens["bob"]
    connected = execute(
        server,
        token,
        kernel,
        (
            "import os, abaco_nb\n%load_ext abaco_nb\nclient = abaco_nb.connect()\n"
            "print('HOW', client.how)\nprint('URL', client.base_url)\n"
            "print('ENV', os.environ['JUPYTERHUB_USER'], bool(os.environ.get('JUPYTERHUB_API_TOKEN')))"
        ),
    )
    assert not connected.error, connected
    assert "HOW the JupyterHub team service" in connected.text, connected
    assert f"URL {hub.service}" in connected.text and "ENV bob True" in connected.text, connected

    listed = execute(server, token, kernel, "actors = %abaco actors\nprint('IDS', [a['id'] for a in actors])")
    assert not listed.error, listed
    assert shared["id"] in listed.text and private["id"] not in listed.text, listed

    sent = execute(
        server,
        token,
        kernel,
        f"done = %abaco send {shared['id']} \"hi from bob's kernel\" --wait\nprint('BY', done.execution['executor'], done.status)",
    )
    assert not sent.error, sent
    assert "BY bob COMPLETE" in sent.text, sent
    refused = execute(server, token, kernel, f"%abaco send {private['id']} nope")  # invisible to bob
    said = refused.text + refused.error
    assert "no actor with id or name" in said or "Not authorized" in said, refused

    executor = execute(
        server,
        token,
        kernel,
        (
            "from abaco_nb import AbacoExecutor\nex = AbacoExecutor()\n"
            "print('POW', ex.blocking_call(pow, 2, 10))\n"
            "print('OWNER', client.actor(ex.actor_id)['owner'])\nex.delete()"
        ),
    )
    assert not executor.error, executor
    assert "POW [1024]" in executor.text or "POW 1024" in executor.text, executor
    assert "OWNER bob" in executor.text, executor
    assert shared["id"] in {a["id"] for a in user(hub, "bob").ok("GET", "/actors")}
    # bob's own server's abaco/ routes (the extension) forward to the team service as bob
    via_extension = requests.get(
        f"{server}/abaco/actors", headers={"Authorization": f"token {token}"}, timeout=60
    )
    assert via_extension.status_code == 200, via_extension.text
    seen = {a["id"] for a in via_extension.json()["result"]}
    assert shared["id"] in seen and private["id"] not in seen, seen


@pytest.mark.hub
def test_dashboard_signs_in_through_the_hub(hub: Hub, tmp_path: Path) -> None:
    """Headless chromium opens a page of the service, is sent to the Hub's login, signs in as bob,
    comes back through the OAuth callback, and the API then answers bob's cookie: only his actors;
    the dashboard page at the service's root shows the same."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {CHROMIUM} (scripts/test installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    alice = user(hub, "alice")
    hidden = alice.ok("POST", "/actors", json={"image": IMAGE, "name": "not-for-bob"})
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(f"{hub.service}/_abaco_nb/whoami")
            page.wait_for_selector("input[name=username]", timeout=60_000)
            assert "/hub/login" in page.url, page.url
            page.fill("input[name=username]", "bob")
            page.fill("input[name=password]", PASSWORD)
            page.click("input[type=submit], button[type=submit]")
            page.wait_for_url(f"{hub.service}/_abaco_nb/whoami*", timeout=60_000)
            me = json.loads(page.inner_text("body"))
            assert me["name"] == "bob" and me["admin"] is False, me
            page.screenshot(path=str(tmp_path / "whoami.png"))
            fetch = "async ([url, init]) => { const r = await fetch(url, init); return [r.status, await r.json()]; }"
            xsrf = {"X-XSRFToken": me["xsrf"]}
            status, listed = page.evaluate(fetch, ["/services/abaco/actors", {"headers": xsrf}])
            assert status == 200 and listed["status"] == "success", listed
            assert hidden["id"] not in {a["id"] for a in listed["result"]}
            status, _ = page.evaluate(fetch, ["/services/abaco/actors", {}])
            assert status == 401  # a cookie without the XSRF token is not a sign-in (jupyterhub's rule)
            body = json.dumps({"image": IMAGE, "name": "from-the-browser"})
            post = {"method": "POST", "headers": {**xsrf, "Content-Type": "application/json"}, "body": body}
            status, created = page.evaluate(fetch, ["/services/abaco/actors", post])
            assert status == 200 and created["result"]["owner"] == "bob", created
            # the dashboard page at the service's root, signed in by the same cookie: bob's actors only
            page.goto(f"{hub.service}/")
            page.wait_for_selector(f"#actors tr[data-id='{created['result']['id']}']", timeout=60_000)
            assert page.locator(f"#actors tr[data-id='{hidden['id']}']").count() == 0
            assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
            page.screenshot(path=str(tmp_path / "dashboard.png"))
        finally:
            browser.close()


@pytest.mark.hub
@pytest.mark.clients
def test_agavepy_and_tapipy_as_two_hub_users(hub: Hub) -> None:
    """The real clients, each as its own Hub user: alice (agavepy 0.9.5) registers and shares with bob;
    bob (tapipy) sees it, runs it as bob, and is refused UPDATE on it and alice's private actor."""
    from tests.clients.conftest import client_python, run_driver

    client_python("agavepy")
    client_python("tapipy")
    alice = user(hub, "alice")
    private = alice.ok("POST", "/actors", json={"image": IMAGE, "name": "alice-private"})["id"]
    bob_private = user(hub, "bob").ok("POST", "/actors", json={"image": IMAGE, "name": "bob-private"})["id"]

    def served(name: str) -> Any:
        return SimpleNamespace(url=hub.service, token=hub.tokens[name])

    agave = run_driver("agavepy", "agave_team.py", served("alice"), IMAGE, "bob", bob_private)
    shared = agave["actor"]["id"]
    assert agave["actor"]["owner"] == "alice" and agave["actor"]["status"] == "READY", agave
    assert agave["permissions"] == {"alice": "UPDATE", "bob": "EXECUTE"}, agave
    assert bob_private not in agave["listed"] and agave["others"]["status"] == 400, agave

    tapipy = run_driver("tapipy", "tapipy_team.py", served("bob"), shared, private)
    assert shared in tapipy["listed"] and private not in tapipy["listed"], tapipy
    assert tapipy["execution"]["executor"] == "bob" and tapipy["execution"]["status"] == "COMPLETE", tapipy
    assert tapipy["delete_shared"]["status"] == 400 and tapipy["get_others"]["status"] == 400, tapipy
