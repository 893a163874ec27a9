"""``abaco-nb serve``: the service on its own Tornado app, without Jupyter.

Listens on loopback TCP for people and clients, and on a unix socket that executions reach the
service through (bind-mounted into containers), so nothing listens beyond loopback. Writes a 0600
connection file that ``abaco_nb.connect()`` reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
from dataclasses import dataclass
from typing import Any

from tornado import httpserver, netutil, web

from . import log_hygiene
from .bounded_server import BoundedHTTPServer
from .dashboard_page import standalone_routes
from .handlers import StandaloneHandler
from .service.api import Api
from .service.service import Service
from .service.settings import ServiceConfig, default_data_dir

CONNECTION_FILE = "connection.json"


def connection_file_path(data_dir: str | None = None) -> str:
    return os.path.join(data_dir or default_data_dir(), CONNECTION_FILE)


def write_connection_file(path: str, info: dict[str, object]) -> None:
    """Write atomically with mode 0600: it holds the token."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def remove_connection_file(path: str) -> None:
    """Remove the connection file if this process wrote it (a newer server may have replaced it)."""
    try:
        with open(path) as f:
            if json.load(f).get("pid") == os.getpid():
                os.unlink(path)
    except (OSError, ValueError):
        pass


def make_app(api: Api, token: str, hub: bool = False, page: bool = False) -> web.Application:
    """The routes: every path is the API; with ``page``, the dashboard page at ``/`` too (on TCP, where
    people are; not on the executions' unix socket). ``hub``: under the JupyterHub service's prefix,
    with the Hub's OAuth callback and the page behind the Hub's sign-in (``server_ext.hub``; jupyterhub
    is imported only then)."""
    if hub:
        from .hub import hub_routes

        routes, extra = hub_routes(api, token, api.service.config.max_body_bytes)
        return web.Application(routes, **extra)
    settings = {"api": api, "max_body": api.service.config.max_body_bytes, "token": token}
    page_routes: list[Any] = standalone_routes(token) if page else []
    return web.Application([*page_routes, (r"/.*", StandaloneHandler, settings)])


@dataclass
class Running:
    service: Service
    url: str
    token: str
    api_socket: str
    servers: list[httpserver.HTTPServer]


def http_server(app: web.Application, config: ServiceConfig) -> httpserver.HTTPServer:
    """A server whose buffers fit the largest body the service accepts (the handler refuses larger),
    with header and body timeouts and a cap on open connections (``bounded_server``)."""
    max_buffer = config.max_body_bytes + 1024 * 1024
    return BoundedHTTPServer(
        app, max_body_size=max_buffer * 4, max_buffer_size=max_buffer, max_connections=config.max_connections
    )


def api_socket_path(config: ServiceConfig) -> str:
    """Where the unix socket that executions call back through lives (bind-mounted into containers)."""
    return short_socket_path(config.resolved_run_dir(), "api.sock")


def serve_api_socket(api: Api, token: str, path: str) -> httpserver.HTTPServer:
    """Serve the standalone app on the unix socket at ``path``: the service token and execution-scoped
    tokens only, nothing from browsers. ``abaco-nb serve`` and the Jupyter extension both start it."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    unix = http_server(make_app(api, token), api.service.config)
    unix.add_socket(netutil.bind_unix_socket(path, mode=0o666))
    return unix


def short_socket_path(run_dir: str, name: str) -> str:
    """AF_UNIX paths must stay under 108 bytes: fall back to a private temp dir when needed."""
    path = os.path.join(run_dir, name)
    if len(path) < 100:
        return path
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="abnb-"), name)


def start_server(
    config: ServiceConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    hub: bool = False,
) -> Running:
    """Start the service and its listeners on the current event loop (call from inside it). ``hub``:
    as a JupyterHub service, at the address and prefix the Hub's environment gives (the unix socket
    that executions call back through stays as it is)."""
    token = token or secrets.token_urlsafe(32)
    if hub:
        from .hub import hub_environment, listen_address

        host, port = listen_address(hub_environment(), host, port)
    sockets = netutil.bind_sockets(port, address=host, family=socket.AF_INET)  # first: a bad address
    api_socket = api_socket_path(config)  # or a taken port leaves nothing behind
    service = Service(config, api_socket=api_socket)
    api = Api(service)
    tcp = http_server(make_app(api, token, hub=hub, page=not hub), config)
    tcp.add_sockets(sockets)
    actual_port = sockets[0].getsockname()[1]
    unix = serve_api_socket(api, token, api_socket)
    service.start()
    url = f"http://{host}:{actual_port}"
    return Running(service, url, token, api_socket, [tcp, unix])


def serve(
    config: ServiceConfig,
    host: str,
    port: int,
    token: str | None,
    connection_file: str | None,
    hub: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM; print the URL and token; keep the connection file while running."""

    generated = not token
    log_hygiene.install()  # no credential in any log line; no flood of them either

    async def main() -> None:
        running = start_server(config, host, port, token, hub=hub)
        log_hygiene.add_secret(running.token)
        info = {
            "url": running.url,
            "token": running.token,
            "pid": os.getpid(),
            "db": config.db_path,
            "runtime": running.service.runtime.name,
            "api_socket": running.api_socket,
        }
        path = connection_file or connection_file_path(os.path.dirname(os.path.abspath(config.db_path)))
        write_connection_file(path, info)
        print(f"abaco-nb serving {running.url} (runtime: {running.service.runtime.name})", flush=True)
        shown = running.token if generated else "<the token you gave>"  # a given one stays out of logs
        print(f"token: {running.token if generated else '(as given)'}", flush=True)
        print(f"dashboard: {running.url}/?token={shown}", flush=True)
        print(f"connection file: {path}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for server in running.servers:
            server.stop()
        await loop.run_in_executor(None, running.service.close)
        remove_connection_file(path)

    asyncio.run(main())
