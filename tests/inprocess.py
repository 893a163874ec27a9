"""The API without a socket: a ``requests`` adapter that hands each request to ``Api.handle`` in this
process, as httpx's ``MockTransport`` does, so ``abaco_nb.Client(url, session=...)`` drives a real
Service (real store, real runtime) through the same seam the Tornado handlers use, at the cost of a
function call instead of a subprocess and a socket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from abaco_nb import Client
from server_ext.handlers import bearer_token, nonce_only, standalone_principal
from server_ext.service.api import Api
from server_ext.service.errors import Unauthorized
from server_ext.service.rest import Request, Response, envelope
from server_ext.service.service import Service
from server_ext.service.settings import ServiceConfig

BASE_URL = "http://abaco.in-process"


class ApiAdapter(BaseAdapter):
    """Answers every request of a ``requests.Session`` with ``api.handle``; authenticates the way
    ``abaco-nb serve`` does (``handlers.standalone_principal``)."""

    def __init__(self, api: Api, token: str) -> None:
        super().__init__()
        self.api = api
        self.token = token

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = urlsplit(request.url or "")
        query = parse_qs(url.query, keep_blank_values=True)
        headers = dict(request.headers)
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else bytes(body)  # type: ignore[arg-type]
        sent = bearer_token(headers, (query.get("token") or [None])[-1])
        principal = standalone_principal(self.api.service, self.token, sent, nonce_only(query, headers))
        if principal is None:
            answer = Response(401, envelope(None, Unauthorized().message, "error"))
        else:
            path = url.path[len(urlsplit(BASE_URL).path) :] or "/"
            answer = self.api.handle(
                Request(request.method or "GET", path, query, headers, body, principal, BASE_URL)
            )
        resp = requests.Response()
        resp.status_code = answer.status
        resp._content = answer.body
        resp.headers = CaseInsensitiveDict({**answer.headers, "Content-Type": answer.content_type})
        resp.url = request.url or ""
        resp.request = request
        resp.encoding = "utf-8"
        return resp

    def close(self) -> None:
        pass


@contextmanager
def in_process(
    tmp: Path, token: str = "in-process-token", **settings: Any
) -> Iterator[tuple[Client, Service]]:
    """A started Service on the process runtime and a Client whose requests reach its Api in-process."""
    service = Service(ServiceConfig(db_path=str(tmp / "abaco.db"), runtime="process", **settings))
    service.start()
    session = requests.Session()
    session.mount(BASE_URL, ApiAdapter(Api(service), token))
    try:
        yield Client(BASE_URL, token, session=session), service
    finally:
        session.close()
        service.close()
