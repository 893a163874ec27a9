"""The operations on aliases, nonces and permissions: ``access_rules`` decides, the ``Store`` keeps.

``Service.access`` is one of these. Besides the CRUD behind the routes of ``api_access`` it offers the
two things every request goes through (``Api._dispatch``): ``resolve`` (an alias in place of an actor
id) and ``redeem`` (a ``?x-nonce=`` use, checked and counted in one transaction).
"""

from __future__ import annotations

from typing import Any

from . import access_rules
from .access_rules import NONCE_NOT_FOUND, Alias, Nonce
from .errors import AbacoError, Forbidden, NotFound
from .ids import is_id, now
from .store import Store


class Access:
    """Aliases, nonces and permissions of one service."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- every request ------------------------------------------------------------------------------

    def resolve(self, identifier: str) -> str:
        """The actor id for an actor id or an alias. An identifier that is neither is returned as it is,
        so the route answers its usual 404 for an unknown actor. An alias whose actor was deleted (Abaco
        keeps such aliases) is a 404 that says so."""
        if is_id(identifier):
            return identifier
        alias = self.store.get_alias(identifier)
        if alias is None:
            return identifier
        if self.store.get_actor(alias.actor_id) is None:
            raise NotFound(
                f"Alias {identifier} points at actor {alias.actor_id}, which no longer exists; point it at "
                f"another actor (PUT /actors/aliases/{identifier}) or delete it."
            )
        return alias.actor_id

    def nonce_owner(self, nonce_id: str) -> str | None:
        """Who a nonce acts as (None for an unknown nonce, which ``redeem`` then refuses)."""
        nonce = self.store.get_nonce(nonce_id)
        return nonce.owner if nonce is not None else None

    def redeem(self, nonce_id: str, identifier: str | None, level: str) -> Nonce:
        """Use ``nonce_id`` once for a request on ``identifier`` (the actor id or alias in the path; None
        for routes with neither, which no nonce opens) needing ``level``. An unknown nonce is Abaco's
        400 ``Nonce not found.``, whether or not the actor exists."""
        if identifier is None:
            if self.store.get_nonce(nonce_id) is None:
                raise AbacoError(NONCE_NOT_FOUND)
            raise Forbidden("actor")
        t = now()
        used = self.store.redeem_nonce(nonce_id, lambda n: access_rules.redeem(n, identifier, level, t))
        if used is None:
            raise AbacoError(NONCE_NOT_FOUND)
        return used

    # -- aliases ------------------------------------------------------------------------------------

    def _actor_exists(self, actor_id: str) -> None:
        if self.store.get_actor(actor_id) is None:
            raise NotFound(f"No actor found with id: {actor_id}.")

    def create_alias(self, body: dict[str, Any], owner: str) -> Alias:
        name = access_rules.check_alias(body.get("alias"))
        actor_id = access_rules.alias_target(body)
        self._actor_exists(actor_id)
        alias = Alias(alias=name, actor_id=actor_id, owner=owner, create_time=now())
        if not self.store.add_alias(alias):
            raise AbacoError(f"Alias {name} already exists.")
        return alias

    def get_alias(self, name: str) -> Alias:
        alias = self.store.get_alias(name)
        if alias is None:
            raise NotFound(f"No alias found: {name}.")
        return alias

    def list_aliases(self) -> list[Alias]:
        return self.store.list_aliases()

    def update_alias(self, name: str, body: dict[str, Any]) -> Alias:
        """PUT re-points the alias; the name itself cannot change (Abaco forbids the field)."""
        alias = self.get_alias(name)
        if body.get("alias") not in (None, name):
            raise AbacoError(
                "Invalid alias: the alias itself cannot be updated; delete it and create another."
            )
        actor_id = access_rules.alias_target(body)
        self._actor_exists(actor_id)
        alias.actor_id = actor_id
        self.store.put_alias(alias)
        return alias

    def delete_alias(self, name: str) -> None:
        if not self.store.delete_alias(name):
            raise NotFound(f"No alias found: {name}.")

    # -- nonces -------------------------------------------------------------------------------------

    def create_nonce(
        self, body: dict[str, Any], owner: str, *, actor_id: str | None = None, alias: str | None = None
    ) -> Nonce:
        nonce = access_rules.new_nonce(body, owner, now(), actor_id=actor_id, alias=alias)
        self.store.add_nonce(nonce)
        return nonce

    def list_nonces(self, *, actor_id: str | None = None, alias: str | None = None) -> list[Nonce]:
        return self.store.list_nonces(actor_id=actor_id, alias=alias)

    def get_nonce(self, nonce_id: str, *, actor_id: str | None = None, alias: str | None = None) -> Nonce:
        """The nonce, when it belongs to this actor (or alias); else 400 ``Nonce not found.``."""
        nonce = self.store.get_nonce(nonce_id)
        if nonce is None or nonce.alias != alias or (alias is None and nonce.actor_id != actor_id):
            raise AbacoError(NONCE_NOT_FOUND)
        return nonce

    def delete_nonce(self, nonce_id: str, *, actor_id: str | None = None, alias: str | None = None) -> None:
        self.get_nonce(nonce_id, actor_id=actor_id, alias=alias)
        self.store.delete_nonce(nonce_id)

    # -- permissions --------------------------------------------------------------------------------

    def permissions(self, kind: str, target: str, owner: str) -> dict[str, str]:
        return access_rules.permission_map(owner, self.store.get_permissions(kind, target))

    def grant(self, kind: str, target: str, owner: str, body: dict[str, Any]) -> dict[str, str]:
        user, level = access_rules.parse_grant(body)
        self.store.set_permission(kind, target, user, level)
        return self.permissions(kind, target, owner)
