"""``abaco-nb serve --hub``: the team's actor service as a JupyterHub service.

JupyterHub starts the service (``c.JupyterHub.services``, docs/jupyterhub.md) with ``JUPYTERHUB_*``
in its environment: its own API token, the Hub's API URL, its URL and prefix behind the Hub's proxy,
its OAuth client. Every request is then a Hub user's:

- a kernel sends its server's ``JUPYTERHUB_API_TOKEN`` (``abaco_nb.connect()`` does it);
- a browser signs in through the Hub's OAuth (``HubOAuth``: a redirect to the Hub, the callback at
  ``{prefix}oauth_callback``, then a cookie).

jupyterhub's own ``HubOAuth`` checks both with the Hub and caches the answer (``cache_max_age``); the
request must carry the ``access:services!service=<name>`` scope. Whether the user is a Hub admin (an
Abaco admin here) is asked of the Hub with the service's own token (it needs ``read:users``), and
cached the same way. The service token, execution tokens and ``?x-nonce=`` work as in every mode.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import quote, urlparse

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .dashboard_page import SECURITY_HEADERS, render
from .handlers import (
    AbacoBaseHandler,
    StandaloneHandler,
    bearer_token,
    nonce_only,
    standalone_principal,
    user_principal,
)
from .service.errors import Unauthorized
from .service.rest import Principal, Response, envelope

CACHE_SECONDS = 60  # how long the Hub's answer about a token, or a user's admin flag, is trusted


def hub_environment() -> dict[str, str]:
    """The Hub's environment for a managed service; a clear error when it is not there."""
    needed = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_PREFIX")
    missing = [name for name in needed if not os.environ.get(name)]
    if missing:
        raise SystemExit(
            f"abaco-nb serve --hub: {', '.join(missing)} not set; JupyterHub sets these when it starts "
            "the service from c.JupyterHub.services (docs/jupyterhub.md)."
        )
    return {k: v for k, v in os.environ.items() if k.startswith("JUPYTERHUB_")}


def listen_address(env: dict[str, str], host: str, port: int) -> tuple[str, int]:
    """Where to listen: the service's URL as the Hub knows it (``JUPYTERHUB_SERVICE_URL``), unless
    ``--port`` says otherwise."""
    url = env.get("JUPYTERHUB_SERVICE_URL")
    if port or not url:
        return host, port
    parsed = urlparse(url)
    return parsed.hostname or host, parsed.port or 80


class HubAdmins:
    """Hub admins are Abaco admins: asked of the Hub with the service's token, cached."""

    def __init__(self, hub_auth: HubOAuth) -> None:
        self.hub_auth = hub_auth
        self._cache: dict[str, tuple[float, bool]] = {}

    async def is_admin(self, name: str, model: dict[str, Any]) -> bool:
        if "admin" in model:  # the token could read its own model in full
            return bool(model["admin"])
        hit = self._cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        url = f"{self.hub_auth.api_url.rstrip('/')}/users/{quote(name, safe='')}"
        headers = {"Authorization": f"token {self.hub_auth.api_token}"}
        try:
            response = await AsyncHTTPClient().fetch(url, headers=headers, request_timeout=10)
            admin = bool(json.loads(response.body).get("admin", False))
        except HTTPClientError:  # no read:users for the service: nobody is an admin (and say so once)
            admin = False
        self._cache[name] = (time.monotonic(), admin)
        return admin


class HubAbacoHandler(HubOAuthenticated, StandaloneHandler):
    """The Abaco API as a Hub service: Hub users (token or OAuth cookie), plus the standalone
    credentials (service token, execution tokens, nonces). Routes live under the service's prefix."""

    hub_admins: HubAdmins
    prefix: str

    def initialize(  # type: ignore[override]
        self, api: Any, max_body: int, token: str, hub_auth: HubOAuth, hub_admins: HubAdmins, prefix: str
    ) -> None:
        StandaloneHandler.initialize(self, api, max_body, token)
        self.hub_auth = hub_auth
        self.hub_admins = hub_admins
        self.prefix = prefix.rstrip("/")

    def get_login_url(self) -> str:  # an API answers 401, never a redirect (HubOAuthenticated's way)
        raise web.HTTPError(401)

    async def prepare(self) -> None:  # type: ignore[override]
        """Authenticate before any of the body is read (as ``StandaloneHandler``), asking the Hub."""
        AbacoBaseHandler.prepare(self)  # the 413 check
        if self._refused or self.request.method == "OPTIONS":
            return
        self._principal = await self._hub_principal()
        if self._principal is None:
            self._refused = True
            self._send(Response(401, envelope(None, Unauthorized().message, "error")))

    async def _hub_principal(self) -> Principal | None:
        sent = bearer_token(self.request.headers, self.get_query_argument("token", None))
        nonce = nonce_only(self.request.query_arguments, self.request.headers)
        own = standalone_principal(
            self.api.service, self.token, sent, nonce
        )  # service/execution token, nonce
        if own is not None:
            return own
        if sent:  # any spelling (Bearer, token, X-Tapis-Token, ?token=), checked with the Hub
            model = await self.hub_auth.user_for_token(sent, sync=False)
        else:  # a browser: the cookie the OAuth sign-in set (HubOAuth checks XSRF for writes)
            model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            return None
        try:
            model = self.check_hub_user(model)  # needs access:services!service=<this service>
        except UserNotAllowed:
            return None
        name = str(model["name"])
        admin = await self.hub_admins.is_admin(name, model)
        self.api.service.users.seen(name, admin)
        return user_principal(self.api.service, name, admin)

    def link_base(self) -> str:
        return f"{self.request.protocol}://{self.request.host}{self.prefix}"

    def route_path(self) -> str:
        path = self.request.path
        return path[len(self.prefix) :] if path.startswith(self.prefix) else path


class WhoAmIHandler(HubOAuthenticated, web.RequestHandler):
    """``{prefix}_abaco_nb/whoami``: a browser page behind the Hub's OAuth sign-in (an unknown visitor
    is sent to the Hub's login and back). It says who the service takes you for, and the XSRF token a
    page's scripts send (``X-XSRFToken``) with the sign-in cookie on the API's routes."""

    def initialize(self, hub_auth: HubOAuth, hub_admins: HubAdmins) -> None:
        self.hub_auth = hub_auth
        self.hub_admins = hub_admins

    @web.authenticated
    async def get(self) -> None:
        model = self.current_user
        admin = await self.hub_admins.is_admin(model["name"], model)
        self.set_header("Content-Type", "application/json")
        # xsrf: what a page's scripts send as X-XSRFToken; jupyterhub checks it on cookie-authenticated
        # fetches (its _xsrf cookie is set for the service's prefix by this same call)
        shown = {
            "name": model["name"],
            "admin": admin,
            "kind": model.get("kind", "user"),
            "xsrf": self.xsrf_token.decode(),
        }
        self.finish(json.dumps(shown))


class HubPage(HubOAuthenticated, web.RequestHandler):
    """``{prefix}``: the dashboard page (``dashboard_page``) for a user signed in through the Hub's
    OAuth; an unknown visitor is sent to the Hub's login and back. It shows what that user may see."""

    def initialize(self, hub_auth: HubOAuth, prefix: str) -> None:
        self.hub_auth = hub_auth
        self.prefix = prefix.rstrip("/")

    def set_default_headers(self) -> None:
        for key, value in SECURITY_HEADERS.items():
            self.set_header(key, value)

    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render(self.prefix, "hub", xsrf=self.xsrf_token.decode()))


def hub_routes(api: Any, token: str, max_body: int) -> tuple[list[Any], dict[str, Any]]:
    """The Tornado routes and settings of the service under the Hub's prefix."""
    env = hub_environment()
    prefix = env["JUPYTERHUB_SERVICE_PREFIX"]
    if not prefix.endswith("/"):
        prefix += "/"
    # the singleton: the OAuth callback handler finds it with HubOAuth.instance()
    hub_auth = HubOAuth.instance(cache_max_age=CACHE_SECONDS, api_token=env["JUPYTERHUB_API_TOKEN"])
    admins = HubAdmins(hub_auth)
    api_settings = {
        "api": api,
        "max_body": max_body,
        "token": token,
        "hub_auth": hub_auth,
        "hub_admins": admins,
        "prefix": prefix,
    }
    routes = [
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (prefix.rstrip("/") + "/?", HubPage, {"hub_auth": hub_auth, "prefix": prefix}),
        (prefix + "_abaco_nb/whoami", WhoAmIHandler, {"hub_auth": hub_auth, "hub_admins": admins}),
        (r".*", HubAbacoHandler, api_settings),
    ]
    settings = {"cookie_secret": os.urandom(32), "hub_auth": hub_auth}
    return routes, settings
