"""Finding the Abaco service: ``connect()`` returns a ``Client`` and says how it found the service.

The order (DESIGN §2):

1. an explicit ``url`` (and ``token``);
   under JupyterHub, the team service the spawner's environment names (``hub_env``), as this user;
2. ``ABACO_NB_URL`` / ``ABACO_NB_TOKEN``, which the Jupyter server extension puts into the environment
   that kernels inherit: the normal case in a notebook;
3. the connection file (``connection.json`` under the data dir, written by ``abaco-nb serve`` and by
   the extension in embedded mode), when the process that wrote it is alive and answers;
4. a running Jupyter server with the extension: the ``jpserver-*.json`` files that
   ``jupyter_server.serverapp.list_running_servers()`` reads, probed at ``{url}abaco/actors`` with
   that server's token (read directly: importing ``jupyter_server.serverapp`` costs seconds);
5. otherwise it starts ``abaco-nb serve`` itself, on a free loopback port with the shared database
   under the data dir. That server is *shared*: it writes the connection file, so later kernels and
   scripts find it at step 3, and it keeps running when this interpreter exits (queued work finishes,
   results stay readable) unless ``stop_at_exit=True``. A lock file keeps two kernels that connect at
   the same moment from starting two services on one database.

``Client.how`` records the choice and it is logged (``abaco_nb.connection`` logger); starting a server is
also printed to stderr, since it leaves a process behind.
"""

from __future__ import annotations

import atexit
import fcntl
import glob
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .client import Client
from .errors import AbacoAPIError, AbacoConnectionError
from .hub_env import team_service

ENV_URL = "ABACO_NB_URL"
ENV_TOKEN = "ABACO_NB_TOKEN"
CONNECTION_FILE = "connection.json"
PROBE_TIMEOUT = 3.0

log = logging.getLogger("abaco_nb.connection")


def data_dir() -> str:
    """The service's data dir; the same rule as ``server_ext.service.settings.default_data_dir`` (a test
    holds them together: ``abaco_nb`` does not import ``server_ext``)."""
    base = os.environ.get("JUPYTER_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "jupyter"
    )
    return os.path.join(base, "abaco-nb")


def connection_file_path() -> str:
    return os.path.join(data_dir(), CONNECTION_FILE)


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    start: bool = True,
    runtime: str = "auto",
    stop_at_exit: bool = False,
    start_timeout: float = 60.0,
    **client_kwargs: Any,
) -> Client:
    """A Client for the Abaco service this process should use; ``client.how`` says how it was found.

    ``url``/``token``: use this service (a remote Abaco too: pass ``prefix=``/``auth=`` for Client).
    ``start``: start ``abaco-nb serve`` when nothing is found (``runtime`` picks its runtime;
    ``stop_at_exit`` stops it when this interpreter exits instead of leaving it for other kernels).
    """
    if url:
        if token is None and url.rstrip("/") == os.environ.get(ENV_URL, "").rstrip("/"):
            token = os.environ.get(ENV_TOKEN)
        return _found(Client(url, token, **client_kwargs), "the url given to connect()")
    team = team_service()  # under JupyterHub: the team's service, as this user (the Hub's token)
    if team is not None:
        return _found(Client(team[0], token or team[1], **client_kwargs), "the JupyterHub team service")
    env_url = os.environ.get(ENV_URL)
    if env_url:
        client = Client(env_url, token or os.environ.get(ENV_TOKEN), **client_kwargs)
        return _found(client, f"{ENV_URL} from the environment (set by the Jupyter server extension)")
    path = connection_file_path()
    found = _from_connection_file(path, client_kwargs) or _from_jupyter_servers(client_kwargs)
    if found is not None:
        return found
    if not start:
        raise AbacoConnectionError(
            "(none)",
            f"no Abaco service found ({ENV_URL} unset, no live {path}, no Jupyter server with the "
            "abaco-nb extension); call connect(start=True) or run `abaco-nb serve`",
        )
    return _start_server(runtime, stop_at_exit, start_timeout, client_kwargs)


def _found(client: Client, how: str) -> Client:
    client.how = how
    log.info("abaco_nb.connect: %s via %s", client.base_url, how)
    return client


def _answers(client: Client) -> bool:
    try:
        client.request("GET", "", raw=True, timeout=PROBE_TIMEOUT)
        return True
    except AbacoAPIError:
        return False


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _from_connection_file(path: str, client_kwargs: dict[str, Any]) -> Client | None:
    info = _read_json(path)
    if not info or not info.get("url") or not _pid_alive(info.get("pid")):
        return None
    client = Client(str(info["url"]), info.get("token"), **client_kwargs)
    if not _answers(client):
        return None
    kind = "Jupyter server extension" if info.get("jupyter") else "abaco-nb serve"
    return _found(client, f"connection file {path} ({kind}, pid {info['pid']})")


def running_jupyter_servers() -> list[dict[str, Any]]:
    """What ``list_running_servers()`` yields: the live servers' ``jpserver-*.json``, newest first."""
    from jupyter_core.paths import jupyter_runtime_dir

    files = glob.glob(os.path.join(jupyter_runtime_dir(), "jpserver-*.json"))
    files.sort(key=lambda p: os.path.getmtime(p) if os.path.exists(p) else 0, reverse=True)
    servers = []
    for path in files:
        info = _read_json(path)
        if info and info.get("url") and _pid_alive(info.get("pid")):
            servers.append(info)
    return servers


def _from_jupyter_servers(client_kwargs: dict[str, Any]) -> Client | None:
    for info in running_jupyter_servers():
        if info.get("sock"):  # a unix-socket server: requests cannot reach it
            continue
        base = str(info["url"]).rstrip("/") + "/abaco"
        client = Client(base, info.get("token") or None, **client_kwargs)
        if _answers(client):
            return _found(client, f"running Jupyter server {info['url']} (pid {info['pid']})")
    return None


@contextmanager
def _lock(path: str) -> Iterator[None]:
    """An exclusive lock across processes: one starter at a time."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _start_server(runtime: str, stop_at_exit: bool, timeout: float, client_kwargs: dict[str, Any]) -> Client:
    """Start the shared ``abaco-nb serve`` (or find the one another process just started)."""
    directory = data_dir()
    path = os.path.join(directory, CONNECTION_FILE)
    with _lock(os.path.join(directory, "connect.lock")):
        client = _from_connection_file(path, client_kwargs)  # someone may have won the race
        if client is not None:
            return client
        log_path = os.path.join(directory, "serve.log")
        cmd = [
            sys.executable, "-m", "server_ext", "serve", "--runtime", runtime, "--port", "0",
            "--db", os.path.join(directory, "abaco.db"), "--connection-file", path,
        ]  # fmt: skip
        # 0600: the server prints its token; abaco_nb does not import server_ext's private_files
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        info = _wait_for_connection_file(proc, path, log_path, timeout)
    if stop_at_exit:
        atexit.register(_stop, proc)
    client = Client(str(info["url"]), info.get("token"), **client_kwargs)
    lifetime = (
        "stopped when this interpreter exits" if stop_at_exit else f"shared; stop it with `kill {proc.pid}`"
    )
    how = f"started abaco-nb serve (pid {proc.pid}, runtime {info.get('runtime', runtime)}, {lifetime})"
    print(f"abaco_nb: {how} at {client.base_url}", file=sys.stderr)
    return _found(client, how)


def _wait_for_connection_file(
    proc: subprocess.Popen[bytes], path: str, log_path: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AbacoConnectionError(
                "(none)", f"abaco-nb serve exited ({proc.returncode}): {_tail(log_path)}"
            )
        info = _read_json(path)
        if info and info.get("pid") == proc.pid and info.get("url"):
            return info
        time.sleep(0.05)
    _stop(proc)
    raise AbacoConnectionError(
        "(none)", f"abaco-nb serve did not start within {timeout:.0f} s: {_tail(log_path)}"
    )


def _tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, errors="replace") as f:
            return " | ".join(line.strip() for line in f.readlines()[-lines:]) or "no output"
    except OSError:
        return "no log"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server stops its workers and removes its connection file), then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


__all__ = ["connect", "connection_file_path", "data_dir", "running_jupyter_servers"]
