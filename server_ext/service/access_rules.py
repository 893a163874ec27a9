"""Aliases, nonces and permissions: Abaco's access model as pure decisions (no I/O).

Abaco (reference/abaco-api.md §1.1, §1.3 rows 21-33, §1.9) grants each user a level on each actor
and alias: NONE < READ < EXECUTE < UPDATE, with the user ``ABACO_WORLD`` standing for everyone.
A request needs READ for a GET, EXECUTE for a message POST and UPDATE for anything else. A *nonce*
is a capability for one actor (or alias) at one level, optionally limited in uses, that a client
presents as ``?x-nonce=<id>`` instead of a token. An *alias* is a unique name for an actor, usable
in place of its id on every route.

This module decides — is this alias acceptable, which level does this request need, may this nonce
be redeemed and what does it become — so the rules are tested without a socket; ``access_control`` does
the storing and ``api_access`` the routes.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import AbacoError, Forbidden
from .ids import display_time, is_id
from .models import parse_int, parse_str

TENANT = "LOCAL"  # the single tenant of an embedded service; nonce ids are "<TENANT>_<random>"
NONCE_BYTES = 24  # a nonce id is a bearer capability: 192 random bits (at least 128), never a timestamp
NONE, READ, EXECUTE, UPDATE = "NONE", "READ", "EXECUTE", "UPDATE"
LEVELS = (NONE, READ, EXECUTE, UPDATE)  # in increasing order
ALIAS_NONCE_LEVELS = (NONE, READ, EXECUTE)  # an alias nonce cannot be UPDATE (Abaco §1.3 row 33)
WORLD = "ABACO_WORLD"  # a grant to this user is a grant to everyone
ADMIN_ROLES = ["abaco_admin"]  # what a nonce records as its creator's roles (single user: an admin)

# Abaco's reserved words, plus the literal segments of our own /actors/... routes: an alias named
# "aliases" or "search" could never be reached through /actors/{alias}.
RESERVED_ALIASES = frozenset(
    {"executions", "nonces", "logs", "messages", "adapters", "admin"}
    | {"aliases", "search", "configs", "utilization", "permissions", "workers", "state"}
)
MAX_ALIAS = 128  # the API refuses longer path segments before decoding them
FORBIDDEN_ALIAS_CHARS = frozenset("\\ \":/?#[]@!$&'()*+,;=") | frozenset(string.whitespace)


def parse_level(value: Any, field_name: str = "level", allowed: tuple[str, ...] = LEVELS) -> str:
    """A permission level from a body (any case); 400 naming the field and the choices otherwise."""
    if isinstance(value, str) and value.strip().upper() in allowed:
        return value.strip().upper()
    raise AbacoError(f"Invalid {field_name}: {value!r}; must be one of {', '.join(allowed)}.")


def covers(granted: str, required: str) -> bool:
    """Does ``granted`` include ``required``? (UPDATE covers EXECUTE covers READ covers NONE.)"""
    return LEVELS.index(granted) >= LEVELS.index(required)


def required_level(method: str, path: str) -> str:
    """The level a request needs, as Abaco decides it: GET READ, a message POST EXECUTE, else UPDATE.

    ``path`` is the normalised path. Our long-poll ``POST .../executions/wait`` only reads, so READ."""
    if method in ("GET", "HEAD"):
        return READ
    if method == "POST" and path.endswith("/messages"):
        return EXECUTE
    if method == "POST" and path.endswith("/executions/wait"):
        return READ
    return UPDATE


def effective_level(grants: dict[str, str], user: str) -> str:
    """A user's level from a permission map: their own grant or ABACO_WORLD's, whichever is higher."""
    mine = grants.get(user, NONE)
    world = grants.get(WORLD, NONE)
    return mine if covers(mine, world) else world


def permission_map(owner: str, stored: dict[str, str]) -> dict[str, str]:
    """What ``GET /permissions`` shows: the owner's UPDATE (Abaco grants it at registration), then the
    grants made since, which may change even the owner's level."""
    return {owner: UPDATE, **stored}


def parse_grant(body: dict[str, Any]) -> tuple[str, str]:
    """``POST /permissions {user, level}``. ``level: NONE`` is stored, not deleted (as Abaco)."""
    user = body.get("user")
    if not isinstance(user, str) or not user.strip():
        raise AbacoError("Invalid user: a user name is required (ABACO_WORLD for everyone).")
    if "level" not in body:
        raise AbacoError(f"Invalid level: required; one of {', '.join(LEVELS)}.")
    return user.strip(), parse_level(body["level"])


# -- aliases -------------------------------------------------------------------------------------------


def check_alias(value: Any) -> str:
    """Abaco's alias rules: a non-empty string, not a reserved word, none of the URL-special characters
    (dots are fine), and not decodable as an actor id (an identifier that decodes is always an id)."""
    alias = parse_str(value, "alias") if value is not None else ""
    if not alias:
        raise AbacoError("Invalid alias: an alias is required.")
    if len(alias) > MAX_ALIAS:
        raise AbacoError(f"Invalid alias: at most {MAX_ALIAS} characters.")
    if alias.lower() in RESERVED_ALIASES:
        raise AbacoError(f"Invalid alias: {alias!r} is a reserved word.")
    bad = sorted({c for c in alias if c in FORBIDDEN_ALIAS_CHARS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise AbacoError(f"Invalid alias: {alias!r} contains forbidden characters ({shown}).")
    if is_id(alias):
        raise AbacoError(f"Invalid alias: {alias!r} has the form of an actor id; choose another name.")
    return alias


@dataclass
class Alias:
    """A name for an actor. Deleting the actor keeps the alias (as Abaco); it then answers 404."""

    alias: str
    actor_id: str
    owner: str
    create_time: float = 0.0

    def display(self, api_server: str) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "actor_id": self.actor_id,
            "owner": self.owner,
            "_links": {
                "self": f"{api_server}/actors/aliases/{self.alias}",
                "owner": f"{api_server}/profiles/{self.owner}",
                "actor": f"{api_server}/actors/{self.actor_id}",
            },
        }


def alias_target(body: dict[str, Any]) -> str:
    """The ``actor_id`` (or ``actorId``) of an alias POST or PUT."""
    value = body.get("actor_id", body.get("actorId"))
    if not isinstance(value, str) or not value:
        raise AbacoError("Invalid actor_id: the id of the actor to alias is required.")
    return value


# -- nonces --------------------------------------------------------------------------------------------


@dataclass
class Nonce:
    """A redeemable capability for one actor (``actor_id``) or one alias (``alias``)."""

    id: str
    owner: str
    level: str = EXECUTE
    max_uses: int = -1
    current_uses: int = 0
    remaining_uses: int = -1
    description: str = ""
    actor_id: str | None = None
    alias: str | None = None
    roles: list[str] = field(default_factory=lambda: list(ADMIN_ROLES))
    create_time: float = 0.0
    last_use_time: float | None = None

    @property
    def target(self) -> str:
        """The identifier a request's path must carry: the alias for an alias nonce, else the actor id."""
        return self.alias if self.alias is not None else str(self.actor_id)

    def display(self, api_server: str, *, reveal: bool = True) -> dict[str, Any]:
        """Abaco's Nonce object (§1.9). ``last_use_time`` is the string "None" until the first use, as
        Abaco shows it (Abaco's suite asserts it is truthy). ``reveal``: the id (the capability itself)
        is shown to the nonce's owner only; anyone else sees null."""
        base = f"{api_server}/actors/" + (
            f"aliases/{self.alias}" if self.alias is not None else str(self.actor_id)
        )
        shown_id = self.id if reveal else None
        return {
            "id": shown_id,
            "actor_id": self.actor_id,
            "alias": self.alias,
            "owner": self.owner,
            "roles": list(self.roles),
            "level": self.level,
            "max_uses": self.max_uses,
            "current_uses": self.current_uses,
            "remaining_uses": self.remaining_uses,
            "description": self.description,
            "create_time": display_time(self.create_time),
            "last_use_time": display_time(self.last_use_time) if self.last_use_time is not None else "None",
            "api_server": api_server,
            "_links": {
                "self": f"{base}/nonces/{shown_id}" if reveal else f"{base}/nonces",
                "owner": f"{api_server}/profiles/{self.owner}",
                "actor": base,
            },
        }


def new_nonce(
    body: dict[str, Any], owner: str, t: float, *, actor_id: str | None = None, alias: str | None = None
) -> Nonce:
    """A nonce from a POST body (empty is fine): level default EXECUTE (READ/EXECUTE only for an alias),
    ``max_uses``/``maxUses`` default -1 = unlimited; 0 and anything below -1 are refused."""
    allowed = ALIAS_NONCE_LEVELS if alias is not None else LEVELS
    level = parse_level(body["level"], "level", allowed) if body.get("level") is not None else EXECUTE
    raw_max = body.get("max_uses", body.get("maxUses"))
    max_uses = -1 if raw_max is None else parse_int(raw_max, "max_uses")
    if max_uses == 0 or max_uses < -1:
        raise AbacoError(f"Invalid max_uses: {max_uses}; use a positive number, or -1 for unlimited.")
    description = body.get("description") or ""
    return Nonce(
        id=f"{TENANT}_{secrets.token_urlsafe(NONCE_BYTES)}",
        owner=owner,
        level=level,
        max_uses=max_uses,
        remaining_uses=max_uses,
        description=parse_str(description, "description"),
        actor_id=actor_id,
        alias=alias,
        create_time=t,
    )


class NonceRefused(AbacoError):
    """A nonce that exists but cannot be used for this request (Abaco answers 400)."""


NONCE_NOT_FOUND = "Nonce not found."


def redeem(nonce: Nonce, identifier: str, level: str, t: float) -> Nonce:
    """Use the nonce once for a request on ``identifier`` (the actor id or alias in the path) that
    needs ``level``: the nonce after the use, or a refusal. The store calls this inside the transaction
    that writes the result, so two concurrent uses of the last remaining one cannot both succeed."""
    if identifier != nonce.target:
        raise Forbidden("alias" if nonce.alias is not None else "actor")
    if not covers(nonce.level, level):
        raise NonceRefused(
            f"Not authorized -- this nonce has level {nonce.level}; this request needs {level}."
        )
    if nonce.remaining_uses == 0:
        raise NonceRefused("Not authorized -- no remaining uses left for this nonce.")
    return replace(
        nonce,
        current_uses=nonce.current_uses + 1,
        remaining_uses=nonce.remaining_uses - 1 if nonce.remaining_uses > 0 else nonce.remaining_uses,
        last_use_time=t,
    )
