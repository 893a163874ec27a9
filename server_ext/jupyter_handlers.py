"""The handler inside Jupyter (embedded or proxying): Jupyter's own authentication in front of the
Abaco plumbing of ``handlers.AbacoBaseHandler``. Only the extension imports this module (it pulls in
jupyter_server); ``abaco-nb serve`` uses ``handlers.StandaloneHandler``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from .handlers import AbacoBaseHandler, Backend, bearer_token, nonce_only
from .service.errors import Unauthorized
from .service.rest import CORS_HEADERS, Principal, Response, envelope
from .service.tokens import Scope


class JupyterAbacoHandler(JupyterHandler, AbacoBaseHandler):
    """Inside Jupyter, embedded or proxying: Jupyter's own auth, or the extension's service token.

    Who may call: a Jupyter user (token, or cookie plus XSRF for browser writes, and the authorizer's
    consent for ``abaco``); a holder of the service token the extension hands to kernels in
    ``ABACO_NB_TOKEN`` (works when Jupyter uses a password or no token at all); or an execution's scoped
    token. Jupyter's class comes first in the MRO so its security decisions (XSRF, CORS, host check,
    default headers) win; the Abaco plumbing (streamed body, thread pool, envelope) comes from the base.
    """

    auth_resource = "abaco"

    def initialize(  # type: ignore[override]
        self,
        api: Backend,
        max_body: int,
        service_token: str,
        mount: str,
        username: str,
        scoped: Callable[[str], Scope | None] | None = None,
    ) -> None:
        AbacoBaseHandler.initialize(self, api, max_body)
        self.service_token = service_token
        self.mount = mount.rstrip("/")  # e.g. "/user/x/abaco"
        self.username = username
        self.scoped = scoped
        self._principal: Principal | None = None

    def _token_principal(self) -> Principal | None:
        """The service token or an execution's token, sent as a header (never read from cookies)."""
        sent = bearer_token(self.request.headers, None)
        if not sent:
            return None
        if self.service_token and hmac.compare_digest(sent.encode(), self.service_token.encode()):
            return Principal(self.username)
        scope = self.scoped(sent) if self.scoped is not None else None
        return Principal(self.username, scope) if scope is not None else None

    async def prepare(self) -> None:  # type: ignore[override]
        if self.request.method == "OPTIONS":  # CORS preflight: no credentials, no data
            self.current_user = self._jupyter_current_user = None
            self.set_cors_headers()
            self.set_header("Access-Control-Allow-Headers", CORS_HEADERS["Access-Control-Allow-Headers"])
            self.set_header("Access-Control-Allow-Methods", CORS_HEADERS["Access-Control-Allow-Methods"])
            return
        own = self._token_principal()
        nonce = nonce_only(self.request.query_arguments, self.request.headers) if own is None else None
        if nonce is not None:  # ?x-nonce= and nothing else: the API (or the remote) checks the nonce
            own = Principal(self.username, nonce=nonce)
        if own is not None:  # a header token or a nonce: no cookie involved, so no XSRF to check
            self.current_user = self._jupyter_current_user = None
            self._principal = own
            AbacoBaseHandler.prepare(self)
            return
        try:
            await super().prepare(_redirect_to_login=False)  # Jupyter auth, XSRF, then the 413 check
        except web.HTTPError as exc:
            user = getattr(self, "_jupyter_current_user", None)
            if user is None:
                self._send(Response(401, envelope(None, Unauthorized().message, "error")))
            else:
                reason = exc.log_message or "Forbidden"
                self._send(Response(exc.status_code, envelope(None, reason, "error")))
            return
        if self.current_user is None:  # Jupyter leaves this check to handlers (allow_unauthenticated_access)
            self._send(Response(401, envelope(None, Unauthorized().message, "error")))
            return
        action = "read" if self.request.method in ("GET", "HEAD") else "write"
        if not self.authorizer.is_authorized(self, self.current_user, action, self.auth_resource):
            message = f"Jupyter's authorizer does not allow {action} access to {self.auth_resource}."
            self._send(Response(403, envelope(None, message, "error")))
            return
        self._principal = Principal(self.username)

    def principal(self) -> Principal | None:
        return self._principal

    def link_base(self) -> str:
        return f"{self.request.protocol}://{self.request.host}{self.mount}"

    def route_path(self) -> str:
        return self.request.path[len(self.mount) :] or "/"

    def _send(self, response: Response) -> None:
        # Jupyter decides CORS (c.ServerApp.allow_origin); drop the API's open "*".
        response.headers = {k: v for k, v in response.headers.items() if k not in CORS_HEADERS}
        AbacoBaseHandler._send(self, response)
