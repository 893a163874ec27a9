"""Abaco's REST API over the Service, with no web framework: a request in, a response out.

Routing, body parsing, the ``{message, result, status, version}`` envelope, snake/camel casing and the
scoping of execution tokens live here, so the standalone server and the Jupyter extension are both a
few lines of Tornado around ``Api.handle`` and the whole API is testable without a socket.
Prefixes ``/actors``, ``/actors/v2`` and ``/v3/actors`` are the same routes; duplicate slashes are
collapsed (tapipy sends ``//messages``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from . import privilege
from .access_rules import required_level
from .errors import AbacoError, Forbidden, MethodNotAllowed, NotFound
from .models import COMPLETE, ERROR, Actor, Execution, parse_int, to_camel
from .search import is_search
from .service import VERSION, Service
from .tokens import Scope

JSON = "application/json"
RESULT_FRAMES = "application/x-abaco-nb-frames"
INLINE_RESULTS_BYTES = 1024 * 1024  # result frames a wait answer may carry (base64), over all executions
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Tapis-Token, X-Requested-With",
}
_SLASHES = re.compile(r"/{2,}")
_PREFIXES = ("/v3/actors", "/actors/v2")
# Keys whose values are user data: never re-cased.
_OPAQUE_KEYS = {"default_environment", "state", "final_state", "msg", "_links", "message", "logs"}


@dataclass
class Principal:
    """Who is asking: the user, and for an execution's own token the scope it is limited to. ``nonce``:
    a request with ``?x-nonce=`` and no token; ``Api`` redeems it and the caller becomes its owner."""

    user: str
    scope: Scope | None = None
    nonce: str | None = None
    host: bool = True  # the service token (or Jupyter's own user): may set ``local:`` and privileged

    @property
    def limited(self) -> bool:
        """A nonce or an execution token: never grows (``privilege``)."""
        return self.nonce is not None or self.scope is not None

    @property
    def host_caller(self) -> bool:
        """May register what runs on the host: ``local:`` images, ``privileged`` actors."""
        return self.host and not self.limited


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    principal: Principal | None = None
    base_url: str = ""  # scheme://host[:port][prefix] used in _links

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def normalise_path(path: str) -> str:
    """Collapse ``//`` and map the v2/v3 prefixes onto ``/actors``."""
    path = _SLASHES.sub("/", "/" + path.split("?", 1)[0]).rstrip("/") or "/"
    for prefix in _PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return "/actors" + path[len(prefix) :]
    return path


def recase(value: Any, camel: bool) -> Any:
    """Result keys in camelCase when asked; user data (environment, state, final_state) untouched."""
    if not camel:
        return value
    if isinstance(value, list):
        return [recase(v, camel) for v in value]
    if isinstance(value, dict):
        return {to_camel(k): (v if k in _OPAQUE_KEYS else recase(v, camel)) for k, v in value.items()}
    return value


def envelope(result: Any, message: str, status: str = "success") -> bytes:
    return json.dumps(
        {"message": message, "result": result, "status": status, "version": VERSION, "metadata": {}}
    ).encode()


def error_response(exc: AbacoError) -> Response:
    return Response(exc.status, envelope(None, exc.message, "error"))


Handler = Callable[["Api", Request, dict[str, str]], Response]
# Each method names an ``Api._<name>`` method, or is a handler function registered by another module
# (``route(...)`` from ``service/api_*.py``), so a feature brings its routes without growing this file.
RouteTarget = str | Handler
_ROUTES: list[tuple[re.Pattern[str], dict[str, RouteTarget]]] = []


def route(pattern: str, *, first: bool = False, **methods: RouteTarget) -> None:
    """Add a route. ``first``: match before the generic ``/actors/{id}`` routes (literal segments
    such as ``/actors/aliases`` must, or they would be read as an actor id)."""
    entry = (re.compile("^" + pattern + "$"), methods)
    if first:
        _ROUTES.insert(0, entry)
    else:
        _ROUTES.append(entry)


def target_name(target: RouteTarget) -> str:
    """The operation's name, as the scoped-token allow-list and the OpenAPI test know it."""
    return target if isinstance(target, str) else target.__name__


_route = route
# List operations that become a search when the query has keys of its own (api_search fills this).
IMPLICIT_SEARCH: dict[str, Handler] = {}


_ID = r"(?P<actor_id>[^/]+)"
_EID = r"(?P<execution_id>[^/]+)"
_route("/actors", GET="list_actors", POST="register")
_route(f"/actors/{_ID}", GET="get_actor", PUT="update_actor", DELETE="delete_actor")
_route(f"/actors/{_ID}/messages", GET="get_messages", POST="send_message", DELETE="purge_messages")
_route(f"/actors/{_ID}/executions", GET="list_executions")
_route(f"/actors/{_ID}/executions/wait", POST="wait_executions")
_route(f"/actors/{_ID}/executions/{_EID}", GET="get_execution", DELETE="force_quit")
_route(f"/actors/{_ID}/executions/{_EID}/logs", GET="get_logs")
_route(f"/actors/{_ID}/executions/{_EID}/results", GET="get_result")
_route(f"/actors/{_ID}/image_versions", GET="image_versions")
_route(f"/actors/{_ID}/state", GET="get_state", POST="set_state")
_route(f"/actors/{_ID}/workers", GET="list_workers", POST="add_workers")
_route(f"/actors/{_ID}/workers/(?P<worker_id>[^/]+)", GET="get_worker", DELETE="delete_worker")

# Routes an execution's own token may use, for its own actor only.
_SCOPED_ALLOWED = {
    "get_actor", "get_state", "set_state", "send_message", "get_messages", "list_executions",
    "get_execution", "get_logs", "get_result", "wait_executions",
}  # fmt: skip


class Api:
    """Dispatches requests to the Service. ``handle`` never raises: every outcome is a Response."""

    def __init__(self, service: Service, case: str = "snake") -> None:
        self.service = service
        self.case = case

    # -- plumbing -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        try:
            response = self._dispatch(request)
        except AbacoError as exc:
            response = error_response(exc)
        except Exception as exc:  # a bug: say so briefly, never a traceback or a hang
            response = Response(
                500, envelope(None, f"Unexpected error: {type(exc).__name__}: {exc}", "error")
            )
        response.headers = {**CORS_HEADERS, **response.headers}
        return response

    def _dispatch(self, request: Request) -> Response:
        path = normalise_path(request.path)
        if request.method == "OPTIONS":
            return Response(200, envelope(None, "ok"))
        for pattern, methods in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            target = methods.get(request.method)
            if target is None:
                raise MethodNotAllowed(request.method, path)
            name = target_name(target)
            params = match.groupdict()
            principal = request.principal
            if principal is None:
                raise AbacoError("Authentication required.", 401)
            if principal.nonce is not None:  # checked and counted atomically; runs as the nonce's owner
                identifier = params.get("actor_id") or params.get("alias")
                level = required_level(request.method, path)
                used = self.service.access.redeem(principal.nonce, identifier, level)
                principal = request.principal = Principal(used.owner, nonce=used.id)
            if params.get("actor_id"):  # an alias works in place of an actor id on every route
                params["actor_id"] = self.service.access.resolve(params["actor_id"])
            if principal.scope is not None and (
                name not in _SCOPED_ALLOWED or params.get("actor_id") != principal.scope.actor_id
            ):
                raise Forbidden("actor")
            if principal.limited:  # a nonce or an execution token never grows
                privilege.check_operation(name, params, principal.nonce)
            handler: Handler = getattr(Api, "_" + target) if isinstance(target, str) else target
            if request.method == "GET" and name in IMPLICIT_SEARCH and is_search(request.query):
                handler = IMPLICIT_SEARCH[name]  # Abaco: any other query key makes a list a search
            return handler(self, request, params)
        raise NotFound(f"No such route: {request.method} {request.path}. Routes start with /actors.")

    def _camel(self, request: Request) -> bool:
        case = request.query.get("case", [self.case])[-1]
        return case.lower() == "camel"

    def _ok(self, request: Request, result: Any, message: str) -> Response:
        return Response(200, envelope(recase(result, self._camel(request)), message))

    def _api_server(self, request: Request) -> str:
        return request.base_url.rstrip("/")

    def _user(self, request: Request) -> str:
        assert request.principal is not None
        return request.principal.user

    @staticmethod
    def _body(request: Request, *, allow_empty: bool = True) -> dict[str, Any]:
        """A JSON object or a form, as a dict (Abaco accepts both for every POST and PUT)."""
        media = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        raw = request.body
        if not raw.strip():
            if allow_empty:
                return {}
            raise AbacoError("The request body is empty; send a JSON object.")
        if media == "application/x-www-form-urlencoded":
            try:
                form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise AbacoError("The form body is not valid UTF-8.") from None
            return {k: v[-1] for k, v in form.items()}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AbacoError(f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(data, dict):
            raise AbacoError("The request body must be a JSON object.")
        return data

    def _actor_view(self, request: Request, actor: Actor) -> dict[str, Any]:
        return actor.display(self._api_server(request))

    def _execution_view(self, request: Request, execution: Execution) -> dict[str, Any]:
        return execution.display(self._api_server(request))

    # -- actors -------------------------------------------------------------------------------------

    def _list_actors(self, request: Request, params: dict[str, str]) -> Response:
        actors = [self._actor_view(request, a) for a in self.service.list_actors()]
        return self._ok(request, actors, "Actors retrieved successfully.")

    def _register(self, request: Request, params: dict[str, str]) -> Response:
        assert request.principal is not None
        body = self._body(request, allow_empty=False)
        actor = self.service.register(body, self._user(request), host_caller=request.principal.host_caller)
        return self._ok(request, self._actor_view(request, actor), "Actor created successfully.")

    def _get_actor(self, request: Request, params: dict[str, str]) -> Response:
        actor = self.service.get_actor(params["actor_id"])
        return self._ok(request, self._actor_view(request, actor), "Actor retrieved successfully.")

    def _update_actor(self, request: Request, params: dict[str, str]) -> Response:
        assert request.principal is not None
        actor = self.service.update(
            params["actor_id"], self._body(request, allow_empty=False),
            limited=request.principal.limited, host_caller=request.principal.host_caller,
        )  # fmt: skip
        return self._ok(request, self._actor_view(request, actor), "Actor updated successfully.")

    def _delete_actor(self, request: Request, params: dict[str, str]) -> Response:
        self.service.delete(params["actor_id"])
        return self._ok(request, None, "Actor deleted successfully.")

    # -- messages -----------------------------------------------------------------------------------

    def _links(self, request: Request, actor_id: str) -> dict[str, str]:
        base = f"{self._api_server(request)}/actors/{actor_id}"
        return {
            "self": f"{base}/messages",
            "owner": f"{self._api_server(request)}/profiles/{self._user(request)}",
        }

    def _get_messages(self, request: Request, params: dict[str, str]) -> Response:
        count = self.service.queue_length(params["actor_id"])
        return self._ok(
            request, {"messages": count, "_links": self._links(request, params["actor_id"])},
            "Actor messages retrieved successfully.",
        )  # fmt: skip

    def _send_message(self, request: Request, params: dict[str, str]) -> Response:
        synchronous = request.query.get("_abaco_synchronous", ["false"])[-1].lower() == "true"
        execution, message = self.service.send(
            params["actor_id"],
            request.header("Content-Type"),
            request.body,
            request.query,
            self._user(request),
        )
        if synchronous:
            return self._synchronous_answer(execution)
        base = f"{self._api_server(request)}/actors/{execution.actor_id}"
        result = {
            "execution_id": execution.id,
            "msg": message.echo(),
            "_links": {
                "self": f"{base}/executions/{execution.id}",
                "owner": f"{self._api_server(request)}/profiles/{self._user(request)}",
                "messages": f"{base}/messages",
            },
        }
        shown = recase(result, self._camel(request))
        shown["executionId"] = shown["execution_id"] = execution.id  # every client reads one of the two
        return Response(200, envelope(shown, "The request was successful"))

    def _synchronous_answer(self, execution: Execution) -> Response:
        """``?_abaco_synchronous=true``: the first result's bytes, else the logs; unlike Abaco, an
        execution that ends ERROR answers too (with its reason), and a time limit applies."""
        done = self.service.wait(execution.actor_id, [execution.id], self.service.config.sync_timeout)
        if not done:
            raise AbacoError(
                f"Synchronous execution {execution.id} did not finish within "
                f"{self.service.config.sync_timeout:.0f} s; it keeps running. Read it at "
                f"/actors/{execution.actor_id}/executions/{execution.id}.",
                408,
            )
        finished = done[0]
        headers = {"X-Abaco-Execution-Id": finished.id, "X-Abaco-Execution-Status": finished.status}
        result = self.service.store.pop_result(finished.id)
        if result is not None:
            return Response(200, result, "application/octet-stream", headers)
        logs = self.service.store.get_logs(finished.id, 0)
        if finished.status == ERROR:
            logs = (logs + "\n" if logs else "") + f"ERROR: {finished.status_message}"
        return Response(200, logs.encode(), "text/plain; charset=utf-8", headers)

    def _purge_messages(self, request: Request, params: dict[str, str]) -> Response:
        self.service.purge_mailbox(params["actor_id"])
        return self._ok(
            request, {"msg": "Actor mailbox purged.", "_links": self._links(request, params["actor_id"])},
            "Actor mailbox purged.",
        )  # fmt: skip

    # -- executions ---------------------------------------------------------------------------------

    def _list_executions(self, request: Request, params: dict[str, str]) -> Response:
        actor = self.service.get_actor(params["actor_id"])
        executions = self.service.list_executions(actor.id)
        api = self._api_server(request)
        result = {
            "_links": {
                "self": f"{api}/actors/{actor.id}/executions",
                "owner": f"{api}/profiles/{actor.owner}",
            },
            "actor_id": actor.id,
            "api_server": api,
            "owner": actor.owner,
            "total_executions": len(executions),
            "total_cpu": sum(e.cpu for e in executions),
            "total_io": sum(e.io for e in executions),
            "total_runtime": sum(e.runtime for e in executions),
            "ids": [e.id for e in executions],
            "executions": [e.summary() for e in executions],
        }
        return self._ok(request, result, "Actor executions retrieved successfully.")

    def _get_execution(self, request: Request, params: dict[str, str]) -> Response:
        execution = self.service.get_execution(params["actor_id"], params["execution_id"])
        wait = request.query.get("wait")
        if wait and execution.status not in (COMPLETE, ERROR):  # ours: long-poll until terminal
            timeout = min(float(parse_int(wait[-1], "wait", minimum=0)), 300.0)
            self.service.wait(execution.actor_id, [execution.id], timeout)
            execution = self.service.get_execution(params["actor_id"], params["execution_id"])
        return self._ok(
            request, self._execution_view(request, execution), "Actor execution retrieved successfully."
        )

    def _wait_executions(self, request: Request, params: dict[str, str]) -> Response:
        """Ours: ``POST /actors/{id}/executions/wait {"ids": [...], "timeout": s}`` blocks until one
        of them is terminal; returns the terminal ones. The executor's push-like completion."""
        body = self._body(request, allow_empty=False)
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
            raise AbacoError("Invalid ids: expected a non-empty list of execution ids.")
        timeout = min(float(parse_int(body.get("timeout", 30), "timeout", minimum=0)), 300.0)
        newer_than = body.get("newer_than")  # also wake for executions sent after these (the executor)
        if newer_than is not None and (
            not isinstance(newer_than, list) or not all(isinstance(i, str) for i in newer_than)
        ):
            raise AbacoError("Invalid newer_than: expected a list of execution ids.")
        with_results = body.get("results", False)  # also each one's result frames, while they are small
        if not isinstance(with_results, bool):
            raise AbacoError(f"Invalid results: {with_results!r} is not a boolean.")
        done = self.service.wait(params["actor_id"], ids, timeout, newer_than)
        views = [self._execution_view(request, e) for e in done]
        budget = INLINE_RESULTS_BYTES if with_results else 0
        for view, execution in zip(views, done, strict=True):
            frames = self.service.all_results(params["actor_id"], execution.id) if budget > 0 else []
            packed = b"".join(len(f).to_bytes(8, "big") + f for f in frames)
            if frames and len(packed) <= budget:  # larger ones: the client reads the results route
                view["_abaco_nb_results"] = base64.b64encode(packed).decode()
                budget -= len(packed)
        return self._ok(request, views, "Finished executions.")

    def _force_quit(self, request: Request, params: dict[str, str]) -> Response:
        message = self.service.force_quit(params["actor_id"], params["execution_id"])
        return self._ok(request, None, message)

    def _get_logs(self, request: Request, params: dict[str, str]) -> Response:
        logs = self.service.logs(params["actor_id"], params["execution_id"])
        base = f"{self._api_server(request)}/actors/{params['actor_id']}/executions/{params['execution_id']}"
        links = {"self": f"{base}/logs", "owner": f"{self._api_server(request)}/profiles/{self._user(request)}",
                 "execution": base}  # fmt: skip
        return self._ok(request, {"logs": logs, "_links": links}, "Logs retrieved successfully.")

    def _get_result(self, request: Request, params: dict[str, str]) -> Response:
        if request.query.get("_abaco_nb_all", ["false"])[-1].lower() in ("1", "true"):
            # Ours: every result of the execution, read or not, without consuming any; each frame as an
            # 8-byte big-endian length then its bytes. The executor reads results this way, so a re-run
            # or a restarted kernel gets them again.
            frames = self.service.all_results(params["actor_id"], params["execution_id"])
            body = b"".join(len(f).to_bytes(8, "big") + f for f in frames)
            return Response(200, body, RESULT_FRAMES)
        data = self.service.pop_result(params["actor_id"], params["execution_id"])
        return Response(200, data, "application/octet-stream")

    def _image_versions(self, request: Request, params: dict[str, str]) -> Response:
        """Ours: the Python and cloudpickle versions of the actor's image (null when it declares none),
        so the executor refuses a mismatch before anything runs."""
        versions = self.service.image_versions(params["actor_id"])
        return self._ok(request, versions, "Image versions retrieved.")

    # -- state and workers --------------------------------------------------------------------------

    def _get_state(self, request: Request, params: dict[str, str]) -> Response:
        state = self.service.get_state(params["actor_id"])
        return self._ok(request, {"state": state}, "Actor state retrieved successfully.")

    def _set_state(self, request: Request, params: dict[str, str]) -> Response:
        actor = self.service.set_state(params["actor_id"], request.body)
        return self._ok(request, self._actor_view(request, actor), "State updated successfully.")

    def _list_workers(self, request: Request, params: dict[str, str]) -> Response:
        location = f"{self.service.runtime.name}://local"
        workers = [w.display(location) for w in self.service.list_workers(params["actor_id"])]
        return self._ok(request, workers, "Workers retrieved successfully.")

    def _add_workers(self, request: Request, params: dict[str, str]) -> Response:
        body = self._body(request)
        num = parse_int(body.get("num", 1), "num", minimum=1)
        message = self.service.add_workers(params["actor_id"], num)
        return self._ok(request, None, message)

    def _get_worker(self, request: Request, params: dict[str, str]) -> Response:
        worker = self.service.get_worker(params["actor_id"], params["worker_id"])
        return self._ok(request, worker.display(f"{self.service.runtime.name}://local"), "Worker retrieved.")

    def _delete_worker(self, request: Request, params: dict[str, str]) -> Response:
        self.service.delete_worker(params["actor_id"], params["worker_id"])
        return self._ok(request, None, "Worker scheduled to be stopped.")


# Feature modules register their routes on import: aliases, nonces and permissions; search; actor
# configs; admin and utilization.
from . import api_access, api_actor_configs, api_admin, api_search  # noqa: E402, F401
