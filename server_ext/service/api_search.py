"""Search routes: ``GET /actors/search/{actors|workers|executions|logs}`` and Abaco's implicit form, where
``GET /actors``, ``/actors/{id}/executions``, ``/actors/{id}/workers`` and
``/actors/{id}/executions/{eid}/logs`` with query keys of their own answer a search instead of a list.

The records are the display dicts the other routes show (so a search sees what a GET shows); the
filtering is ``search.py``'s, pure. Implicit searches are limited to the actor (and execution) of the path.
"""

from __future__ import annotations

from typing import Any

from . import guard, search
from .errors import NotFound
from .rest import Call, Handler, Response, Route
from .service import Service


def _records(
    service: Service, server: str, kind: str, actor_id: str | None, execution_id: str | None
) -> list[Any]:
    if kind == "actors":
        return [a.display(server) for a in service.list_actors()]
    live = {a.id for a in service.list_actors()}  # an execution (and its logs) goes with its actor
    if kind == "executions":  # Abaco's execution records carry no api_server
        executions = service.list_executions(actor_id) if actor_id else service.all_executions()
        return [_without(e.display(server), "api_server") for e in executions if e.actor_id in live]
    if kind == "workers":  # Abaco's worker records carry no tenant
        location = f"{service.runtime.name}://local"
        workers = service.list_workers(actor_id) if actor_id else service.all_workers()
        return [_without(w.display(location), "tenant") for w in workers]
    records = []
    for eid, aid, text in service.log_records(actor_id):
        if aid in live and (execution_id is None or eid == execution_id):
            base = f"{server}/actors/{aid}/executions/{eid}"
            records.append(
                {
                    "_links": {"self": f"{base}/logs", "execution": base},
                    "id": eid,
                    "execution_id": eid,
                    "actor_id": aid,
                    "logs": text,
                }
            )
    return records


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    record.pop(key, None)
    return record


def _answer(
    service: Service, call: Call, kind: str, actor_id: str | None = None, execution_id: str | None = None
) -> Response:
    query = search.parse_query(call.request.query)
    if actor_id is not None:
        service.get_actor(actor_id)
    records = _records(service, call.server, kind, actor_id, execution_id)
    readable = guard.readable_actor_ids(service, call.caller)
    if readable is not None:  # only what the caller may read (Abaco joins the permissions store)
        key = "id" if kind == "actors" else "actor_id"
        records = [r for r in records if r.get(key) in readable]
    result = search.run(records, query)
    return call.ok(result, "Search completed successfully.")


def search_collection(service: Service, call: Call) -> Response:
    kind = call.params["search_type"]
    if kind not in search.TYPES:
        raise NotFound(f"No such search type: {kind}. Search one of {', '.join(search.TYPES)}.")
    return _answer(service, call, kind)


def search_actors(service: Service, call: Call) -> Response:
    return _answer(service, call, "actors")


def search_executions(service: Service, call: Call) -> Response:
    return _answer(service, call, "executions", call.params["actor_id"])


def search_workers(service: Service, call: Call) -> Response:
    return _answer(service, call, "workers", call.params["actor_id"])


def search_logs(service: Service, call: Call) -> Response:
    service.get_execution(call.params["actor_id"], call.params["execution_id"])
    return _answer(service, call, "logs", call.params["actor_id"], call.params["execution_id"])


ROUTES = [Route(r"/actors/search/(?P<search_type>[^/]+)", GET=search_collection)]
# List operations that become a search when the query has keys of its own (Abaco's implicit search).
IMPLICIT_SEARCH: dict[str, Handler] = {
    "list_actors": search_actors,
    "list_executions": search_executions,
    "list_workers": search_workers,
    "get_logs": search_logs,
}
