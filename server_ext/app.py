"""The Jupyter server extension: ``c.AbacoApp`` traits, and the choice between embedded and proxy mode.

Embedded (the default): the Abaco service runs inside the Jupyter server process. Its routes are under
``{base_url}abaco/`` (``abaco/actors``, ``abaco/actors/v2/...``, ``abaco/v3/actors/...``); handlers run
``Api.handle`` on a thread pool, so Tornado's loop never blocks. Containers call back through the
service's unix socket, served by the standalone app (service token or execution-scoped tokens only).

Proxy (``c.AbacoApp.remote_url`` set): the same routes forward to a remote Abaco v2 or Tapis v3; no
local service, database or workers.

Either way the extension puts ``ABACO_NB_URL`` and ``ABACO_NB_TOKEN`` into ``os.environ`` so kernels
started by this server inherit them, and ``abaco_nb.connect()`` needs no arguments. The token is the
extension's own service token (not Jupyter's, which may be empty under password auth or give access
to far more than the Abaco routes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado import httpserver
from traitlets import Bool, Dict, Enum, Float, HasTraits, Int, TraitType, Unicode, default

from abaco_nb.hub_env import team_service

from . import log_hygiene
from .jupyter_handlers import JupyterAbacoHandler
from .jupyter_page import jupyter_routes
from .proxy import Proxy, RemoteConfig
from .service.api import Api
from .service.rest import Request, Response, envelope
from .service.service import Service
from .service.settings import ServiceConfig, Setting, from_values, settings
from .standalone import (
    api_socket_path,
    connection_file_path,
    remove_connection_file,
    serve_api_socket,
    write_connection_file,
)

ENV_URL = "ABACO_NB_URL"
ENV_TOKEN = "ABACO_NB_TOKEN"
ENV_REMOTE_TOKEN = "ABACO_NB_REMOTE_TOKEN"
_LOOPBACK_ALIASES = {"", "0.0.0.0", "*", "localhost", "127.0.0.1"}


class Unavailable:
    """Answers every route with 503 and the reason the service could not start, instead of vanishing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def handle(self, request: Request) -> Response:
        return Response(503, envelope(None, f"The abaco-nb service is not running: {self.reason}", "error"))


def live_peer(db_path: str) -> dict[str, Any] | None:
    """The connection file next to ``db_path`` when another live process serves that database."""
    path = connection_file_path(os.path.dirname(os.path.abspath(db_path)))
    try:
        with open(path) as f:
            info = json.load(f)
        pid = int(info["pid"])
        url = urlsplit(str(info["url"]))
        if pid == os.getpid() or os.path.abspath(str(info.get("db", db_path))) != os.path.abspath(db_path):
            return None
        os.kill(pid, 0)
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=1).close()
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no file, a dead process, or nothing listening: the database is ours
    return dict(info)


def _trait(spec: Setting) -> TraitType[Any, Any]:
    """The ``c.AbacoApp`` trait of one setting; a computed default (the database path) is empty."""
    if spec.choices:
        return Enum(list(spec.choices), default_value=spec.default, config=True, help=spec.help)
    trait = {bool: Bool, int: Int, float: Float, str: Unicode}[spec.kind]
    default = "" if spec.computed else spec.default
    return trait(default, allow_none=spec.nullable, config=True, help=spec.help)  # type: ignore[no-any-return]


# The service's settings as traits, made from the one list in service/settings.py (a base class, since
# traitlets sets traits up when a class is created).
_ServiceTraits: Any = type("_ServiceTraits", (HasTraits,), {s.name: _trait(s) for s in settings()})


class AbacoApp(ExtensionApp, _ServiceTraits):
    """Abaco actors inside Jupyter: an embedded Abaco-compatible service, or a proxy to a remote one."""

    name = "abaco"
    description = "Abaco actors and executors in Jupyter."
    load_other_extensions = True

    # -- embedded service: one trait per setting (``service.settings``), made by _ServiceTraits --------
    case = Enum(
        ["snake", "camel"],
        default_value="snake",
        config=True,
        help="Key case of results unless a request asks (?case=camel).",
    )
    token = Unicode(
        "",
        config=True,
        help="The token kernels get in ABACO_NB_TOKEN (default: a new random one per server start). "
        "Jupyter's own token and cookie are accepted as well.",
    )
    export_env = Bool(
        True, config=True, help="Put ABACO_NB_URL and ABACO_NB_TOKEN into the environment kernels inherit."
    )

    # -- proxy mode --------------------------------------------------------------------------------
    remote_url = Unicode(
        "",
        config=True,
        help="Forward every abaco/ route to this Abaco (e.g. https://api.tacc.utexas.edu) or Tapis "
        "(e.g. https://tacc.tapis.io) instead of running a local service.",
    )
    remote_token = Unicode(
        "",
        config=True,
        help=f"Token for the remote (prefer the {ENV_REMOTE_TOKEN} environment variable). Never sent to the browser.",
    )
    remote_api = Enum(
        ["v2", "v3"],
        default_value="v2",
        config=True,
        help="v2: Agave Abaco (Authorization: Bearer, /actors/v2); v3: Tapis (X-Tapis-Token, /v3/actors).",
    )
    remote_prefix = Unicode("", config=True, help="The remote's actors prefix, if not the usual one.")
    remote_headers = Dict(
        default_value={}, config=True, help="Extra headers for the remote (e.g. X-Tapis-Tenant)."
    )
    remote_timeout = Float(330.0, config=True, help="Seconds to wait for the remote's answer.")
    remote_verify = Bool(True, config=True, help="Verify the remote's TLS certificate.")

    @default("token")
    def _default_token(self) -> str:
        return secrets.token_urlsafe(32)

    # -- state -------------------------------------------------------------------------------------
    service: Service | None = None
    backend: Any = None
    _unix_server: httpserver.HTTPServer | None = None
    _connection_file: str | None = None
    _exported: dict[str, str] = {}

    @property
    def mode(self) -> str:
        return "proxy" if self.remote_url else "embedded"

    @property
    def mount(self) -> str:
        """Where the routes live: ``{base_url}abaco``."""
        assert self.serverapp is not None
        return url_path_join(self.serverapp.base_url, "abaco")

    def service_config(self) -> ServiceConfig:
        """The traits as the service's settings."""
        return from_values({s.name: getattr(self, s.name) for s in settings()})

    def initialize_settings(self) -> None:
        """Start the service (or the proxy) at load, so routes answer as soon as Jupyter does."""
        log_hygiene.add_secret(self.token)  # never in a log line (Jupyter's access log included)
        log_hygiene.install(logging.getLogger(), self.log)
        try:
            team = team_service()
            if self.remote_url:
                self.backend = self._start_proxy()
            elif team is not None:  # under JupyterHub with a team service: it is this user's Abaco
                self.log.info("abaco-nb: %s forwards to the JupyterHub team service %s", self.mount, team[0])
                self.backend = Proxy(RemoteConfig(url=team[0], token=team[1], api="v2", prefix="/actors"))
            else:
                peer = live_peer(self.service_config().db_path)
                self.backend = self._proxy_to_peer(peer) if peer else self._start_service()
        except Exception as exc:  # the server still starts; every route says why Abaco is missing
            reason = f"{type(exc).__name__}: {exc}"
            self.log.error(
                "abaco-nb: the %s did not start: %s", "proxy" if self.remote_url else "service", reason
            )
            self.backend = Unavailable(reason)
        self._export_env()

    def _proxy_to_peer(self, peer: dict[str, Any]) -> Proxy:
        """Another live service (``abaco-nb serve``, e.g. one ``connect()`` started) owns this database:
        two dispatchers on one database would run queued messages twice, so forward to it instead."""
        self.log.warning(
            "abaco-nb: %s (pid %s) already serves %s; forwarding %s to it instead of starting a second service",
            peer["url"],
            peer["pid"],
            peer.get("db"),
            self.mount,
        )
        return Proxy(
            RemoteConfig(url=str(peer["url"]), token=str(peer.get("token", "")), api="v2", prefix="/actors")
        )

    def _start_proxy(self) -> Proxy:
        token = os.environ.pop(ENV_REMOTE_TOKEN, "") or self.remote_token  # kernels need not see it
        remote = RemoteConfig(
            url=self.remote_url,
            token=token,
            api=self.remote_api,
            prefix=self.remote_prefix,
            timeout=self.remote_timeout,
            headers=dict(self.remote_headers),
            verify=self.remote_verify,
        )
        self.log.info(
            "abaco-nb: proxy mode, %s forwards to %s%s (%s)",
            self.mount,
            remote.url,
            remote.prefix,
            remote.api,
        )
        if not token:
            self.log.warning(
                "abaco-nb: no remote token (set %s); the remote will likely refuse", ENV_REMOTE_TOKEN
            )
        return Proxy(remote)

    def _start_service(self) -> Api:
        config = self.service_config()
        socket_path = api_socket_path(config)
        service = Service(config, api_socket=socket_path)
        api = Api(service, case=self.case)
        # Executions call back over a unix socket (bind-mounted into containers), served by the standalone
        # app: it accepts the service token and execution-scoped tokens, nothing from browsers.
        self._unix_server = serve_api_socket(api, self.token, socket_path)
        service.start()
        self.service = service
        self.log.info(
            "abaco-nb: embedded service at %s (runtime %s, db %s)",
            self.mount,
            service.runtime.name,
            config.db_path,
        )
        return api

    def initialize_handlers(self) -> None:
        settings = {
            "api": self.backend,
            "max_body": self.max_body_bytes,
            "service_token": self.token,
            "mount": self.mount,
            "username": self.service.config.username if self.service else ServiceConfig().username,
            "scoped": self.service.check_scoped_token if self.service else None,
        }
        # ExtensionApp prefixes base_url; Tornado anchors the pattern at both ends. The dashboard page
        # (``abaco/`` exactly) comes before the API's catch-all.
        self.handlers.extend(jupyter_routes(self.mount))
        self.handlers.append((r"abaco(/.*)?", JupyterAbacoHandler, settings))

    # -- telling kernels where we are --------------------------------------------------------------

    def kernel_url(self) -> str | None:
        """The URL a local kernel reaches the routes at, or None when Jupyter listens on a unix socket."""
        app = self.serverapp
        assert app is not None
        if app.sock:
            return None
        ip = app.ip or ""
        if ip in _LOOPBACK_ALIASES:
            host = "127.0.0.1"
        elif ip in ("::", "::1"):
            host = "[::1]"
        else:
            host = f"[{ip}]" if ":" in ip else ip
        scheme = "https" if app.certfile else "http"
        return f"{scheme}://{host}:{app.port}{self.mount}"

    def _export_env(self) -> None:
        """Set (or refresh) ABACO_NB_URL/TOKEN; also write the connection file in embedded mode."""
        url = self.kernel_url()
        if url is None:
            self.log.warning("abaco-nb: Jupyter listens on a unix socket; kernels must call connect(url=...)")
            return
        if self.export_env:
            self._exported = {ENV_URL: url, ENV_TOKEN: self.token}
            os.environ.update(self._exported)
        if self.service is not None:
            path = connection_file_path(os.path.dirname(os.path.abspath(self.service.config.db_path)))
            info = {
                "url": url,
                "token": self.token,
                "pid": os.getpid(),
                "db": self.service.config.db_path,
                "runtime": self.service.runtime.name,
                "api_socket": self.service.api_socket,
                "jupyter": True,
            }
            write_connection_file(path, info)
            self._connection_file = path

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Jupyter's hook once the loop runs. The HTTP port is final only now (``port=0``, or a busy port
        Jupyter moved away from), before any kernel can start: refresh what kernels see."""
        self._export_env()

    def current_activity(self) -> bool:
        """Jupyter's idle shutdown (``shutdown_no_activity_timeout``) must wait while work runs or waits."""
        if self.service is None:
            return False
        return self.service.busy()

    async def stop_extension(self) -> None:
        """Stop the workers cleanly (running executions end with a reason; queued ones wait for the next
        start), stop the socket, and take back what we told kernels."""
        if self._unix_server is not None:
            self._unix_server.stop()
        if self.service is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.service.close)
            self.service = None
        if isinstance(self.backend, Proxy):
            self.backend.close()
        for key, value in self._exported.items():
            if os.environ.get(key) == value:
                del os.environ[key]
        self._remove_connection_file()

    def _remove_connection_file(self) -> None:
        if self._connection_file:
            remove_connection_file(self._connection_file)


main = launch_new_instance = AbacoApp.launch_instance
