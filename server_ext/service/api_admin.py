"""Abaco's admin and utilization routes (reference/abaco-api.md §1.3 rows 36-39, checklist item 34).

``ROUTES`` match before the core ones (``api.ROUTES``), so ``/actors/admin`` and ``/actors/utilization`` are not read as actor ids (nor
``/actors/admin/workers`` as an actor's workers). The service is single-user: every holder of the
service token is an admin (Abaco's ``access_control=none``). A nonce or an execution's own token is
never an admin: ``Api._dispatch`` already refuses both here (neither names an actor it could open),
and ``_require_admin`` says so again where the rule belongs.
"""

from __future__ import annotations

from . import admin, guard
from .errors import AbacoError
from .rest import Call, Request, Response, Route
from .service import Service


def _require_admin(request: Request) -> None:
    principal = request.principal
    if principal is None or principal.scope is not None or principal.nonce is not None:
        raise AbacoError("Not authorized -- this route is for admins; send the service token.")
    if not principal.admin:
        raise AbacoError("Not authorized -- this route is for admins.")


def utilization(service: Service, call: Call) -> Response:
    """Always camelCase, as in Abaco (not re-cased by ``?case=``). Any user may ask (as in Abaco); a
    non-admin's counts cover only the actors they may read."""
    if call.principal.limited:
        raise AbacoError("Not authorized -- this route is for users; send your token.")
    readable = guard.readable_actor_ids(service, call.caller)
    if readable is None:
        result = admin.utilization(service.list_actors(), service.all_workers(), service.queued_total())
    else:
        actors = [a for a in service.list_actors() if a.id in readable]
        workers = [w for w in service.all_workers() if w.actor_id in readable]
        result = admin.utilization(actors, workers, sum(service.queue_length(a.id) for a in actors))
    return call.ok(result, "Utilization retrieved successfully.", recased=False)


def admin_actors(service: Service, call: Call) -> Response:
    _require_admin(call.request)
    workers: dict[str, int] = {}
    for w in service.all_workers():
        workers[w.actor_id] = workers.get(w.actor_id, 0) + 1
    executions: dict[str, int] = {}
    for e in service.all_executions():
        executions[e.actor_id] = executions.get(e.actor_id, 0) + 1
    result = [
        admin.admin_actor(
            a.display(call.server),
            workers.get(a.id, 0),
            service.queue_length(a.id),
            executions.get(a.id, 0),
            service.runtime.name,
        )
        for a in service.list_actors()
    ]
    return call.ok(result, "Actors retrieved successfully.")


def admin_workers(service: Service, call: Call) -> Response:
    _require_admin(call.request)
    workers = service.all_workers()
    location = f"{service.runtime.name}://local"
    result = {
        "summary": admin.workers_summary(service.list_actors(), workers),
        "workers": [w.display(location) for w in workers],
    }
    return call.ok(result, "Workers retrieved successfully.")


def admin_executions(service: Service, call: Call) -> Response:
    _require_admin(call.request)
    result = admin.executions_summary(service.list_actors(), service.all_executions())
    return call.ok(result, "Executions retrieved successfully.")


ROUTES = [
    Route("/actors/utilization", GET=utilization),
    Route("/actors/admin", GET=admin_actors),
    Route("/actors/admin/workers", GET=admin_workers),
    Route("/actors/admin/executions", GET=admin_executions),
]
