"""Bounded resources and bad input, against a real ``abaco-nb serve`` (issue 9).

Workers are bounded by ``max_workers``; an unauthenticated body is refused from its headers and never
buffered; half-open connections cannot freeze the service or flood its log; search runs no
backtracking regex and over-long ids are refused at once; deep JSON, ``1e999``, ``NaN`` are 400s and
every answer is valid JSON; credentials never reach the log; listening beyond loopback needs a flag.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests import serve
from tests.server_ext.serve_fixture import Served, ok, python_command, refused

QUICK = python_command('print("ok")')


def strict(text: str) -> Any:
    """JSON as a strict parser reads it: NaN and Infinity are not JSON."""

    def no(name: str) -> Any:
        raise AssertionError(f"invalid JSON constant {name} in {text[:200]}")

    return json.loads(text, parse_constant=no)


def start(data: Path, *extra: str) -> Served:
    s = serve.start_serve(data, token="bounds-test-token-abcdef", extra=list(extra))
    return Served(url=s.url, token=s.token, proc=s.proc, db=s.db, log=s.log)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start(tmp_path_factory.mktemp("bounds"), "--max-connections", "64")
    yield s
    s.stop()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_workers_are_bounded_by_max_workers(served: Served) -> None:
    actor = served.register({"image": QUICK, "max_workers": 3})
    aid = actor["id"]
    for num in (4, 969398429):
        message = refused(served.request("POST", f"/actors/{aid}/workers", json={"num": num}))
        assert message.startswith("Invalid num") and "max_workers (3)" in message
    ok(served.request("POST", f"/actors/{aid}/workers", json={"num": 3}))
    assert len(ok(served.request("GET", f"/actors/{aid}/workers"))) <= 3
    stateful = served.register({"image": QUICK, "stateless": False})
    assert "max_workers (1)" in refused(
        served.request("POST", f"/actors/{stateful['id']}/workers", json={"num": 2})
    )
    assert "max_workers" in refused(
        served.request("POST", "/actors", json={"image": QUICK, "max_workers": 10**6})
    )
    for a in (aid, stateful["id"]):
        ok(served.request("DELETE", f"/actors/{a}"))


def test_an_unauthenticated_body_is_refused_from_its_headers_and_never_buffered(served: Served) -> None:
    host, port = urlsplit(served.url).hostname, urlsplit(served.url).port
    before = rss_kib(served.proc.pid)
    size, chunk = 200 * 1024 * 1024, b"x" * (1 << 20)
    for _ in range(2):
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(
                f"POST /actors HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {size}\r\n\r\n".encode()
            )
            sent = 0
            try:
                while sent < size:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # the service answered 401 and closed: it stopped reading
                pass
            answer = sock.recv(65536).decode(errors="replace")
        assert answer.startswith("HTTP/1.1 401"), answer[:200]
        assert sent < size, "the whole body was read before the refusal"
    assert rss_kib(served.proc.pid) - before < 64 * 1024  # far below the 400 MiB sent


def test_half_open_connections_neither_freeze_the_service_nor_flood_its_log(served: Served) -> None:
    host, port = urlsplit(served.url).hostname, urlsplit(served.url).port
    lines_before = served.log.read_text().count("\n")
    socks = []
    try:
        for _ in range(1100):  # far beyond --max-connections 64: the oldest waiting ones are closed
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(b"GET /actors HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
            socks.append(s)
        for _ in range(5):
            assert served.request("GET", "/actors", timeout=30).status_code == 200
    finally:
        for s in socks:
            s.close()
    assert served.request("GET", "/actors").status_code == 200
    assert served.log.read_text().count("\n") - lines_before < 100


def test_search_never_backtracks_and_long_ids_are_refused_at_once(served: Served) -> None:
    actor = served.register({"image": QUICK, "description": "a" * 5000 + "!"})
    found = ok(served.request("GET", "/actors/search/actors", params={"description.like": "(a+)+$"}))
    assert found["_metadata"]["total_count"] >= 0  # answered: RE2 matches in linear time
    hit = ok(served.request("GET", "/actors/search/actors", params={"description.like": "^a+!$"}))
    assert actor["id"] in [a["id"] for a in hit["search"]]
    message = refused(served.request("GET", "/actors/search/actors", params={"description.like": r"(a)\1"}))
    assert "description.like" in message and "linear time" in message
    long_id = "A" * 60_000
    assert "actor_id" in refused(served.request("GET", f"/actors/{long_id}"))
    assert "actor_id" in refused(served.request("GET", f"/actors/{long_id}/executions"))
    ok(served.request("DELETE", f"/actors/{actor['id']}"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"image": "x", "max_workers": 1e999}', "out of range"),
        ('{"image": "x", "description": NaN}', "NaN"),
        ('{"image": "x", "description": Infinity}', "Infinity"),
        ('{"image": "x", "max_run_time": -Infinity}', "Infinity"),
    ],
    ids=["deep", "1e999", "NaN", "Infinity", "-Infinity"],
)
def test_bad_json_is_a_400_naming_the_problem(served: Served, body: str, expected: str) -> None:
    resp = served.request("POST", "/actors", data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and expected in strict(resp.text)["message"], resp.text[:300]


def test_state_and_messages_refuse_non_json_numbers_and_answers_stay_valid_json(served: Served) -> None:
    actor = served.register({"image": QUICK, "stateless": False})
    aid = actor["id"]
    for body in ("NaN", "[1e999]", '{"x": Infinity}', "[" * 5000 + "]" * 5000):
        for path in (f"/actors/{aid}/state", f"/actors/{aid}/messages"):
            resp = served.request("POST", path, data=body, headers={"Content-Type": "application/json"})
            assert resp.status_code == 400, (path, body[:20], resp.text[:200])
            strict(resp.text)
    ok(served.request("POST", f"/actors/{aid}/state", json={"x": 1.5}))
    strict(served.request("GET", f"/actors/{aid}/state").text)
    ok(served.request("DELETE", f"/actors/{aid}"))


def test_credentials_never_reach_the_log(served: Served) -> None:
    secret_query = "not-the-token-but-secret-1234567"
    requests.get(f"{served.url}/actors?token={secret_query}", timeout=30)
    requests.get(f"{served.url}/actors?x-nonce=LOCAL_secretnonce123456", timeout=30)
    requests.get(f"{served.url}/actors/nope?token={served.token}", timeout=30)
    requests.get(
        f"{served.url}/actors", headers={"Authorization": "Bearer wrong-bearer-secret-999"}, timeout=30
    )
    time.sleep(0.5)
    log = served.log.read_text()
    for secret in (secret_query, "LOCAL_secretnonce123456", served.token, "wrong-bearer-secret-999"):
        assert secret not in log, secret
    assert "[redacted]" in log


def test_listening_beyond_loopback_needs_a_flag_and_warns(tmp_path: Path) -> None:
    """Never actually listens beyond loopback here (the machine's rule): an address that is not this host's makes the
    accepted run (on a TEST-NET address no host has) stop right after its warning."""
    base = [
        sys.executable,
        "-m",
        "server_ext",
        "serve",
        "--runtime",
        "process",
        "--db",
        str(tmp_path / "x.db"),
    ]
    refused_run = subprocess.run([*base, "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert refused_run.returncode == 2 and "--listen-beyond-loopback" in refused_run.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything was made
    warned = subprocess.run(
        [*base, "--host", "192.0.2.1", "--listen-beyond-loopback"],  # TEST-NET: never this host's address
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "TLS" in warned.stderr and "token" in warned.stderr and "beyond loopback" in warned.stderr
    assert warned.returncode != 0
