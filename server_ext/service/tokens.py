"""Short-lived tokens scoped to one execution of one actor.

An execution's container gets ``_abaco_access_token`` so it can call the service back (update its
actor's state, send its actor messages). The token is an HMAC over ``actor:execution:expiry`` with a
secret kept in the store, so it survives a service restart (a re-attached container keeps working)
and needs no table; the service also refuses it once the execution has ended.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "abx1."


@dataclass(frozen=True)
class Scope:
    """What a scoped token may touch: its actor, on behalf of its execution."""

    actor_id: str
    execution_id: str
    expires: float


class TokenBook:
    """Issues and checks execution-scoped tokens."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @staticmethod
    def new_secret() -> bytes:
        return secrets.token_bytes(32)

    def _sign(self, body: bytes) -> str:
        return (
            base64.urlsafe_b64encode(hmac.new(self._secret, body, hashlib.sha256).digest())
            .decode()
            .rstrip("=")
        )

    def issue(self, actor_id: str, execution_id: str, expires: float) -> str:
        body = f"{actor_id}:{execution_id}:{int(expires)}".encode()
        encoded = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{PREFIX}{encoded}.{self._sign(body)}"

    def check(self, token: str, now: float) -> Scope | None:
        """The token's scope when it is genuine and unexpired, else None."""
        if not token.startswith(PREFIX):
            return None
        try:
            encoded, signature = token[len(PREFIX) :].split(".", 1)
            body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            actor_id, execution_id, expires = body.decode().split(":")
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        if float(expires) < now:
            return None
        return Scope(actor_id, execution_id, float(expires))
