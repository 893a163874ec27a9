"""Users of a multi-user service: who they are, and their API tokens, stored hashed (pure; no I/O).

Standalone multi-user mode (``abaco-nb serve --users``) knows users an admin created with
``abaco-nb users add NAME [--admin]``; each gets a random token, shown once and stored only as its
SHA-256. A token is 256 random bits, not a password someone chose, so a fast hash is the right one
(as for GitHub's or JupyterHub's API tokens): nothing can be guessed, and lookup is one indexed read.
Behind JupyterHub the Hub knows the users; the service records the ones it has seen (``source="hub"``,
no token) so a nonce's owner or an execution's sender can be told admin or not after the request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from .errors import AbacoError

TOKEN_PREFIX = "abu1_"  # tells a user token from the service token or an execution's token
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
RESERVED_NAMES = frozenset({"ABACO_WORLD", "cron", "Abaco Event"})


@dataclass
class User:
    """One user. ``token_hash``: SHA-256 hex of their token (None for a Hub user)."""

    name: str
    admin: bool = False
    token_hash: str | None = None
    source: str = "local"  # local (abaco-nb users add) | hub (seen through JupyterHub)
    create_time: float = 0.0

    def display(self) -> dict[str, object]:
        """What ``abaco-nb users list`` prints: never the hash."""
        return {"name": self.name, "admin": self.admin, "source": self.source}


def check_name(value: str) -> str:
    """A user name: letters, digits and ``._@-``, up to 64 characters, not one Abaco reserves."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise AbacoError(
            f"Invalid user name: {value!r}; use letters, digits and . _ @ - (up to 64 characters)."
        )
    if value in RESERVED_NAMES:
        raise AbacoError(f"Invalid user name: {value!r} is reserved by Abaco.")
    return value


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
