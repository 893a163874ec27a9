"""The standalone multi-user mode: ``abaco-nb users add|list|remove`` and ``abaco-nb serve --users``.

A real ``abaco-nb serve --users --runtime process`` with two users and an admin made by the admin
command; the shared permission scenario (users_scenario.py) runs against it, then the checks that
belong to this mode: tokens stored hashed, a removed user's token refused, the service token still an
admin, and single-user serve unchanged.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import serve
from tests.server_ext.users_scenario import IMAGE, As, run_sharing_scenario


def users_cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server_ext", "users", *args, "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_user(db: Path, name: str, *flags: str) -> str:
    done = users_cli(db, "add", name, *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().rsplit(" ", 1)[-1]


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("users")
    db = tmp / "abaco.db"
    tokens = {
        "alice": add_user(db, "alice"),
        "bob": add_user(db, "bob"),
        "root": add_user(db, "root", "--admin"),
    }
    served = serve.start_serve(tmp, runtime="process", db=db, extra=["--users"])
    try:
        yield {"served": served, "db": db, "tokens": tokens}
    finally:
        served.stop()


def people(team: dict[str, object]) -> tuple[As, As, As, As]:
    url = team["served"].url  # type: ignore[attr-defined]
    tokens: dict[str, str] = team["tokens"]  # type: ignore[assignment]
    return (
        As(url, tokens["alice"], "alice"),
        As(url, tokens["bob"], "bob"),
        As(url, tokens["root"], "root"),
        As(url, None, "anonymous"),
    )


def test_sharing_scenario(team: dict[str, object]) -> None:
    run_sharing_scenario(*people(team))


def test_tokens_are_stored_hashed_and_listed_without_them(team: dict[str, object]) -> None:
    tokens: dict[str, str] = team["tokens"]  # type: ignore[assignment]
    with sqlite3.connect(team["db"]) as db:  # type: ignore[arg-type]
        stored = dict(db.execute("SELECT name, token_hash FROM users").fetchall())
    assert stored["alice"] == hashlib.sha256(tokens["alice"].encode()).hexdigest()
    assert tokens["alice"] not in str(stored)
    listed = users_cli(team["db"], "list")  # type: ignore[arg-type]
    assert listed.returncode == 0
    assert "alice\tuser\tlocal" in listed.stdout and "root\tadmin\tlocal" in listed.stdout
    assert tokens["alice"] not in listed.stdout


def test_admin_command_refuses_bad_and_duplicate_names(team: dict[str, object]) -> None:
    db: Path = team["db"]  # type: ignore[assignment]
    assert "already exists" in users_cli(db, "add", "alice").stderr
    assert "Invalid user name" in users_cli(db, "add", "bad name").stderr
    assert "reserved" in users_cli(db, "add", "ABACO_WORLD").stderr
    assert "No user named" in users_cli(db, "remove", "nobody").stderr


def test_removed_user_is_refused_at_once(team: dict[str, object]) -> None:
    db: Path = team["db"]  # type: ignore[assignment]
    served = team["served"]
    carol = As(served.url, add_user(db, "carol"), "carol")  # type: ignore[attr-defined]
    actor = carol.ok("POST", "/actors", json={"image": IMAGE})
    assert actor["owner"] == "carol"
    assert users_cli(db, "remove", "carol").returncode == 0
    assert carol.call("GET", "/actors").status_code == 401


def test_service_token_is_an_admin_and_wrong_tokens_are_401(team: dict[str, object]) -> None:
    served = team["served"]
    operator = As(served.url, served.token, "operator")  # type: ignore[attr-defined]
    operator.ok("GET", "/actors/admin")
    assert As(served.url, "abu1_not-a-token", "x").call("GET", "/actors").status_code == 401


def test_privileged_needs_a_named_user(tmp_path: Path) -> None:
    """--privileged-users names who may register privileged (and local:) actors besides admins."""
    db = tmp_path / "abaco.db"
    alice, bob = add_user(db, "alice"), add_user(db, "bob")
    served = serve.start_serve(
        tmp_path, runtime="process", db=db, extra=["--users", "--privileged-users", "alice"]
    )
    try:
        local = {"image": "local:echo hi"}
        assert As(served.url, alice, "alice").ok("POST", "/actors", json=local)["owner"] == "alice"
        As(served.url, bob, "bob").refused("POST", "/actors", json=local)
    finally:
        served.stop()


def test_single_user_serve_ignores_user_tokens(tmp_path: Path) -> None:
    """Without --users the service is single-user as before: only its own token works."""
    db = tmp_path / "abaco.db"
    alice = add_user(db, "alice")
    served = serve.start_serve(tmp_path, runtime="process", db=db)
    try:
        assert (
            requests.get(
                served.url + "/actors", headers={"Authorization": f"token {alice}"}, timeout=30
            ).status_code
            == 401
        )
        actor = served.session.post(served.api("/actors"), json={"image": IMAGE}, timeout=30).json()["result"]
        assert served.session.get(served.api("/actors/admin"), timeout=30).status_code == 200
        assert actor["owner"]
    finally:
        served.stop()
