"""The dashboard page: ``{base_url}abaco/`` in Jupyter, ``/`` of ``abaco-nb serve``.

Plain HTML, CSS and JavaScript from ``server_ext/dashboard/``, inlined into one response by Python: no
npm build, nothing to fetch but the API. The page reads the same Abaco routes as every client (actors,
executions, logs, workers), so it needs no API of its own, and is authenticated like them:

* in Jupyter, by Jupyter itself (``@web.authenticated``: the login cookie, else a redirect to the
  login page; the authorizer must allow reading ``abaco``); its ``fetch`` calls send that cookie and,
  for writes, the ``X-XSRFToken`` header from Jupyter's ``_xsrf`` cookie;
* behind JupyterHub (``server_ext.hub``), by the Hub's OAuth sign-in: the page sends the cookie and
  the XSRF token rendered into it on every call;
* standalone, by the service token: ``/?token=T`` (the URL ``abaco-nb serve`` prints); the script keeps
  the token in ``sessionStorage``, sends it as ``Authorization: Bearer`` and removes it from the
  address bar. Without a valid token the answer is 401 with a form asking for it.

The page is only served where people are (TCP); the unix socket that executions call back through
keeps the API alone. This module needs Tornado only; the Jupyter handler is in ``jupyter_page.py``.
"""

from __future__ import annotations

import hmac
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from tornado import web

PAGE_DIR = Path(__file__).parent / "dashboard"
SECURITY_HEADERS = {
    # The page's own inline script and style only; data from its own origin (the API).
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=1)
def _parts() -> tuple[str, str, str]:
    return tuple((PAGE_DIR / name).read_text() for name in ("index.html", "dashboard.css", "dashboard.js"))  # type: ignore[return-value]


def render(api_base: str, auth: str, xsrf: str = "") -> str:
    """The page with its style, script and settings inlined. ``api_base``: the URL path the Abaco routes
    live under (``/abaco`` in Jupyter, ``""`` standalone, the service's prefix behind JupyterHub);
    ``auth``: ``jupyter``, ``token`` or ``hub`` (the Hub's OAuth cookie, with ``xsrf``: the token every
    cookie-authenticated ``fetch`` must carry as ``X-XSRFToken``, jupyterhub's rule)."""
    page, style, script = _parts()
    shown = {"api": api_base.rstrip("/"), "auth": auth, **({"xsrf": xsrf} if xsrf else {})}
    settings = json.dumps(shown).replace("</", "<\\/")
    return (
        page.replace("/*STYLE*/", style)
        .replace("/*SETTINGS*/", f"window.ABACO_PAGE = {settings};")
        .replace("/*SCRIPT*/", script)
    )


LOGIN = """<!doctype html><html><head><meta charset="utf-8"><title>abaco-nb: token needed</title></head>
<body style="font-family:sans-serif;margin:3em">
<h2>abaco-nb dashboard</h2>
<p>Open the URL that <code>abaco-nb serve</code> printed (<code>http://127.0.0.1:PORT/?token=...</code>),
or paste the service token (also in its connection file):</p>
<form method="get" action="/"><input name="token" type="password" size="50" autofocus>
<button type="submit">Open</button></form>
<script>
const t = sessionStorage.getItem("abaco-nb-token");
if (t && !location.search.includes("token=")) location.replace("/?token=" + encodeURIComponent(t));
</script></body></html>"""


class StandalonePage(web.RequestHandler):
    """``GET /`` of ``abaco-nb serve``: the page for a holder of the service token."""

    def initialize(self, token: str) -> None:
        self.token = token

    def set_default_headers(self) -> None:
        for key, value in SECURITY_HEADERS.items():
            self.set_header(key, value)

    def get(self) -> None:
        sent = self.get_query_argument("token", "") or _bearer(self.request.headers.get("Authorization", ""))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        if not sent or not hmac.compare_digest(sent.encode(), self.token.encode()):
            self.set_status(401)
            self.finish(LOGIN)
            return
        self.finish(render("", "token"))


def _bearer(header: str) -> str:
    kind, _, value = header.partition(" ")
    return value.strip() if kind.lower() in ("bearer", "token") else ""


def standalone_routes(token: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """The page's route for ``abaco-nb serve`` (before the API's catch-all)."""
    return [(r"/", StandalonePage, {"token": token})]
