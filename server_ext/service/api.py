"""Abaco's REST API over the Service, with no web framework: a request in, a response out.

``Api.handle`` routes a ``rest.Request`` to a handler and always answers a ``rest.Response``, so the
standalone server and the Jupyter extension are both a few lines of Tornado around it and the whole
API is testable without a socket. Before any handler runs it authenticates the principal, redeems a
``?x-nonce=``, resolves an alias in place of an actor id and confines an execution's own token to
its actor. The routes are data: the core ones below, and each feature module's ``ROUTES``, put
together in :data:`ROUTES` in the order they must match (literal segments such as
``/actors/aliases`` before ``/actors/{actor_id}``).
"""

from __future__ import annotations

import base64

from . import api_access, api_actor_configs, api_admin, api_search, guard, privilege, retention
from .access_rules import required_level
from .errors import AbacoError, Forbidden, MethodNotAllowed, NotFound
from .models import COMPLETE, ERROR, Execution, parse_int
from .permissions import Caller
from .rest import (
    CORS_HEADERS,
    RESULT_FRAMES,
    Call,
    Principal,
    Request,
    Response,
    Route,
    envelope,
    error_response,
    normalise_path,
    recase,
)
from .search import is_search
from .service import Service

INLINE_RESULTS_BYTES = 1024 * 1024  # result frames a wait answer may carry (base64), over all executions


# -- actors -------------------------------------------------------------------------------------


def list_actors(service: Service, call: Call) -> Response:
    readable = guard.readable_actor_ids(service, call.caller)
    actors = [a.display(call.server) for a in service.list_actors() if readable is None or a.id in readable]
    return call.ok(actors, "Actors retrieved successfully.")


def register(service: Service, call: Call) -> Response:
    body = call.body()  # empty: Abaco's refusal names the missing image
    actor = service.register(body, call.user, host_caller=call.principal.host_caller)
    return call.ok(actor.display(call.server), "Actor created successfully.")


def get_actor(service: Service, call: Call) -> Response:
    actor = service.get_actor(call.params["actor_id"])
    return call.ok(actor.display(call.server), "Actor retrieved successfully.")


def update_actor(service: Service, call: Call) -> Response:
    actor = service.update(
        call.params["actor_id"],
        call.body(allow_empty=False),
        limited=call.principal.limited,
        host_caller=call.principal.host_caller,
    )
    return call.ok(actor.display(call.server), "Actor updated successfully.")


def delete_actor(service: Service, call: Call) -> Response:
    service.delete(call.params["actor_id"])
    return call.ok(None, "Actor deleted successfully.")


# -- messages -----------------------------------------------------------------------------------


def get_messages(service: Service, call: Call) -> Response:
    count = service.queue_length(call.params["actor_id"])
    return call.ok(
        {"messages": count, "_links": call.links(call.params["actor_id"])},
        "Actor messages retrieved successfully.",
    )


def send_message(service: Service, call: Call) -> Response:
    synchronous = call.request.query.get("_abaco_synchronous", ["false"])[-1].lower() == "true"
    execution, message = service.send(
        call.params["actor_id"],
        call.request.header("Content-Type"),
        call.request.body,
        call.request.query,
        call.user,
    )
    if synchronous:
        return _synchronous_answer(service, execution)
    base = f"{call.server}/actors/{execution.actor_id}"
    result = {
        "execution_id": execution.id,
        "msg": message.echo(),
        "_links": {
            "self": f"{base}/executions/{execution.id}",
            "owner": f"{call.server}/profiles/{call.user}",
            "messages": f"{base}/messages",
        },
    }
    shown = recase(result, call.camel())
    shown["executionId"] = shown["execution_id"] = execution.id  # every client reads one of the two
    return Response(200, envelope(shown, "The request was successful"))


def _synchronous_answer(service: Service, execution: Execution) -> Response:
    """``?_abaco_synchronous=true``: the first result's bytes, else the logs; unlike Abaco, an
    execution that ends ERROR answers too (with its reason), and a time limit applies."""
    done = service.wait(execution.actor_id, [execution.id], service.config.sync_timeout)
    if not done:
        raise AbacoError(
            f"Synchronous execution {execution.id} did not finish within "
            f"{service.config.sync_timeout:.0f} s; it keeps running. Read it at "
            f"/actors/{execution.actor_id}/executions/{execution.id}.",
            408,
        )
    finished = done[0]
    headers = {"X-Abaco-Execution-Id": finished.id, "X-Abaco-Execution-Status": finished.status}
    result, logs = service.synchronous_output(finished)
    if result is not None:
        return Response(200, result, "application/octet-stream", headers)
    if finished.status == ERROR:
        logs = (logs + "\n" if logs else "") + f"ERROR: {finished.status_message}"
    return Response(200, logs.encode(), "text/plain; charset=utf-8", headers)


def purge_messages(service: Service, call: Call) -> Response:
    service.purge_mailbox(call.params["actor_id"])
    return call.ok(
        {"msg": "Actor mailbox purged.", "_links": call.links(call.params["actor_id"])},
        "Actor mailbox purged.",
    )


# -- executions ---------------------------------------------------------------------------------


PAGE_OFFSET, PAGE_LIMIT = "_abaco_nb_offset", "_abaco_nb_limit"  # ours: a page of the plain list


def list_executions(service: Service, call: Call) -> Response:
    """Abaco's executions summary: totals over every execution (pruned ones too), and the ids and
    summaries of the kept ones, oldest first, or of the page ``?_abaco_nb_offset=&_abaco_nb_limit=``."""
    actor = service.get_actor(call.params["actor_id"])
    executions = service.list_executions(actor.id)
    pruned = service.store.pruned_totals(actor.id)  # retention: pruned executions still count
    query = call.request.query
    offset = parse_int(query.get(PAGE_OFFSET, ["0"])[-1], PAGE_OFFSET, minimum=0)
    limit = parse_int(query[PAGE_LIMIT][-1], PAGE_LIMIT, minimum=0) if PAGE_LIMIT in query else None
    shown = executions[retention.page([e.id for e in executions], offset, limit)]
    api = call.server
    result = {
        "_links": {
            "self": f"{api}/actors/{actor.id}/executions",
            "owner": f"{api}/profiles/{actor.owner}",
        },
        "actor_id": actor.id,
        "api_server": api,
        "owner": actor.owner,
        "total_executions": len(executions) + pruned.get("total_executions", 0),
        "total_cpu": sum(e.cpu for e in executions) + pruned.get("total_cpu", 0),
        "total_io": sum(e.io for e in executions) + pruned.get("total_io", 0),
        "total_runtime": sum(e.runtime for e in executions) + pruned.get("total_runtime", 0),
        "ids": [e.id for e in shown],
        "executions": [e.summary() for e in shown],
    }
    return call.ok(result, "Actor executions retrieved successfully.")


def get_execution(service: Service, call: Call) -> Response:
    execution = service.get_execution(call.params["actor_id"], call.params["execution_id"])
    wait = call.request.query.get("wait")
    if wait and execution.status not in (COMPLETE, ERROR):  # ours: long-poll until terminal
        timeout = min(float(parse_int(wait[-1], "wait", minimum=0)), 300.0)
        service.wait(execution.actor_id, [execution.id], timeout)
        execution = service.get_execution(call.params["actor_id"], call.params["execution_id"])
    return call.ok(execution.display(call.server), "Actor execution retrieved successfully.")


def wait_executions(service: Service, call: Call) -> Response:
    """Ours: ``POST /actors/{id}/executions/wait {"ids": [...], "timeout": s}`` blocks until one
    of them is terminal; returns the terminal ones. The executor's push-like completion."""
    body = call.body(allow_empty=False)
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
    done = service.wait(call.params["actor_id"], ids, timeout, newer_than)
    views = [e.display(call.server) for e in done]
    budget = INLINE_RESULTS_BYTES if with_results else 0
    for view, execution in zip(views, done, strict=True):
        if with_results:  # the executor sizes the chunks of later maps by how long these calls took
            timed = service.call_times(execution)
            if timed is not None:
                view["_abaco_nb_calls"] = {"from_call": timed[0], "seconds": timed[1]}
        frames = service.all_results(call.params["actor_id"], execution.id) if budget > 0 else []
        packed = b"".join(len(f).to_bytes(8, "big") + f for f in frames)
        if frames and len(packed) <= budget:  # larger ones: the client reads the results route
            view["_abaco_nb_results"] = base64.b64encode(packed).decode()
            budget -= len(packed)
    return call.ok(views, "Finished executions.")


def force_quit(service: Service, call: Call) -> Response:
    message = service.force_quit(call.params["actor_id"], call.params["execution_id"])
    return call.ok(None, message)


def get_logs(service: Service, call: Call) -> Response:
    logs = service.logs(call.params["actor_id"], call.params["execution_id"])
    base = f"{call.server}/actors/{call.params['actor_id']}/executions/{call.params['execution_id']}"
    links = {"self": f"{base}/logs", "owner": f"{call.server}/profiles/{call.user}", "execution": base}
    return call.ok({"logs": logs, "_links": links}, "Logs retrieved successfully.")


def get_result(service: Service, call: Call) -> Response:
    if call.request.query.get("_abaco_nb_all", ["false"])[-1].lower() in ("1", "true"):
        # Ours: every result of the execution, read or not, without consuming any; each frame as an
        # 8-byte big-endian length then its bytes. The executor reads results this way, so a re-run
        # or a restarted kernel gets them again.
        frames = service.all_results(call.params["actor_id"], call.params["execution_id"])
        body = b"".join(len(f).to_bytes(8, "big") + f for f in frames)
        return Response(200, body, RESULT_FRAMES)
    data = service.pop_result(call.params["actor_id"], call.params["execution_id"])
    return Response(200, data, "application/octet-stream")


def image_versions(service: Service, call: Call) -> Response:
    """Ours: the Python and cloudpickle versions of the actor's image (null when it declares none),
    so the executor refuses a mismatch before anything runs."""
    versions = service.image_versions(call.params["actor_id"])
    return call.ok(versions, "Image versions retrieved.")


# -- state and workers --------------------------------------------------------------------------


def get_state(service: Service, call: Call) -> Response:
    state = service.get_state(call.params["actor_id"])
    return call.ok({"state": state}, "Actor state retrieved successfully.")


def set_state(service: Service, call: Call) -> Response:
    actor = service.set_state(call.params["actor_id"], call.request.body)
    return call.ok(actor.display(call.server), "State updated successfully.")


def list_workers(service: Service, call: Call) -> Response:
    location = f"{service.runtime.name}://local"
    workers = [w.display(location) for w in service.list_workers(call.params["actor_id"])]
    return call.ok(workers, "Workers retrieved successfully.")


def add_workers(service: Service, call: Call) -> Response:
    body = call.body()
    num = parse_int(body.get("num", 1), "num", minimum=1)
    message = service.add_workers(call.params["actor_id"], num)
    return call.ok(None, message)


def get_worker(service: Service, call: Call) -> Response:
    worker = service.get_worker(call.params["actor_id"], call.params["worker_id"])
    return call.ok(worker.display(f"{service.runtime.name}://local"), "Worker retrieved.")


def delete_worker(service: Service, call: Call) -> Response:
    service.delete_worker(call.params["actor_id"], call.params["worker_id"])
    return call.ok(None, "Worker scheduled to be stopped.")


_ID = r"(?P<actor_id>[^/]+)"
_EID = r"(?P<execution_id>[^/]+)"
CORE = [
    Route("/actors", GET=list_actors, POST=register),
    Route(f"/actors/{_ID}", GET=get_actor, PUT=update_actor, DELETE=delete_actor),
    Route(f"/actors/{_ID}/messages", GET=get_messages, POST=send_message, DELETE=purge_messages),
    Route(f"/actors/{_ID}/executions", GET=list_executions),
    Route(f"/actors/{_ID}/executions/wait", POST=wait_executions),
    Route(f"/actors/{_ID}/executions/{_EID}", GET=get_execution, DELETE=force_quit),
    Route(f"/actors/{_ID}/executions/{_EID}/logs", GET=get_logs),
    Route(f"/actors/{_ID}/executions/{_EID}/results", GET=get_result),
    Route(f"/actors/{_ID}/image_versions", GET=image_versions),
    Route(f"/actors/{_ID}/state", GET=get_state, POST=set_state),
    Route(f"/actors/{_ID}/workers", GET=list_workers, POST=add_workers),
    Route(f"/actors/{_ID}/workers/(?P<worker_id>[^/]+)", GET=get_worker, DELETE=delete_worker),
]
# Every route, in matching order: the feature modules' literal /actors/<word> routes come before the
# generic /actors/{actor_id} ones (their own /actors/{actor_id}/nonces etc. follow their literal ones).
ROUTES: list[Route] = [
    *api_search.ROUTES,
    *api_admin.ROUTES,
    *api_actor_configs.ROUTES,
    *api_access.ROUTES,
    *CORE,
]

# Routes an execution's own token may use, for its own actor only.
SCOPED_ALLOWED = {
    "get_actor",
    "get_state",
    "set_state",
    "send_message",
    "get_messages",
    "list_executions",
    "get_execution",
    "get_logs",
    "get_result",
    "wait_executions",
}


MAX_IDENTIFIER = 128  # characters of an id, alias, nonce id or config name in a path


class Api:
    """Dispatches requests to the Service. ``handle`` never raises: every outcome is a Response."""

    def __init__(self, service: Service, case: str = "snake") -> None:
        self.service = service
        self.case = case

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
        for route in ROUTES:
            match = route.pattern.match(path)
            if match is None:
                continue
            handler = route.methods.get(request.method)
            if handler is None:
                raise MethodNotAllowed(request.method, path)
            name = handler.__name__
            params = match.groupdict()
            for key, value in params.items():  # before any decoding: a 60 KB id cost 3.7 s of CPU
                if value is not None and len(value) > MAX_IDENTIFIER:
                    raise AbacoError(
                        f"Invalid {key}: longer than any valid one ({MAX_IDENTIFIER} characters)."
                    )
            principal = request.principal
            if principal is None:
                raise AbacoError("Authentication required.", 401)
            identifier = params.get("actor_id") or params.get("alias")  # as the path names it
            if params.get("actor_id"):  # an alias works in place of an actor id on every route
                params["actor_id"] = self.service.access.resolve(params["actor_id"])
            if principal.nonce is not None:  # checked and counted atomically; runs as the nonce's owner
                owner = self.service.access.nonce_owner(principal.nonce)
                if owner is not None:  # the owner's own level must cover the request too (checked first)
                    caller = self.service.users.caller(owner)
                    guard.authorize(self.service, caller, name, params, request.method, path)
                level = required_level(request.method, path)
                used = self.service.access.redeem(principal.nonce, identifier, level)
                admin = self.service.users.caller(used.owner).admin
                principal = request.principal = Principal(used.owner, nonce=used.id, admin=admin)
            if principal.scope is not None:  # an execution's token acts as its sender, on its actor only
                if name not in SCOPED_ALLOWED or params.get("actor_id") != principal.scope.actor_id:
                    raise Forbidden("actor")
                sender = self.service.execution_user(principal.scope)
                admin = self.service.users.caller(sender).admin
                principal = request.principal = Principal(sender, principal.scope, admin=admin)
            if principal.limited:  # a nonce or an execution token never grows
                privilege.check_operation(name, params, principal.nonce)
            caller = Caller(principal.user, admin=principal.admin)
            guard.authorize(self.service, caller, name, params, request.method, path)
            if request.method == "GET" and name in api_search.IMPLICIT_SEARCH and is_search(request.query):
                handler = api_search.IMPLICIT_SEARCH[name]  # Abaco: any other query key makes a list a search
            return handler(self.service, Call(request, params, self.case))
        raise NotFound(f"No such route: {request.method} {request.path}. Routes start with /actors.")
