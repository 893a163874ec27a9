"""Abaco's admin and utilization routes (reference/abaco-api.md §1.3 rows 36-39, checklist item 34).

Registered ``first`` so ``/actors/admin`` and ``/actors/utilization`` are not read as actor ids (nor
``/actors/admin/workers`` as an actor's workers). The service is single-user: every holder of the
service token is an admin (Abaco's ``access_control=none``). A nonce or an execution's own token is
never an admin: ``Api._dispatch`` already refuses both here (neither names an actor it could open),
and ``_require_admin`` says so again where the rule belongs.
"""

from __future__ import annotations

from . import admin
from .api import Api, Request, Response, envelope, route
from .errors import AbacoError


def _require_admin(request: Request) -> None:
    principal = request.principal
    if principal is None or principal.scope is not None or principal.nonce is not None:
        raise AbacoError("Not authorized -- this route is for admins; send the service token.")


def utilization(api: Api, request: Request, params: dict[str, str]) -> Response:
    """Always camelCase, as in Abaco (not re-cased by ``?case=``)."""
    _require_admin(request)
    store = api.service.store
    result = admin.utilization(store.list_actors(), store.list_workers(), store.stats()["queued"])
    return Response(200, envelope(result, "Utilization retrieved successfully."))


def admin_actors(api: Api, request: Request, params: dict[str, str]) -> Response:
    _require_admin(request)
    store = api.service.store
    workers: dict[str, int] = {}
    for w in store.list_workers():
        workers[w.actor_id] = workers.get(w.actor_id, 0) + 1
    executions: dict[str, int] = {}
    for e in store.all_executions():
        executions[e.actor_id] = executions.get(e.actor_id, 0) + 1
    result = [
        admin.admin_actor(
            api._actor_view(request, a),
            workers.get(a.id, 0),
            store.queue_length(a.id),
            executions.get(a.id, 0),
            api.service.runtime.name,
        )  # fmt: skip
        for a in store.list_actors()
    ]
    return api._ok(request, result, "Actors retrieved successfully.")


def admin_workers(api: Api, request: Request, params: dict[str, str]) -> Response:
    _require_admin(request)
    store = api.service.store
    workers = store.list_workers()
    location = f"{api.service.runtime.name}://local"
    result = {
        "summary": admin.workers_summary(store.list_actors(), workers),
        "workers": [w.display(location) for w in workers],
    }
    return api._ok(request, result, "Workers retrieved successfully.")


def admin_executions(api: Api, request: Request, params: dict[str, str]) -> Response:
    _require_admin(request)
    store = api.service.store
    result = admin.executions_summary(store.list_actors(), store.all_executions())
    return api._ok(request, result, "Executions retrieved successfully.")


route("/actors/utilization", first=True, GET=utilization)
route("/actors/admin", first=True, GET=admin_actors)
route("/actors/admin/workers", first=True, GET=admin_workers)
route("/actors/admin/executions", first=True, GET=admin_executions)
