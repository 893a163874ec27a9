"""The HTTP types every server side shares: a request in, a response out, Abaco's envelope, routes.

``Api`` (the service), ``Proxy`` (a remote Abaco) and the Tornado handlers all speak these, so none of
them needs the others: proxy mode imports this module and not the service. A feature module
(``api_*.py``) describes its routes as data, ``ROUTES = [Route(pattern, GET=handler, ...)]``, and
``api.py`` puts the lists together; a handler is ``handler(service, call) -> Response`` where
:class:`Call` is the request with the helpers every handler needs (the parsed body, the user, the
``?case=`` re-casing, the links). Nothing here imports the service.

Paths: ``/actors``, ``/actors/v2`` and ``/v3/actors`` are the same routes; duplicate slashes are
collapsed (tapipy sends ``//messages``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from . import strict_json
from .errors import AbacoError
from .models import to_camel
from .permissions import Caller
from .tokens import Scope

VERSION = "abaco-nb-0.1.0"
JSON = "application/json"
RESULT_FRAMES = "application/x-abaco-nb-frames"  # 8-byte big-endian length, then the frame, repeated
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Tapis-Token, X-Requested-With",
}
_SLASHES = re.compile(r"/{2,}")
_PREFIXES = ("/v3/actors", "/actors/v2")
# Keys whose values are user data: never re-cased.
OPAQUE_KEYS = {"default_environment", "state", "final_state", "msg", "_links", "message", "logs"}


@dataclass
class Principal:
    """Who is asking: the user, and for an execution's own token the scope it is limited to. ``nonce``:
    a request with ``?x-nonce=`` and no token; ``Api`` redeems it and the caller becomes its owner."""

    user: str
    scope: Scope | None = None
    nonce: str | None = None
    host: bool = True  # the service token (or Jupyter's own user): may set ``local:`` and privileged
    admin: bool = True  # single-user modes: the one user is an admin (Abaco's access_control=none)

    @property
    def limited(self) -> bool:
        """A nonce or an execution token: never grows (``privilege``)."""
        return self.nonce is not None or self.scope is not None

    @property
    def host_caller(self) -> bool:
        """May register what runs on the host: ``local:`` images, ``privileged`` actors."""
        return self.host and not self.limited


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    principal: Principal | None = None
    base_url: str = ""  # scheme://host[:port][prefix] used in _links

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def normalise_path(path: str) -> str:
    """Collapse ``//`` and map the v2/v3 prefixes onto ``/actors``."""
    path = _SLASHES.sub("/", "/" + path.split("?", 1)[0]).rstrip("/") or "/"
    for prefix in _PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return "/actors" + path[len(prefix) :]
    return path


def recase(value: Any, camel: bool) -> Any:
    """Result keys in camelCase when asked; user data (environment, state, final_state) untouched."""
    if not camel:
        return value
    if isinstance(value, list):
        return [recase(v, camel) for v in value]
    if isinstance(value, dict):
        return {to_camel(k): (v if k in OPAQUE_KEYS else recase(v, camel)) for k, v in value.items()}
    return value


def envelope(result: Any, message: str, status: str = "success") -> bytes:
    """Abaco's envelope, as valid JSON whatever the result holds (``strict_json.dumps``)."""
    return strict_json.dumps(
        {"message": message, "result": result, "status": status, "version": VERSION, "metadata": {}}
    ).encode()


def error_response(exc: AbacoError) -> Response:
    return Response(exc.status, envelope(None, exc.message, "error"))


def parse_body(request: Request, *, allow_empty: bool = True) -> dict[str, Any]:
    """A JSON object or a form, as a dict (Abaco accepts both for every POST and PUT)."""
    media = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    raw = request.body
    if not raw.strip():
        if allow_empty:
            return {}
        raise AbacoError("The request body is empty; send a JSON object.")
    if media == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise AbacoError("The form body is not valid UTF-8.") from None
        return {k: v[-1] for k, v in form.items()}
    try:
        data = strict_json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AbacoError(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise AbacoError("The request body must be a JSON object.")
    return data


@dataclass
class Call:
    """One request as a route handler sees it: the path parameters (an alias already resolved to its
    actor id), who asks, and the answers every handler builds the same way."""

    request: Request
    params: dict[str, str]
    default_case: str = "snake"  # ``Api(case=...)``; ``?case=camel`` overrides it per request

    @property
    def user(self) -> str:
        assert self.request.principal is not None  # Api refuses a request without one first
        return self.request.principal.user

    @property
    def principal(self) -> Principal:
        assert self.request.principal is not None  # Api refuses a request without one first
        return self.request.principal

    @property
    def caller(self) -> Caller:
        """The permission model's view of the caller: their name and whether they are an admin."""
        return Caller(self.principal.user, admin=self.principal.admin)

    @property
    def server(self) -> str:
        """The API's base URL, as ``_links`` and ``api_server`` show it."""
        return self.request.base_url.rstrip("/")

    def camel(self) -> bool:
        case = self.request.query.get("case", [self.default_case])[-1]
        return case.lower() == "camel"

    def body(self, *, allow_empty: bool = True) -> dict[str, Any]:
        return parse_body(self.request, allow_empty=allow_empty)

    def ok(self, result: Any, message: str, *, recased: bool = True) -> Response:
        """A 200 envelope. ``recased=False`` for results that are user data all through (a
        ``{user: LEVEL}`` map, a config's value), which ``?case=camel`` must not touch."""
        return Response(200, envelope(recase(result, self.camel()) if recased else result, message))

    def links(self, actor_id: str) -> dict[str, str]:
        """The ``_links`` of the mailbox routes."""
        return {
            "self": f"{self.server}/actors/{actor_id}/messages",
            "owner": f"{self.server}/profiles/{self.user}",
        }


Handler = Callable[[Any, Call], Response]  # (Service, Call); Any keeps this module free of the service


class Route:
    """One path pattern (a regular expression over the normalised path) and its handler per method.
    The handler's ``__name__`` is the operation's name, as the scoped-token allow-list, the implicit
    search and the OpenAPI test know it."""

    def __init__(self, pattern: str, **methods: Handler) -> None:
        self.pattern = re.compile("^" + pattern + "$")
        self.methods = methods

    def __repr__(self) -> str:
        return f"Route({self.pattern.pattern!r}, {', '.join(self.methods)})"
