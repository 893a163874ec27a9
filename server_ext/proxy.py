"""Proxy mode: forward every Abaco route to a remote Abaco (Agave v2) or Tapis v3 actors API.

``Proxy`` has the same ``handle(Request) -> Response`` shape as ``service.api.Api``, so the Jupyter
handler serves both modes the same way (on its thread pool, with ``requests``). What it translates:

- the prefix: our ``/actors``, ``/actors/v2`` and ``/v3/actors`` all map onto the remote's one prefix
  (``/actors/v2`` for v2, ``/v3/actors`` for v3);
- the credentials: the caller's Jupyter token or cookie never leaves the server; the remote gets the
  configured remote token as ``Authorization: Bearer`` (v2) or ``X-Tapis-Token`` (v3).

Bodies go out and come back as bytes, unchanged (pickled messages, result frames). A remote error comes
back with the remote's status and envelope; a remote that does not answer is a 502 (504 on a timeout)
with our envelope naming the remote, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .service.rest import Request, Response, envelope, normalise_path

REMOTE_PREFIXES = {"v2": "/actors/v2", "v3": "/v3/actors"}
# Request headers passed to the remote; everything else (cookies, our auth, Host, XSRF) stays here.
_FORWARDED_REQUEST = ("content-type", "accept", "accept-encoding")
# Response headers passed back; hop-by-hop and length headers are Tornado's to set.
_FORWARDED_RESPONSE = ("content-disposition", "cache-control", "etag", "last-modified")
# Query parameters that authenticate the caller to us, not to the remote.
_LOCAL_QUERY = {"token", "_xsrf"}


@dataclass
class RemoteConfig:
    """Where the remote is and how to authenticate to it."""

    url: str
    token: str = ""
    api: str = "v2"  # "v2": Authorization: Bearer; "v3": X-Tapis-Token
    prefix: str = ""  # default: by api, /actors/v2 or /v3/actors
    timeout: float = 330.0  # read timeout: longer than a synchronous message or a long-poll
    connect_timeout: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)  # e.g. X-Tapis-Tenant
    verify: bool | str = True

    def __post_init__(self) -> None:
        if self.api not in REMOTE_PREFIXES:
            raise ValueError(f"remote_api must be 'v2' or 'v3', not {self.api!r}")
        if not urlsplit(self.url).scheme.startswith("http"):
            raise ValueError(f"remote_url must be an http(s) URL, not {self.url!r}")
        prefix = "/" + (self.prefix or REMOTE_PREFIXES[self.api]).strip("/")
        base = self.url.rstrip("/")
        if base.endswith(prefix):  # accept the full actors URL too
            base = base[: -len(prefix)]
        self.url = base
        self.prefix = prefix


def remote_path(path: str, prefix: str) -> str:
    """Our route path (any of the three prefixes) as the remote's path."""
    normal = normalise_path(path)
    if normal == "/actors" or normal.startswith("/actors/"):
        return prefix + normal[len("/actors") :]
    return normal


class Proxy:
    """Forwards requests to the remote. Thread-safe: one pooled ``requests.Session``."""

    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.trust_env = False  # the remote is configured, not taken from proxy variables

    def auth_headers(self) -> dict[str, str]:
        if not self.config.token:
            return {}
        if self.config.api == "v3":
            return {"X-Tapis-Token": self.config.token}
        return {"Authorization": f"Bearer {self.config.token}"}

    def handle(self, request: Request) -> Response:
        """Forward one request; never raises."""
        url = self.config.url + remote_path(request.path, self.config.prefix)
        params = [(k, v) for k, vs in request.query.items() if k not in _LOCAL_QUERY for v in vs]
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_REQUEST}
        headers.update(self.config.headers)
        if request.principal is None or request.principal.nonce is None:
            headers.update(self.auth_headers())  # a ?x-nonce= caller gets no more than its nonce allows
        try:
            resp = self.session.request(
                request.method,
                url,
                params=params,
                data=request.body or None,
                headers=headers,
                timeout=(self.config.connect_timeout, self.config.timeout),
                allow_redirects=False,
                verify=self.config.verify,
                stream=False,
            )
        except requests.Timeout:
            return self._failure(504, f"The remote Abaco at {self.config.url} did not answer in time.")
        except requests.RequestException as exc:
            reason = type(exc).__name__
            return self._failure(502, f"Cannot reach the remote Abaco at {self.config.url}: {reason}.")
        return self._response(resp)

    def _response(self, resp: requests.Response) -> Response:
        content_type = resp.headers.get("Content-Type", "application/json")
        body = resp.content
        if resp.status_code >= 400 and not _is_envelope(body):
            # A gateway page or a bare error: wrap it so the caller still reads one clear line.
            text = body[:200].decode("utf-8", "replace").strip() or resp.reason or "no body"
            message = f"The remote Abaco answered {resp.status_code}: {text}"
            return Response(resp.status_code, envelope(None, message, "error"))
        headers = {k: v for k, v in resp.headers.items() if k.lower() in _FORWARDED_RESPONSE}
        return Response(resp.status_code, body, content_type=content_type, headers=headers)

    @staticmethod
    def _failure(status: int, message: str) -> Response:
        return Response(status, envelope(None, message, "error"))

    def close(self) -> None:
        self.session.close()


def _is_envelope(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "message" in data and "status" in data
