"""Helpers for code running *inside* an actor: the names and behaviour of ``agavepy.actors``.

A reactor written for Abaco runs unchanged apart from its import line::

    from abaco_nb.actors import get_context, update_state

This module is copied as a single file into the executor image (``abaco-nb/py3-func``) whose Python has
nothing but the standard library and cloudpickle, so it imports only the standard library at module
level; ``cloudpickle`` is imported lazily by ``send_python_result``. HTTP to the service goes through
``http.client``, over a unix socket when ``_abaco_api_server`` says ``http+unix://``.

Where this differs from agavepy 0.9.5, on purpose:

* ``content_type`` reads ``_abaco_Content-Type`` and falls back to ``_abaco_Content_Type`` (the variable
  the real Abaco sets), so it is not always None.
* ``message_dict`` falls back to ``json.loads`` when ``ast.literal_eval`` fails (as agavepy 1.0 does), so
  a JSON-looking ``MSG`` with ``true``/``null`` parses.
* ``state`` is the actor's state as a Python object (parsed like ``MSG``), not the ``str()`` of it: the
  accumulator example (``update_state(count + context['state'])``) only works that way. The raw string
  stays available as ``context['raw_state']`` and ``context['_abaco_actor_state']``.
* ``get_client()`` returns a small agavepy-shaped client (``.actors.updateState``, ``getState``,
  ``sendMessage``, ``sendBinaryMessage``) that talks to the abaco-nb service, not a full ``Agave``.
"""

from __future__ import annotations

import ast
import errno
import http.client
import json
import os
import socket
import sys
import urllib.parse
from typing import Any

BINARY_DATA_PATH = "/_abaco_binary_data"
RESULTS_SOCKET_PATH = "/_abaco_results.sock"
# Host paths for executions run as local processes (the process runtime); containers use the paths above.
ENV_BINARY_DATA = "ABACO_NB_BINARY_DATA"
ENV_RESULTS_SOCKET = "ABACO_NB_RESULTS_SOCK"

# One datagram is one result; Linux's default send buffer (net.core.wmem_default) caps a datagram at
# about 212 KB. Larger frames are attempted with a bigger SO_SNDBUF (up to net.core.wmem_max).
_DEFAULT_DGRAM_LIMIT = 200_000


class AbacoError(Exception):
    """A helper could not do what was asked (agavepy raises AgaveError in the same places)."""


class AttrDict(dict[str, Any]):
    """A dict whose keys are also attributes, as agavepy's context is."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(key) from exc

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


def _parse_literal(raw: str | None) -> tuple[Any, str]:
    """``MSG`` and the state come as ``str()`` of a Python value (Abaco formats env values with str()),
    or as JSON from other senders: try the Python literal first, then JSON. Returns (value, error)."""
    if raw is None:
        return None, "no value"
    try:
        return ast.literal_eval(raw), ""
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        literal_error = exc
    try:
        return json.loads(raw), ""
    except ValueError as exc:
        return None, f"Error parsing message: {literal_error}; as JSON: {exc}"


def get_context() -> AttrDict:
    """The execution's context from the environment (no I/O): message, ids, state, then every env var."""
    env = os.environ
    raw = env.get("MSG")
    context = AttrDict(
        raw_message=raw,
        content_type=env.get("_abaco_Content-Type") or env.get("_abaco_Content_Type"),
        execution_id=env.get("_abaco_execution_id"),
        username=env.get("_abaco_username"),
        state=None,
        raw_state=env.get("_abaco_actor_state"),
        actor_dbid=env.get("_abaco_actor_dbid"),
        actor_id=env.get("_abaco_actor_id"),
        actor_repo=env.get("_abaco_container_repo"),
        actor_name=env.get("_abaco_actor_name"),
        worker_id=env.get("_abaco_worker_id"),
        message_dict=AttrDict(),
        raw_message_parse_log="",
    )
    value, error = _parse_literal(raw)
    if isinstance(value, dict):
        context["message_dict"] = AttrDict(value)
    elif raw is not None and error:
        context["raw_message_parse_log"] = error
    raw_state = env.get("_abaco_actor_state")
    if raw_state is not None:
        state, state_error = _parse_literal(raw_state)
        context["state"] = raw_state if state_error else state
    context.update(env)
    return context


# ---------------------------------------------------------------------------------------------------------
# Binary message and results
# ---------------------------------------------------------------------------------------------------------


def _binary_path() -> str:
    return os.environ.get(ENV_BINARY_DATA) or BINARY_DATA_PATH


def _results_path() -> str:
    return os.environ.get(ENV_RESULTS_SOCKET) or RESULTS_SOCKET_PATH


def get_binary_message() -> bytes:
    """The binary message's bytes. Works on a regular file (abaco-nb: any size) and on a pre-filled
    FIFO (real Abaco: read until EAGAIN or EOF). A missing path raises FileNotFoundError, as agavepy."""
    fd = os.open(_binary_path(), os.O_RDONLY | os.O_NONBLOCK)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                raise
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def send_bytes_result(value: bytes) -> None:
    """Send one result: one datagram on the results socket is one result frame."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise AbacoError(f"send_bytes_result did not receive bytes, got: {value!r:.200}")
    data = bytes(value)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        if len(data) > _DEFAULT_DGRAM_LIMIT:
            # Beyond wmem_default a datagram needs a bigger send buffer; the kernel caps it at wmem_max.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, len(data) + 4096)
            except OSError:
                pass
        try:
            sock.connect(_results_path())
        except OSError as exc:
            print(f"Exception connecting to results socket: {exc}", file=sys.stderr)
            raise AbacoError(f"Exception connecting to results socket: {exc}") from exc
        try:
            sock.send(data)
        except OSError as exc:
            raise AbacoError(f"Got exception sending bytes over results socket: {exc}") from exc
    finally:
        sock.close()


def send_python_result(obj: Any) -> None:
    """Send ``cloudpickle.dumps(obj)`` as one result (what AbacoExecutor's result() unpickles)."""
    import cloudpickle

    try:
        data = cloudpickle.dumps(obj)
    except Exception as exc:
        print(f"Could not serialize {obj!r:.200}: {exc}", file=sys.stderr)
        raise AbacoError(f"Could not serialize {obj!r:.200}; exception: {exc}") from exc
    send_bytes_result(data)


# ---------------------------------------------------------------------------------------------------------
# The API client
# ---------------------------------------------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket: how a container reaches the service with networking off."""

    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Actors:
    """The agavepy ``ag.actors`` operations a reactor uses, with agavepy's keyword names."""

    def __init__(self, client: AbacoClient) -> None:
        self._client = client

    def updateState(self, actorId: str, body: Any) -> Any:  # noqa: N802, N803 - agavepy names
        """Replace the actor's state with ``body`` (any JSON value)."""
        return self._client.request("POST", f"/actors/{actorId}/state", json_body=body)

    def getState(self, actorId: str) -> Any:  # noqa: N802, N803
        """``{"state": ...}``, as agavepy returns the envelope's result."""
        return self._client.request("GET", f"/actors/{actorId}/state")

    def sendMessage(  # noqa: N802
        self,
        actorId: str,
        body: Any,
        environment: dict[str, str] | None = None,  # noqa: N803
    ) -> Any:
        """Queue a message; a str is sent as ``{"message": str}``, anything else as a JSON message."""
        if isinstance(body, str):
            body = {"message": body}
        return self._client.request("POST", f"/actors/{actorId}/messages", json_body=body, query=environment)

    def sendBinaryMessage(  # noqa: N802
        self,
        actorId: str,
        message: bytes,
        environment: dict[str, str] | None = None,  # noqa: N803
    ) -> Any:
        """Queue a binary message (``application/octet-stream``)."""
        return self._client.request(
            "POST", f"/actors/{actorId}/messages", raw_body=bytes(message), query=environment
        )


class AbacoClient:
    """A minimal client of the Abaco API for use inside an execution (standard library only).

    ``api_server`` is ``http+unix://<percent-encoded socket path>[/prefix]`` or ``http(s)://host[:port][/prefix]``.
    """

    def __init__(self, api_server: str, token: str = "", timeout: float = 60.0) -> None:
        self.api_server = api_server
        self.token = token
        self.timeout = timeout
        parsed = urllib.parse.urlsplit(api_server)
        self._scheme = parsed.scheme
        if parsed.scheme == "http+unix":
            self._socket_path = urllib.parse.unquote(parsed.netloc)
        elif parsed.scheme in ("http", "https"):
            self._socket_path = ""
        else:
            raise AbacoError(f"unsupported _abaco_api_server {api_server!r}: need http(s):// or http+unix://")
        self._netloc = parsed.netloc
        self._prefix = parsed.path.rstrip("/")
        self.actors = _Actors(self)

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "http+unix":
            return _UnixHTTPConnection(self._socket_path, timeout=self.timeout)
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._netloc, timeout=self.timeout)
        return http.client.HTTPConnection(self._netloc, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        raw_body: bytes | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """Send one request; return the envelope's ``result`` or raise AbacoError with its message."""
        url = self._prefix + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body: bytes | None = None
        if raw_body is not None:
            body, headers["Content-Type"] = raw_body, "application/octet-stream"
        elif json_body is not None or method in ("POST", "PUT"):
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        conn = self._connection()
        try:
            try:
                conn.request(method, url, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError as exc:
                raise AbacoError(f"cannot reach the Abaco API at {self.api_server}: {exc}") from exc
        finally:
            conn.close()
        try:
            envelope = json.loads(data) if data else {}
        except ValueError:
            envelope = None
        if resp.status >= 400:
            message = (
                envelope.get("message") if isinstance(envelope, dict) else data[:500].decode(errors="replace")
            )
            raise AbacoError(f"{method} {url} failed with HTTP {resp.status}: {message}")
        if isinstance(envelope, dict) and "result" in envelope:
            return envelope["result"]
        return envelope


def get_client() -> AbacoClient:
    """A client authenticated as this execution (``_abaco_access_token``), talking to the service that
    runs it (``_abaco_api_server``)."""
    api_server = os.environ.get("_abaco_api_server")
    if not api_server:
        raise AbacoError("Unable to instantiate an Abaco client: _abaco_api_server is not set")
    return AbacoClient(api_server, os.environ.get("_abaco_access_token", ""))


def update_state(state: Any) -> Any:
    """Replace this actor's state with ``state`` (any JSON value); last write wins, as in Abaco."""
    actor_id = os.environ.get("_abaco_actor_id")
    if not actor_id:
        raise AbacoError("update_state: _abaco_actor_id is not set (not running as an actor?)")
    return get_client().actors.updateState(actorId=actor_id, body=state)
