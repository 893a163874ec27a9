"""Errors that become Abaco's error envelope.

Every refusal the service makes is an ``AbacoError`` carrying the HTTP status and a message that names
the problem (the field, the id). The HTTP layer turns it into ``{message, result: null, status: "error",
version}``; anything else that escapes is a bug and becomes a 500 with a short message, never a hang.
"""

from __future__ import annotations


class AbacoError(Exception):
    """A request the service refuses, with Abaco's status code (400 by default, as in Abaco)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFound(AbacoError):
    """An unknown actor, worker or route (404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class MethodNotAllowed(AbacoError):
    """A known route asked with a method it does not take (405, with the envelope)."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Invalid HTTP method {method} on {path}.", 405)


class Unauthorized(AbacoError):
    """No credentials, or credentials the service does not accept (401)."""

    def __init__(
        self, message: str = "Authentication required: send 'Authorization: Bearer <token>'."
    ) -> None:
        super().__init__(message, 401)


class Forbidden(AbacoError):
    """Credentials that do not reach this resource. Abaco answers 400 here; so do we."""

    def __init__(self, noun: str = "actor") -> None:
        super().__init__(f"Not authorized -- you do not have access to this {noun}.", 400)


class TooLarge(AbacoError):
    """A body over the configured maximum (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body too large: the maximum is {limit} bytes.", 413)


class StoreUnavailable(AbacoError):
    """The database cannot be read or written now: locked by another process (503) or its disk is
    full (507). Nothing was changed; the request can be sent again. Workers retry these with backoff."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message, status)
