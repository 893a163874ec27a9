"""Search routes: ``GET /actors/search/{actors|workers|executions|logs}`` and Abaco's implicit form, where
``GET /actors``, ``/actors/{id}/executions``, ``/actors/{id}/workers`` and
``/actors/{id}/executions/{eid}/logs`` with query keys of their own answer a search instead of a list.

The records are the display dicts the other routes show (so a search sees what a GET shows); the
filtering is ``search.py``'s, pure. Implicit searches are limited to the actor (and execution) of the path.
"""

from __future__ import annotations

from typing import Any

from . import search
from .api import IMPLICIT_SEARCH, Api, Request, Response, route
from .errors import NotFound
from .ids import now


def _records(
    api: Api, request: Request, kind: str, actor_id: str | None, execution_id: str | None
) -> list[Any]:
    service = api.service
    server = api._api_server(request)
    if kind == "actors":
        return [api._actor_view(request, a) for a in service.list_actors()]
    if kind == "executions":
        executions = service.store.list_executions(actor_id) if actor_id else service.store.all_executions()
        return [e.display(server) for e in executions]
    if kind == "workers":
        location = f"{service.runtime.name}://local"
        return [w.display(location) for w in service.store.list_workers(actor_id)]
    records = []
    for eid, aid, text in service.store.log_records(now(), actor_id):
        if execution_id is None or eid == execution_id:
            base = f"{server}/actors/{aid}/executions/{eid}"
            records.append({"_links": {"self": f"{base}/logs", "execution": base}, "id": eid, "execution_id": eid,
                            "actor_id": aid, "logs": text})  # fmt: skip
    return records


def _answer(api: Api, request: Request, kind: str, actor_id: str | None = None,
            execution_id: str | None = None) -> Response:  # fmt: skip
    query = search.parse_query(request.query)
    if actor_id is not None:
        api.service.get_actor(actor_id)
    result = search.run(_records(api, request, kind, actor_id, execution_id), query)
    return api._ok(request, result, "Search completed successfully.")


def search_collection(api: Api, request: Request, params: dict[str, str]) -> Response:
    kind = params["search_type"]
    if kind not in search.TYPES:
        raise NotFound(f"No such search type: {kind}. Search one of {', '.join(search.TYPES)}.")
    return _answer(api, request, kind)


def search_actors(api: Api, request: Request, params: dict[str, str]) -> Response:
    return _answer(api, request, "actors")


def search_executions(api: Api, request: Request, params: dict[str, str]) -> Response:
    return _answer(api, request, "executions", params["actor_id"])


def search_workers(api: Api, request: Request, params: dict[str, str]) -> Response:
    return _answer(api, request, "workers", params["actor_id"])


def search_logs(api: Api, request: Request, params: dict[str, str]) -> Response:
    api.service.get_execution(params["actor_id"], params["execution_id"])
    return _answer(api, request, "logs", params["actor_id"], params["execution_id"])


route(r"/actors/search/(?P<search_type>[^/]+)", first=True, GET=search_collection)
IMPLICIT_SEARCH.update(
    {
        "list_actors": search_actors,
        "list_executions": search_executions,
        "list_workers": search_workers,
        "get_logs": search_logs,
    }
)
