"""Enforcing the permission model on each request: ``permissions`` decides, this reads the grants.

``Api._dispatch`` calls ``authorize`` for every operation once the caller is known and aliases are
resolved; list and search handlers call ``readable_actor_ids`` to show only what the caller may see.
An object the path names that does not exist is left to the handler (its usual 404).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import permissions
from .access_rules import UPDATE
from .permissions import Caller

if TYPE_CHECKING:
    from .service import Service


def authorize(
    service: Service, caller: Caller, operation: str, params: dict[str, str], method: str, path: str
) -> None:
    """Refuse (Abaco's 400 ``Not authorized``) an operation the caller's level does not cover."""
    if caller.admin:
        return
    rule = permissions.rule_for(operation)
    if rule.on == "admin":
        permissions.check_admin(caller)
        return
    required = permissions.needed(rule, method, path)
    store = service.store
    if rule.on == "actor" and params.get("actor_id"):
        actor = store.get_actor(params["actor_id"])
        if actor is not None:
            grants = store.get_permissions("actor", actor.id)
            permissions.check(caller, actor.owner, grants, required, "actor")
    elif rule.on in ("alias", "alias+actor") and params.get("alias"):
        alias = store.get_alias(params["alias"])
        if alias is None:
            return
        alias_grants = store.get_permissions("alias", alias.alias)
        noun = "alias" if rule.on == "alias" else "alias and actor"
        permissions.check(caller, alias.owner, alias_grants, required, noun)
        actor = store.get_actor(alias.actor_id) if rule.on == "alias+actor" else None
        if actor is not None:
            grants = store.get_permissions("actor", actor.id)
            permissions.check(caller, actor.owner, grants, required, noun)
    elif rule.on == "config" and params.get("name"):
        config = store.get_config(params["name"])
        if config is not None:
            grants = store.get_permissions("config", config.name)
            permissions.check(caller, config.owner, grants, required, "config")


def require_actor(service: Service, caller: Caller, actor_id: str, required: str = UPDATE) -> None:
    """What a body names (an alias's target): the caller needs ``required`` on that actor too."""
    if caller.admin:
        return
    actor = service.store.get_actor(actor_id)
    if actor is not None:
        grants = service.store.get_permissions("actor", actor.id)
        permissions.check(caller, actor.owner, grants, required, "actor")


def readable_actor_ids(service: Service, caller: Caller) -> set[str] | None:
    """The actors the caller may read; None for an admin (all of them)."""
    if caller.admin:
        return None
    owners = {a.id: a.owner for a in service.store.list_actors()}
    return permissions.visible(caller, owners, service.store.all_permissions("actor"))


def readable(service: Service, caller: Caller, kind: str, owners: dict[str, str]) -> set[str] | None:
    """Of these aliases or configs (name -> owner), the ones the caller may read; None: all."""
    if caller.admin:
        return None
    return permissions.visible(caller, owners, service.store.all_permissions(kind))
