"""Who may do what, per user: Abaco's permission model as pure decisions (no store, no HTTP).

Abaco (reference/abaco-api.md §1.3, checklist 24-26) gives each user a level on each actor, alias and
config: NONE < READ < EXECUTE < UPDATE. The owner holds UPDATE (a later grant may change even that),
a grant to ``ABACO_WORLD`` is a grant to everyone, and an admin passes every check. Without READ an
object is invisible: lists and searches leave it out, and every route on it answers Abaco's 400
``Not authorized -- you do not have access to this actor.``

The rules per operation live in ``RULES``: which object the path names (``actor``, ``alias``, both,
``admin`` only, or none) and, when the request's method alone does not say it, the level it needs.
``guard`` applies them with the store's grants; single-user modes pass every check because their one
caller is an admin (Abaco's ``access_control=none``), so nothing changes for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .access_rules import EXECUTE, NONE, READ, UPDATE, covers, effective_level, permission_map, required_level
from .errors import AbacoError, Forbidden

ADMIN = "ADMIN"  # a requirement no level meets: admins only


@dataclass(frozen=True)
class Caller:
    """The person a request acts for: a user name and whether they are an Abaco admin."""

    user: str
    admin: bool = False


@dataclass(frozen=True)
class Rule:
    """What an operation needs. ``on``: ``actor`` (the path's actor), ``alias`` (the path's alias),
    ``alias+actor`` (both: alias nonces), ``config``, ``admin`` (admins only) or ``none`` (any user;
    the handler filters or checks what the body names). ``level``: None = Abaco's rule by method."""

    on: str
    level: str | None = None


# Operations not listed act on the path's actor with Abaco's method rule (GET READ, a message POST
# EXECUTE, anything else UPDATE): every ``/actors/{id}/...`` route of api.py and api_access.py.
RULES: dict[str, Rule] = {
    "list_actors": Rule("none"),
    "register": Rule("none"),
    "add_workers": Rule("admin"),  # Abaco: POST /workers is admin only
    "list_aliases": Rule("none"),
    "create_alias": Rule("none"),  # UPDATE on the actor the body names: checked by the handler
    "get_alias": Rule("alias", READ),
    "update_alias": Rule("alias", UPDATE),  # and UPDATE on the new actor: checked by the handler
    "delete_alias": Rule("alias", UPDATE),
    "list_alias_permissions": Rule("alias", READ),
    "update_alias_permissions": Rule("alias", UPDATE),
    "list_alias_nonces": Rule("alias+actor", READ),
    "create_alias_nonce": Rule("alias+actor", UPDATE),
    "get_alias_nonce": Rule("alias+actor", READ),
    "delete_alias_nonce": Rule("alias+actor", UPDATE),
    "list_configs": Rule("none"),
    "create_config": Rule("none"),
    "get_config": Rule("config", READ),
    "update_config": Rule("config", UPDATE),
    "delete_config": Rule("config", UPDATE),
    "list_config_permissions": Rule("config", READ),
    "update_config_permissions": Rule("config", UPDATE),
    "search_collection": Rule("none"),  # filtered to readable actors
    "utilization": Rule("none"),  # counted over readable actors for a non-admin
    "admin_actors": Rule("admin"),
    "admin_workers": Rule("admin"),
    "admin_executions": Rule("admin"),
}


def rule_for(operation: str) -> Rule:
    return RULES.get(operation, Rule("actor"))


def needed(rule: Rule, method: str, path: str) -> str:
    """The level an operation needs: the rule's own, else Abaco's by method and path."""
    return rule.level if rule.level is not None else required_level(method, path)


def level_of(caller: Caller, owner: str, grants: Mapping[str, str]) -> str:
    """The caller's level on an object with this owner and these stored grants. Admins hold UPDATE."""
    if caller.admin:
        return UPDATE
    return effective_level(permission_map(owner, dict(grants)), caller.user)


def check(caller: Caller, owner: str, grants: Mapping[str, str], required: str, noun: str) -> str:
    """The caller's level when it covers ``required``; else Abaco's 400 ``Not authorized``."""
    if required == ADMIN:
        return check_admin(caller)
    level = level_of(caller, owner, grants)
    if not covers(level, required):
        raise Forbidden(noun)
    return level


def check_admin(caller: Caller) -> str:
    if not caller.admin:
        raise AbacoError("Not authorized -- this route is for admins.")
    return UPDATE


def can_read(caller: Caller, owner: str, grants: Mapping[str, str]) -> bool:
    """Visible in lists and searches: READ or better."""
    return covers(level_of(caller, owner, grants), READ)


def visible(caller: Caller, owners: Mapping[str, str], grants: Mapping[str, Mapping[str, str]]) -> set[str]:
    """The ids (of ``owners``: id -> owner) the caller may read, given every object's grants."""
    return {i for i, owner in owners.items() if can_read(caller, owner, grants.get(i, {}))}


def nonce_level(nonce_level_: str, owner_level: str) -> str:
    """A nonce acts as its owner at the nonce's level: never more than either."""
    return nonce_level_ if covers(owner_level, nonce_level_) else owner_level


def may_register_privileged(caller: Caller, privileged_users: Iterable[str]) -> bool:
    """Who may register privileged (and ``local:``) actors in multi-user mode: admins and the users
    the deployment names (``--privileged-users``; Abaco's ``abaco_privileged`` role)."""
    return caller.admin or caller.user in set(privileged_users)


__all__ = [
    "ADMIN",
    "EXECUTE",
    "NONE",
    "READ",
    "UPDATE",
    "Caller",
    "Rule",
    "RULES",
    "can_read",
    "check",
    "check_admin",
    "level_of",
    "may_register_privileged",
    "needed",
    "nonce_level",
    "rule_for",
    "visible",
]
