"""Routes for aliases, nonces and permissions (reference/abaco-api.md §1.3 rows 21-33).

Registered with ``api.route``; the alias routes come first so ``/actors/aliases`` is not read as an
actor id. Each handler is a few lines over ``Service.access`` (``access_control.Access``). An alias in
place of an actor id on the ``/actors/{actor_id}/...`` routes is resolved before any handler runs
(``Api._dispatch``), so these handlers, like every other, see an actor id.
"""

from __future__ import annotations

from .access_rules import Alias, Nonce
from .api import Api, Request, Response, envelope, route

_ALIAS = r"/actors/aliases/(?P<alias>[^/]+)"
_ACTOR = r"/actors/(?P<actor_id>[^/]+)"
_NONCE = r"/nonces/(?P<nonce_id>[^/]+)"


def _alias_view(api: Api, request: Request, alias: Alias) -> dict[str, object]:
    return alias.display(api._api_server(request))


def _nonce_view(api: Api, request: Request, nonce: Nonce) -> dict[str, object]:
    """A nonce's id is the capability: shown to its owner only, never to a nonce or execution token."""
    principal = request.principal
    owner = principal is not None and not principal.limited and principal.user == nonce.owner
    reveal = owner or (principal is not None and principal.nonce == nonce.id)  # it knows itself
    return nonce.display(api._api_server(request), reveal=reveal)


def _permissions(result: dict[str, str], message: str) -> Response:
    """A ``{user: LEVEL}`` map: user names are data, never re-cased for ``?case=camel``."""
    return Response(200, envelope(result, message))


# -- aliases -------------------------------------------------------------------------------------------


def list_aliases(api: Api, request: Request, params: dict[str, str]) -> Response:
    aliases = [_alias_view(api, request, a) for a in api.service.access.list_aliases()]
    return api._ok(request, aliases, "Aliases retrieved successfully.")


def create_alias(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = api.service.access.create_alias(api._body(request, allow_empty=False), api._user(request))
    return api._ok(request, _alias_view(api, request, alias), "Actor alias created successfully.")


def get_alias(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = api.service.access.get_alias(params["alias"])
    return api._ok(request, _alias_view(api, request, alias), "Alias retrieved successfully.")


def update_alias(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = api.service.access.update_alias(params["alias"], api._body(request, allow_empty=False))
    return api._ok(request, _alias_view(api, request, alias), "Alias updated successfully.")


def delete_alias(api: Api, request: Request, params: dict[str, str]) -> Response:
    api.service.access.delete_alias(params["alias"])
    return api._ok(request, None, "Alias deleted successfully.")


def list_alias_permissions(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = api.service.access.get_alias(params["alias"])
    result = api.service.access.permissions("alias", alias.alias, alias.owner)
    return _permissions(result, "Permissions retrieved successfully.")


def update_alias_permissions(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = api.service.access.get_alias(params["alias"])
    body = api._body(request, allow_empty=False)
    result = api.service.access.grant("alias", alias.alias, alias.owner, body)
    return _permissions(result, "Permission added successfully.")


def _live_alias(api: Api, name: str) -> Alias:
    """An alias whose actor still exists: an alias nonce needs both (Abaco checks access to both)."""
    alias = api.service.access.get_alias(name)
    api.service.get_actor(alias.actor_id)
    return alias


def list_alias_nonces(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = _live_alias(api, params["alias"])
    nonces = [_nonce_view(api, request, n) for n in api.service.access.list_nonces(alias=alias.alias)]
    return api._ok(request, nonces, "Alias nonces retrieved successfully.")


def create_alias_nonce(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = _live_alias(api, params["alias"])
    nonce = api.service.access.create_nonce(
        api._body(request), api._user(request), actor_id=None, alias=alias.alias
    )
    return api._ok(request, _nonce_view(api, request, nonce), "Alias nonce created successfully.")


def get_alias_nonce(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = _live_alias(api, params["alias"])
    nonce = api.service.access.get_nonce(params["nonce_id"], alias=alias.alias)
    return api._ok(request, _nonce_view(api, request, nonce), "Alias nonce retrieved successfully.")


def delete_alias_nonce(api: Api, request: Request, params: dict[str, str]) -> Response:
    alias = _live_alias(api, params["alias"])
    api.service.access.delete_nonce(params["nonce_id"], alias=alias.alias)
    return api._ok(request, None, "Alias nonce deleted successfully.")


# -- an actor's nonces and permissions -------------------------------------------------------------------


def list_nonces(api: Api, request: Request, params: dict[str, str]) -> Response:
    actor = api.service.get_actor(params["actor_id"])
    nonces = [_nonce_view(api, request, n) for n in api.service.access.list_nonces(actor_id=actor.id)]
    return api._ok(request, nonces, "Actor nonces retrieved successfully.")


def create_nonce(api: Api, request: Request, params: dict[str, str]) -> Response:
    actor = api.service.get_actor(params["actor_id"])
    nonce = api.service.access.create_nonce(api._body(request), api._user(request), actor_id=actor.id)
    return api._ok(request, _nonce_view(api, request, nonce), "Actor nonce created successfully.")


def get_nonce(api: Api, request: Request, params: dict[str, str]) -> Response:
    actor = api.service.get_actor(params["actor_id"])
    nonce = api.service.access.get_nonce(params["nonce_id"], actor_id=actor.id)
    return api._ok(request, _nonce_view(api, request, nonce), "Actor nonce retrieved successfully.")


def delete_nonce(api: Api, request: Request, params: dict[str, str]) -> Response:
    actor = api.service.get_actor(params["actor_id"])
    api.service.access.delete_nonce(params["nonce_id"], actor_id=actor.id)
    return api._ok(request, None, "Actor nonce deleted successfully.")


def list_permissions(api: Api, request: Request, params: dict[str, str]) -> Response:
    actor = api.service.get_actor(params["actor_id"])
    result = api.service.access.permissions("actor", actor.id, actor.owner)
    return _permissions(result, "Permissions retrieved successfully.")


def update_permissions(api: Api, request: Request, params: dict[str, str]) -> Response:
    actor = api.service.get_actor(params["actor_id"])
    body = api._body(request, allow_empty=False)
    result = api.service.access.grant("actor", actor.id, actor.owner, body)
    return _permissions(result, "Permission added successfully.")


route("/actors/aliases", first=True, GET=list_aliases, POST=create_alias)
route(_ALIAS, first=True, GET=get_alias, PUT=update_alias, DELETE=delete_alias)
route(_ALIAS + "/permissions", first=True, GET=list_alias_permissions, POST=update_alias_permissions)
route(_ALIAS + "/nonces", first=True, GET=list_alias_nonces, POST=create_alias_nonce)
route(_ALIAS + _NONCE, first=True, GET=get_alias_nonce, DELETE=delete_alias_nonce)
route(_ACTOR + "/nonces", GET=list_nonces, POST=create_nonce)
route(_ACTOR + _NONCE, GET=get_nonce, DELETE=delete_nonce)
route(_ACTOR + "/permissions", GET=list_permissions, POST=update_permissions)
