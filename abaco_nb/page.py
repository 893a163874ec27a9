"""Links to the dashboard page (``{base_url}abaco/`` inside Jupyter, ``/`` of ``abaco-nb serve``).

Reprs link to it the way dask's reprs link its dashboard. Inside Jupyter the link is the path alone
(``/user/x/abaco/``): the browser reaches the page on the notebook's own origin, whatever host name
the kernel used. A link never carries a token, so a saved notebook holds no credential; the standalone
page asks for the token printed by ``abaco-nb serve`` (or takes it from ``?token=`` once).
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode, urlsplit


def dashboard_url(client: Any, **fragment: Any) -> str:
    """The page's URL for ``client``; ``actor=``/``execution=`` open that actor or execution."""
    base = str(getattr(client, "base_url", "") or "").rstrip("/")
    if not base:
        return ""
    parts = urlsplit(base)
    url = f"{parts.path}/" if parts.path.endswith("/abaco") else f"{base}/"
    frag = {k: v for k, v in fragment.items() if v}
    return url + (f"#{urlencode(frag)}" if frag else "")


def dashboard_link(client: Any, text: str = "dashboard", **fragment: Any) -> str:
    """An ``<a>`` to the page that opens in a new tab (HTML; empty without a URL)."""
    url = dashboard_url(client, **fragment)
    if not url:
        return ""
    return (
        f"<a class='abaco-dashboard-link' href='{html.escape(url)}' target='_blank' rel='noopener' "
        f"style='color:var(--jp-content-link-color, #1976d2)'>{html.escape(text)}</a>"
    )
