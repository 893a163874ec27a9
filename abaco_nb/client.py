"""Client: Abaco's REST API over HTTP. The only module of ``abaco_nb`` that talks HTTP.

One ``requests.Session`` per client (connection reuse matters for ``map``); every call goes through
``Client.request``, which unwraps Abaco's envelope and turns an error envelope into one readable
``AbacoAPIError`` line, never a traceback from deep inside requests. Works against our embedded service,
``abaco-nb serve``, a proxying Jupyter server, or a real Abaco (v2 ``Authorization: Bearer``; Tapis v3
``X-Tapis-Token`` with ``prefix="/v3/actors"``).
"""

from __future__ import annotations

import html
import json as jsonlib
import os
import time
from collections.abc import Iterable
from typing import Any, Literal, overload

import requests

from .errors import AbacoAPIError, AbacoConnectionError
from .records import Actor, Execution, MessageReceipt, Record, wrap


def _session_for(url: str) -> requests.Session:
    """A session that reads the environment once: what ``requests`` would otherwise look up on every
    request (proxies and ``no_proxy``, the CA bundle variables, ``~/.netrc``) costs ~1 ms a request on a
    loaded machine, and a ``map`` or ``blocking_call`` is a few requests. Same outcome for this client's
    one base URL, read when it is made; a session passed to :class:`Client` is used as given."""
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False
    return session


class Client:
    """An Abaco client.

    ``Client("http://127.0.0.1:8888/abaco", token="...")``. ``auth="tapis"`` sends ``X-Tapis-Token``
    instead of ``Authorization: Bearer``; ``prefix`` is ``/actors`` (ours and Abaco v2's local
    paths), ``/actors/v2`` or ``/v3/actors``.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        prefix: str = "/actors",
        auth: str = "bearer",
        timeout: float = 60.0,
        session: requests.Session | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = "/" + prefix.strip("/")
        self.token = token
        self.timeout = timeout
        self.session = session or _session_for(self.base_url)
        if token:
            if auth == "tapis":
                self.session.headers["X-Tapis-Token"] = token
            else:
                self.session.headers["Authorization"] = f"Bearer {token}"
        if extra_headers:
            self.session.headers.update(extra_headers)
        self.how = ""  # how connect() found this service, for the notebook to say

    def __repr__(self) -> str:
        return f"<abaco_nb.Client {self.base_url}{self.prefix}>"

    def _repr_html_(self) -> str:
        from .page import dashboard_link

        how = f" ({html.escape(self.how)})" if self.how else ""
        link = dashboard_link(self, "dashboard")
        return (
            f"<div class='abaco-client'><b>Abaco client</b> <code>{html.escape(self.base_url + self.prefix)}</code>"
            f"{how}{' · ' + link if link else ''}</div>"
        )

    # -- transport ----------------------------------------------------------------------------------

    def url(self, path: str = "") -> str:
        return f"{self.base_url}{self.prefix}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return the envelope's ``result`` (or the Response when ``raw``)."""
        url = self.url(path)
        try:
            resp = self.session.request(
                method,
                url,
                json=json,
                data=data,
                params=params,
                headers=headers,
                timeout=timeout or self.timeout,
            )
        except requests.ConnectionError as exc:
            raise AbacoConnectionError(self.base_url, type(exc).__name__) from None
        except requests.Timeout:
            raise AbacoConnectionError(self.base_url, "the request timed out") from None
        if resp.status_code >= 400:
            raise AbacoAPIError(resp.status_code, _error_message(resp), method, url)
        if raw:
            return resp
        try:
            return resp.json().get("result")
        except ValueError:
            raise AbacoAPIError(
                resp.status_code, f"expected JSON from {url}, got {resp.text[:100]!r}"
            ) from None

    # -- actors -------------------------------------------------------------------------------------

    def register(
        self,
        image: str,
        name: str | None = None,
        *,
        description: str | None = None,
        default_environment: dict[str, str] | None = None,
        stateless: bool = True,
        max_workers: int | None = None,
        **fields: Any,
    ) -> Actor:
        """Register an actor (``POST /actors``). Extra keyword fields are sent as given."""
        body: dict[str, Any] = {"image": image, "stateless": stateless, **fields}
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        if default_environment is not None:
            body["default_environment"] = default_environment
        if max_workers is not None:
            body["max_workers"] = max_workers
        return wrap(self.request("POST", "", json=body), Actor)

    def actors(self) -> list[Actor]:
        return wrap(self.request("GET", "") or [], Actor)

    def actor(self, actor_id: str) -> Actor:
        return wrap(self.request("GET", f"/{actor_id}"), Actor)

    def update(self, actor_id: str, image: str, *, force: bool = False, **fields: Any) -> Actor:
        """Full replacement (``PUT``), as in Abaco: fields you omit go back to their defaults."""
        body: dict[str, Any] = {"image": image, **fields}
        if force:
            body["force"] = True
        return wrap(self.request("PUT", f"/{actor_id}", json=body), Actor)

    def delete(self, actor_id: str) -> None:
        self.request("DELETE", f"/{actor_id}")

    def wait_until_ready(self, actor_id: str, timeout: float = 120.0) -> Actor:
        """Poll until READY; raise with the status message when it goes ERROR."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            actor = self.actor(actor_id)
            if actor.status == "READY":
                return actor
            if actor.status == "ERROR":
                raise AbacoAPIError(400, f"actor {actor_id} is in ERROR: {actor.get('status_message', '')}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"actor {actor_id} not READY after {timeout:.0f} s (status {actor.status})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # -- messages -----------------------------------------------------------------------------------

    @overload
    def send(
        self,
        actor_id: str,
        message: str | dict[str, Any] | list[Any] | bytes,
        *,
        environment: dict[str, str] | None = None,
        synchronous: Literal[False] = False,
    ) -> MessageReceipt: ...

    @overload
    def send(
        self,
        actor_id: str,
        message: str | dict[str, Any] | list[Any] | bytes,
        *,
        environment: dict[str, str] | None = None,
        synchronous: Literal[True],
    ) -> bytes | str: ...

    def send(
        self,
        actor_id: str,
        message: str | dict[str, Any] | list[Any] | bytes,
        *,
        environment: dict[str, str] | None = None,
        synchronous: bool = False,
    ) -> MessageReceipt | bytes | str:
        """Send a message: a str (``MSG``), JSON (dict/list) or bytes (binary). ``environment``
        overrides the actor's default environment for this execution (query parameters). With
        ``synchronous`` the call blocks until the execution ends and returns its first result (bytes)
        or, when it sent none, its logs (str)."""
        params = dict(environment or {})
        if synchronous:
            params["_abaco_synchronous"] = "true"
        if isinstance(message, bytes | bytearray):
            kwargs: dict[str, Any] = {
                "data": bytes(message),
                "headers": {"Content-Type": "application/octet-stream"},
            }
        elif isinstance(message, str):
            kwargs = {"data": {"message": message}}
        else:
            kwargs = {"data": jsonlib.dumps(message), "headers": {"Content-Type": "application/json"}}
        if synchronous:
            resp = self.request(
                "POST", f"/{actor_id}/messages", params=params, raw=True, timeout=None, **kwargs
            )
            ctype = resp.headers.get("Content-Type", "")
            return resp.content if ctype.startswith("application/octet-stream") else resp.text
        return wrap(self.request("POST", f"/{actor_id}/messages", params=params, **kwargs), MessageReceipt)

    def queue_length(self, actor_id: str) -> int:
        return int(self.request("GET", f"/{actor_id}/messages")["messages"])

    def purge(self, actor_id: str) -> None:
        self.request("DELETE", f"/{actor_id}/messages")

    # -- executions ---------------------------------------------------------------------------------

    def executions(self, actor_id: str) -> Record:
        """The executions summary (``executions`` list oldest first, totals)."""
        return wrap(self.request("GET", f"/{actor_id}/executions"))

    def execution(self, actor_id: str, execution_id: str, *, wait: float | None = None) -> Execution:
        """One execution; with ``wait`` the service holds the request until it ends (long-poll)."""
        params = {"wait": int(wait)} if wait else None
        timeout = (wait + 30) if wait else None
        return wrap(
            self.request("GET", f"/{actor_id}/executions/{execution_id}", params=params, timeout=timeout),
            Execution,
        )

    def wait(self, actor_id: str, execution_ids: Iterable[str], timeout: float = 30.0) -> list[Execution]:
        """Block (server side) until at least one of the executions ends; returns the ended ones."""
        body = {"ids": list(execution_ids), "timeout": int(max(0, timeout))}
        return wrap(
            self.request("POST", f"/{actor_id}/executions/wait", json=body, timeout=timeout + 30) or [],
            Execution,
        )

    def cancel(self, actor_id: str, execution_id: str) -> str:
        """Force-quit a running execution, or drop a queued one."""
        resp = self.request("DELETE", f"/{actor_id}/executions/{execution_id}", raw=True)
        return str(resp.json().get("message", ""))

    def logs(self, actor_id: str, execution_id: str) -> str:
        return str(self.request("GET", f"/{actor_id}/executions/{execution_id}/logs")["logs"])

    def result(self, actor_id: str, execution_id: str) -> bytes:
        """Pop one result (Abaco's destructive read); ``b""`` when none is left."""
        resp = self.request("GET", f"/{actor_id}/executions/{execution_id}/results", raw=True)
        return bytes(resp.content)

    # -- state and workers --------------------------------------------------------------------------

    def state(self, actor_id: str) -> Any:
        return self.request("GET", f"/{actor_id}/state")["state"]

    def set_state(self, actor_id: str, value: Any) -> Actor:
        return wrap(self.request("POST", f"/{actor_id}/state", json=value), Actor)

    def workers(self, actor_id: str) -> list[Record]:
        return wrap(self.request("GET", f"/{actor_id}/workers") or [])

    def add_workers(self, actor_id: str, num: int) -> None:
        self.request("POST", f"/{actor_id}/workers", json={"num": num})

    # -- nonces, aliases, permissions ---------------------------------------------------------------

    def create_nonce(
        self, actor_id: str, *, level: str | None = None, max_uses: int | None = None, description: str = ""
    ) -> Record:
        """A nonce for the actor (or alias): anyone holding its id can call the actor with
        ``?x-nonce=<id>`` and no token, at ``level`` (default EXECUTE), ``max_uses`` times (default
        unlimited)."""
        body: dict[str, Any] = {"description": description} if description else {}
        if level is not None:
            body["level"] = level
        if max_uses is not None:
            body["max_uses"] = max_uses
        return wrap(self.request("POST", f"/{actor_id}/nonces", json=body))

    def nonces(self, actor_id: str) -> list[Record]:
        return wrap(self.request("GET", f"/{actor_id}/nonces") or [])

    def nonce(self, actor_id: str, nonce_id: str) -> Record:
        return wrap(self.request("GET", f"/{actor_id}/nonces/{nonce_id}"))

    def delete_nonce(self, actor_id: str, nonce_id: str) -> None:
        self.request("DELETE", f"/{actor_id}/nonces/{nonce_id}")

    def create_alias(self, alias: str, actor_id: str) -> Record:
        """Name the actor ``alias``; the alias then works wherever an actor id does."""
        return wrap(self.request("POST", "/aliases", json={"alias": alias, "actor_id": actor_id}))

    def aliases(self) -> list[Record]:
        return wrap(self.request("GET", "/aliases") or [])

    def alias(self, alias: str) -> Record:
        return wrap(self.request("GET", f"/aliases/{alias}"))

    def update_alias(self, alias: str, actor_id: str) -> Record:
        """Point an existing alias at another actor."""
        return wrap(self.request("PUT", f"/aliases/{alias}", json={"actor_id": actor_id}))

    def delete_alias(self, alias: str) -> None:
        self.request("DELETE", f"/aliases/{alias}")

    def permissions(self, actor_id: str) -> dict[str, str]:
        """``{user: LEVEL}`` on the actor (given by id or alias)."""
        return dict(self.request("GET", f"/{actor_id}/permissions") or {})

    def grant(self, actor_id: str, user: str, level: str) -> dict[str, str]:
        """Give ``user`` (``ABACO_WORLD``: everyone) ``level`` (NONE, READ, EXECUTE, UPDATE) on the actor."""
        body = {"user": user, "level": level}
        return dict(self.request("POST", f"/{actor_id}/permissions", json=body) or {})

    # -- actor configs ------------------------------------------------------------------------------

    def configs(self) -> list[Record]:
        """Every actor config; a secret's ``value`` is its ciphertext (as Abaco shows it)."""
        return wrap(self.request("GET", "/configs") or [])

    def config(self, name: str) -> Record:
        return wrap(self.request("GET", f"/configs/{name}"))

    def set_config(self, name: str, value: Any, actors: str | list[str], *, secret: bool = False) -> Record:
        """Create the config ``name`` (any JSON ``value``) for ``actors`` (ids or aliases), or replace it
        when it exists. Every execution of those actors gets it in ``_actor_configs``, decrypted."""
        listed = actors if isinstance(actors, str) else ",".join(actors)
        body = {"name": name, "value": value, "is_secret": secret, "actors": listed}
        try:
            return wrap(self.request("POST", "/configs", json=body))
        except AbacoAPIError as exc:
            if exc.status != 400 or "already exists" not in exc.message:
                raise
        return wrap(self.request("PUT", f"/configs/{name}", json=body))

    def delete_config(self, name: str) -> None:
        self.request("DELETE", f"/configs/{name}")


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    text = resp.text.strip().splitlines()
    return text[0][:200] if text else resp.reason or "error"
