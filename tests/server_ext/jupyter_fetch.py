"""``jp_fetch`` made blocking for the extension tests: errors come back as responses, a dict body is
sent as JSON, and a POST or PUT without a body sends an empty one (Tornado's client requires it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tornado.httpclient import HTTPResponse


def blocking_fetch(jp_fetch: Any, loop: Any) -> Callable[..., HTTPResponse]:
    def run(*parts: str, **kwargs: Any) -> HTTPResponse:
        kwargs.setdefault("raise_error", False)
        if isinstance(kwargs.get("body"), dict):
            kwargs["body"] = json.dumps(kwargs["body"])
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        elif kwargs.get("method") in ("POST", "PUT") and "body" not in kwargs:
            kwargs["body"] = b""
        return loop.run_until_complete(jp_fetch(*parts, **kwargs))

    return run
