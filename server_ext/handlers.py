"""Tornado handlers: thin adapters from HTTP to ``service.api.Api`` (or ``proxy.Proxy``).

Tornado only, so ``abaco-nb serve`` never imports jupyter_server: the handler inside Jupyter is in
``jupyter_handlers.py``. One catch-all handler serves every Abaco route. It streams the body (so an oversized one is refused
with 413 before it is read), authenticates, then runs ``Api.handle`` on a thread pool: the service's
calls block (SQLite, Docker), and long-polls wait, so the event loop never does either.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from tornado import web

from .service.api import Api
from .service.errors import TooLarge, Unauthorized
from .service.permissions import Caller
from .service.rest import CORS_HEADERS, Principal, Request, Response, envelope
from .service.service import Service

# Sized for many concurrent long-polls plus ordinary requests.
API_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="abaco-api")


def bearer_token(headers: Mapping[str, str], query_token: str | None) -> str | None:
    """The token a client sent: ``Authorization: Bearer|token X``, ``X-Tapis-Token``, or ``?token=``."""
    auth = headers.get("Authorization", "")
    if auth:
        kind, _, value = auth.partition(" ")
        if kind.lower() in ("bearer", "token") and value.strip():
            return value.strip()
    tapis = headers.get("X-Tapis-Token")
    if tapis:
        return tapis.strip()
    return query_token or None


def nonce_only(query: Mapping[str, Sequence[str | bytes]], headers: Any) -> str | None:
    """The ``?x-nonce=`` of a request that carries no other credentials (Abaco reads the nonce only when
    no token is present): the one unauthenticated path besides CORS preflight. ``Api`` checks it."""
    nonce = query.get("x-nonce")
    if not nonce or "token" in query:
        return None
    if headers.get("Authorization") or headers.get("X-Tapis-Token"):
        return None
    value = nonce[-1]
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else value) or None


def standalone_principal(
    service: Service, token: str, sent: str | None, nonce: str | None
) -> Principal | None:
    """Who a request to ``abaco-nb serve`` (or its unix socket) is: the service token's holder, an
    execution with its scoped token, a ``?x-nonce=`` alone (``Api`` checks it), or nobody (401). The
    in-process test adapter (tests/inprocess.py) asks this same function."""
    username = service.config.username
    if not sent:
        return Principal(username, nonce=nonce) if nonce else None
    if hmac.compare_digest(sent.encode(), token.encode()):
        return Principal(username)
    scope = service.check_scoped_token(sent)
    if scope is not None:
        return Principal(username, scope)
    user = service.users.for_token(sent)  # multi-user mode: a user's own token (abaco-nb users add)
    return user_principal(service, user.name, user.admin) if user is not None else None


def user_principal(service: Service, name: str, admin: bool) -> Principal:
    """A multi-user caller: admin as the users store (or the Hub) says; ``host`` (``local:`` images and
    privileged actors) for admins and the users the deployment names (``--privileged-users``)."""
    caller = Caller(name, admin=admin)
    return Principal(name, admin=admin, host=service.users.may_register_privileged(caller))


class Backend(Protocol):
    """What answers a request: the embedded ``Api``, or ``proxy.Proxy`` forwarding to a remote Abaco."""

    def handle(self, request: Request) -> Response: ...


@web.stream_request_body
class AbacoBaseHandler(web.RequestHandler):
    """Shared plumbing; subclasses decide who the caller is (``principal``) and where links point."""

    api: Backend
    max_body: int

    def initialize(self, api: Backend, max_body: int) -> None:
        self.api = api
        self.max_body = max_body
        self._chunks: list[bytes] = []
        self._size = 0
        self._refused = False

    def set_default_headers(self) -> None:
        for key, value in CORS_HEADERS.items():
            self.set_header(key, value)

    def prepare(self) -> None:
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_body:
            self._refused = True
            self._send(self._too_large())

    def data_received(self, chunk: bytes) -> None:
        if self._refused:
            return
        self._size += len(chunk)
        if self._size > self.max_body:
            self._refused = True
            self._send(self._too_large())
            return
        self._chunks.append(chunk)

    def _too_large(self) -> Response:
        """413 before the body is read: the rest of it may still be arriving on this connection, so
        the client is told not to send its next request on it (``Connection: close``)."""
        body = envelope(None, TooLarge(self.max_body).message, "error")
        return Response(413, body, headers={"Connection": "close"})

    def principal(self) -> Principal | None:
        raise NotImplementedError

    async def find_principal(self) -> Principal | None:
        """Who is asking. Subclasses that must ask someone else (JupyterHub) override this one."""
        return self.principal()

    def link_base(self) -> str:
        return f"{self.request.protocol}://{self.request.host}"

    def route_path(self) -> str:
        return self.request.path

    async def _serve(self) -> None:
        if self._refused:
            return
        if self.request.method == "OPTIONS":
            self._send(Response(200, envelope(None, "ok")))
            return
        principal = await self.find_principal()
        if principal is None:
            self._send(Response(401, envelope(None, Unauthorized().message, "error")))
            return
        request = Request(
            method=self.request.method or "GET",
            path=self.route_path(),
            query={
                k: [v.decode("utf-8", "replace") for v in vs]
                for k, vs in self.request.query_arguments.items()
            },
            headers=dict(self.request.headers),
            body=b"".join(self._chunks),
            principal=principal,
            base_url=self.link_base(),
        )
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(API_POOL, self.api.handle, request)
        self._send(response)

    def _send(self, response: Response) -> None:
        if self._finished:
            return
        self.set_status(response.status)
        for key, value in response.headers.items():
            self.set_header(key, value)
        self.set_header("Content-Type", response.content_type)
        self.finish(response.body)

    async def get(self, *args: Any) -> None:
        await self._serve()

    async def post(self, *args: Any) -> None:
        await self._serve()

    async def put(self, *args: Any) -> None:
        await self._serve()

    async def delete(self, *args: Any) -> None:
        await self._serve()

    async def patch(self, *args: Any) -> None:
        await self._serve()

    async def options(self, *args: Any) -> None:
        await self._serve()


class StandaloneHandler(AbacoBaseHandler):
    """``abaco-nb serve``: the service token, an execution's scoped token, or in multi-user mode a
    user's own token (``abaco-nb users add``)."""

    api: Api
    token: str

    def initialize(self, api: Api, max_body: int, token: str = "") -> None:  # type: ignore[override]
        super().initialize(api, max_body)
        self.token = token

    def check_xsrf_cookie(self) -> None:  # API clients send tokens, not cookies
        return None

    def prepare(self) -> None:
        """Authenticate from the headers and query, before any of the body is read: a refused request's
        body is never buffered (four unauthenticated 200 MiB uploads once took 900 MB)."""
        super().prepare()
        if self._refused or self.request.method == "OPTIONS":
            return
        sent = bearer_token(self.request.headers, self.get_query_argument("token", None))
        self._principal = standalone_principal(
            self.api.service, self.token, sent, nonce_only(self.request.query_arguments, self.request.headers)
        )
        if self._principal is None:
            self._refused = True
            self._send(Response(401, envelope(None, Unauthorized().message, "error")))

    def principal(self) -> Principal | None:
        return getattr(self, "_principal", None)
