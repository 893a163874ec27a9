"""Routes for aliases, nonces and permissions (reference/abaco-api.md §1.3 rows 21-33).

``ROUTES`` match before the core ones (``api.ROUTES``), the alias routes first, so
``/actors/aliases`` is not read as an actor id. Each handler is a few lines over ``Service.access`` (``access_control.Access``). An alias in
place of an actor id on the ``/actors/{actor_id}/...`` routes is resolved before any handler runs
(``Api._dispatch``), so these handlers, like every other, see an actor id.
"""

from __future__ import annotations

from . import guard
from .access_rules import Alias, Nonce, alias_target
from .rest import Call, Response, Route
from .service import Service

_ALIAS = r"/actors/aliases/(?P<alias>[^/]+)"
_ACTOR = r"/actors/(?P<actor_id>[^/]+)"
_NONCE = r"/nonces/(?P<nonce_id>[^/]+)"


def _nonce_view(call: Call, nonce: Nonce) -> dict[str, object]:
    """A nonce's id is the capability: shown to its owner only, never to a nonce or execution token."""
    principal = call.principal
    owner = not principal.limited and principal.user == nonce.owner
    reveal = owner or principal.nonce == nonce.id  # it knows itself
    return nonce.display(call.server, reveal=reveal)


# -- aliases -------------------------------------------------------------------------------------------


def list_aliases(service: Service, call: Call) -> Response:
    every = service.access.list_aliases()
    readable = guard.readable(service, call.caller, "alias", {a.alias: a.owner for a in every})
    aliases = [a.display(call.server) for a in every if readable is None or a.alias in readable]
    return call.ok(aliases, "Aliases retrieved successfully.")


def create_alias(service: Service, call: Call) -> Response:
    body = call.body(allow_empty=False)
    guard.require_actor(service, call.caller, service.access.resolve(alias_target(body)))  # UPDATE on it
    alias = service.access.create_alias(body, call.user)
    return call.ok(alias.display(call.server), "Actor alias created successfully.")


def get_alias(service: Service, call: Call) -> Response:
    alias = service.access.get_alias(call.params["alias"])
    return call.ok(alias.display(call.server), "Alias retrieved successfully.")


def update_alias(service: Service, call: Call) -> Response:
    body = call.body(allow_empty=False)
    guard.require_actor(service, call.caller, service.access.resolve(alias_target(body)))  # the new actor
    alias = service.access.update_alias(call.params["alias"], body)
    return call.ok(alias.display(call.server), "Alias updated successfully.")


def delete_alias(service: Service, call: Call) -> Response:
    service.access.delete_alias(call.params["alias"])
    return call.ok(None, "Alias deleted successfully.")


def list_alias_permissions(service: Service, call: Call) -> Response:
    alias = service.access.get_alias(call.params["alias"])
    result = service.access.permissions("alias", alias.alias, alias.owner)
    return call.ok(result, "Permissions retrieved successfully.", recased=False)


def update_alias_permissions(service: Service, call: Call) -> Response:
    alias = service.access.get_alias(call.params["alias"])
    body = call.body(allow_empty=False)
    result = service.access.grant("alias", alias.alias, alias.owner, body)
    return call.ok(result, "Permission added successfully.", recased=False)


def _live_alias(service: Service, name: str) -> Alias:
    """An alias whose actor still exists: an alias nonce needs both (Abaco checks access to both)."""
    alias = service.access.get_alias(name)
    service.get_actor(alias.actor_id)
    return alias


def list_alias_nonces(service: Service, call: Call) -> Response:
    alias = _live_alias(service, call.params["alias"])
    nonces = [_nonce_view(call, n) for n in service.access.list_nonces(alias=alias.alias)]
    return call.ok(nonces, "Alias nonces retrieved successfully.")


def create_alias_nonce(service: Service, call: Call) -> Response:
    alias = _live_alias(service, call.params["alias"])
    nonce = service.access.create_nonce(call.body(), call.user, actor_id=None, alias=alias.alias)
    return call.ok(_nonce_view(call, nonce), "Alias nonce created successfully.")


def get_alias_nonce(service: Service, call: Call) -> Response:
    alias = _live_alias(service, call.params["alias"])
    nonce = service.access.get_nonce(call.params["nonce_id"], alias=alias.alias)
    return call.ok(_nonce_view(call, nonce), "Alias nonce retrieved successfully.")


def delete_alias_nonce(service: Service, call: Call) -> Response:
    alias = _live_alias(service, call.params["alias"])
    service.access.delete_nonce(call.params["nonce_id"], alias=alias.alias)
    return call.ok(None, "Alias nonce deleted successfully.")


# -- an actor's nonces and permissions -------------------------------------------------------------------


def list_nonces(service: Service, call: Call) -> Response:
    actor = service.get_actor(call.params["actor_id"])
    nonces = [_nonce_view(call, n) for n in service.access.list_nonces(actor_id=actor.id)]
    return call.ok(nonces, "Actor nonces retrieved successfully.")


def create_nonce(service: Service, call: Call) -> Response:
    actor = service.get_actor(call.params["actor_id"])
    nonce = service.access.create_nonce(call.body(), call.user, actor_id=actor.id)
    return call.ok(_nonce_view(call, nonce), "Actor nonce created successfully.")


def get_nonce(service: Service, call: Call) -> Response:
    actor = service.get_actor(call.params["actor_id"])
    nonce = service.access.get_nonce(call.params["nonce_id"], actor_id=actor.id)
    return call.ok(_nonce_view(call, nonce), "Actor nonce retrieved successfully.")


def delete_nonce(service: Service, call: Call) -> Response:
    actor = service.get_actor(call.params["actor_id"])
    service.access.delete_nonce(call.params["nonce_id"], actor_id=actor.id)
    return call.ok(None, "Actor nonce deleted successfully.")


def list_permissions(service: Service, call: Call) -> Response:
    actor = service.get_actor(call.params["actor_id"])
    result = service.access.permissions("actor", actor.id, actor.owner)
    return call.ok(result, "Permissions retrieved successfully.", recased=False)


def update_permissions(service: Service, call: Call) -> Response:
    actor = service.get_actor(call.params["actor_id"])
    body = call.body(allow_empty=False)
    result = service.access.grant("actor", actor.id, actor.owner, body)
    return call.ok(result, "Permission added successfully.", recased=False)


ROUTES = [
    Route("/actors/aliases", GET=list_aliases, POST=create_alias),
    Route(_ALIAS, GET=get_alias, PUT=update_alias, DELETE=delete_alias),
    Route(_ALIAS + "/permissions", GET=list_alias_permissions, POST=update_alias_permissions),
    Route(_ALIAS + "/nonces", GET=list_alias_nonces, POST=create_alias_nonce),
    Route(_ALIAS + _NONCE, GET=get_alias_nonce, DELETE=delete_alias_nonce),
    Route(_ACTOR + "/nonces", GET=list_nonces, POST=create_nonce),
    Route(_ACTOR + _NONCE, GET=get_nonce, DELETE=delete_nonce),
    Route(_ACTOR + "/permissions", GET=list_permissions, POST=update_permissions),
]
