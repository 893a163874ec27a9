"""A real ``abaco-nb serve --runtime process`` subprocess, shared by the HTTP-level tests.

Used by tests/clients (real agavepy/tapipy), test_seed_curl, test_openapi and test_auth. One server
per test session: starting it costs about a second, and every test registers its own actors, so
they do not see each other's work. Import ``abaco_serve`` into a test module (or a conftest) to use
it; the instance is cached at module level so several importers still share one process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import serve

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable  # the project venv's interpreter: has abaco_nb, cloudpickle, requests
TOKEN = "test-token-abaco-nb"


class Served(serve.Served):
    """``tests.serve.Served`` plus the request helpers the HTTP-level tests share."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        """``method path`` against the server, with the service token unless ``auth=False``."""
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        kwargs.setdefault("timeout", 60)
        return requests.request(method, self.url + path, headers=headers, **kwargs)

    def register(self, body: dict[str, Any], prefix: str = "/actors") -> dict[str, Any]:
        """Register an actor and wait until it is READY; returns the actor (snake_case)."""
        resp = self.request("POST", prefix, json=body)
        assert resp.status_code == 200, resp.text
        actor = serve.wait_ready(self, resp.json()["result"]["id"], timeout=30)
        assert actor["status"] == "READY", actor
        return actor

    def wait_ready(self, actor_id: str, timeout: float = 30) -> dict[str, Any]:
        return serve.wait_ready(self, actor_id, timeout=timeout)

    def wait_execution(self, actor_id: str, execution_id: str, timeout: int = 60) -> dict[str, Any]:
        """The execution once terminal (our long-poll ``?wait=S``)."""
        resp = self.request("GET", f"/actors/{actor_id}/executions/{execution_id}?wait={timeout}")
        assert resp.status_code == 200, resp.text
        execution = resp.json()["result"]
        assert execution["status"] in ("COMPLETE", "ERROR"), execution
        return execution


def ok(resp: requests.Response) -> Any:
    """The ``result`` of a successful envelope (exactly ``application/json``), or a readable failure."""
    assert resp.status_code == 200, (resp.request.method, resp.request.url, resp.text)
    body = resp.json()
    assert body["status"] == "success" and resp.headers["Content-Type"] == "application/json"
    return body["result"]


def refused(resp: requests.Response, status: int = 400) -> str:
    """The message of an error envelope with ``status``."""
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    body = resp.json()
    assert body["status"] == "error" and body["result"] is None
    return str(body["message"])


def python_command(code: str) -> str:
    """A ``local:`` image that runs ``code`` with the project's interpreter (absolute path, so the
    service's PATH does not matter); ``code`` must not contain single quotes."""
    assert "'" not in code, "the command line is split like a shell would: avoid single quotes"
    return f"local:{PYTHON} -c '{code}'"


def start_serve(data_dir: Path, token: str = TOKEN, runtime: str = "process") -> Served:
    """Start ``abaco-nb serve`` (``tests.serve.start_serve``) with this module's helpers."""
    s = serve.start_serve(data_dir, runtime=runtime, token=token)
    return Served(url=s.url, token=s.token, proc=s.proc, db=s.db, log=s.log)


_shared: Served | None = None


@pytest.fixture(scope="session")
def abaco_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The session's ``abaco-nb serve --runtime process`` (started on first use)."""
    global _shared
    owner = _shared is None
    if _shared is None:
        _shared = start_serve(tmp_path_factory.mktemp("abaco-serve"))
    yield _shared
    if owner and _shared is not None:
        _shared.stop()
        _shared = None
