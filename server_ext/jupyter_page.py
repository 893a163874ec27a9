"""The dashboard page inside Jupyter, at ``{base_url}abaco/`` (see ``dashboard_page``).

Jupyter authenticates it: ``@web.authenticated`` sends a visitor without the login cookie to the login
page, and the authorizer must allow reading ``abaco`` (the resource the API handler checks too).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from .dashboard_page import SECURITY_HEADERS, render


class JupyterPage(JupyterHandler):
    """``GET {base_url}abaco/`` in Jupyter: for a logged-in user the authorizer lets read ``abaco``."""

    auth_resource = "abaco"

    def initialize(self, mount: str) -> None:
        self.mount = mount.rstrip("/")

    @web.authenticated
    def get(self) -> None:
        if not self.authorizer.is_authorized(self, self.current_user, "read", self.auth_resource):
            raise web.HTTPError(403, "Jupyter's authorizer does not allow read access to abaco.")
        for key, value in SECURITY_HEADERS.items():
            self.set_header(key, value)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render(self.mount, "jupyter"))


def jupyter_routes(mount: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """The page's route in Jupyter, relative to ``base_url`` (before the API's catch-all)."""
    return [(r"abaco/", JupyterPage, {"mount": mount})]
