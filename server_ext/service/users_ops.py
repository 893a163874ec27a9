"""The users of one service: ``users`` decides, the ``Store`` keeps.

``Service.users`` is one of these. In a single-user service (the default) every caller is the one
user and an admin, exactly as before; with ``ServiceConfig.multi_user`` the service knows who is who:
users created by ``abaco-nb users add`` (their hashed tokens), or JupyterHub users recorded as the
Hub vouches for them.
"""

from __future__ import annotations

import threading

from . import permissions, users
from .errors import AbacoError, NotFound
from .ids import now
from .permissions import Caller
from .settings import ServiceConfig
from .store import Store
from .users import User


class Users:
    """Who is an admin, whose token is this, and the admin command's add/list/remove."""

    def __init__(self, store: Store, config: ServiceConfig) -> None:
        self.store = store
        self.config = config
        self._seen: dict[str, bool] = {}  # Hub users already recorded, with their admin flag
        self._lock = threading.Lock()

    @property
    def multi_user(self) -> bool:
        return self.config.multi_user

    def caller(self, name: str) -> Caller:
        """The Caller for a user name. Single-user: always an admin (Abaco's access_control=none)."""
        if not self.multi_user:
            return Caller(name, admin=True)
        user = self.store.get_user(name)
        return Caller(name, admin=bool(user and user.admin))

    def may_register_privileged(self, caller: Caller) -> bool:
        return permissions.may_register_privileged(caller, self.config.privileged_users)

    # -- the admin command --------------------------------------------------------------------------

    def add(self, name: str, admin: bool = False) -> str:
        """Create a user; returns their token (shown once: only its hash is kept)."""
        users.check_name(name)
        if self.store.get_user(name) is not None:
            raise AbacoError(f"User {name} already exists; remove it first to issue a new token.")
        token = users.new_token()
        self.store.put_user(User(name, admin, users.hash_token(token), "local", now()))
        return token

    def list(self) -> list[User]:
        return self.store.list_users()

    def remove(self, name: str) -> None:
        """Remove a user and so their token. Their actors stay, owned by the name (as Abaco keeps a
        deleted account's actors); an admin can delete or re-share them."""
        if not self.store.delete_user(name):
            raise NotFound(f"No user named {name}.")

    # -- requests -----------------------------------------------------------------------------------

    def for_token(self, token: str) -> User | None:
        """The local user a token belongs to (only when the service is multi-user)."""
        if not self.multi_user or not token.startswith(users.TOKEN_PREFIX):
            return None
        return self.store.user_for_token_hash(users.hash_token(token))

    def seen(self, name: str, admin: bool) -> None:
        """Record a user the Hub vouched for, so later decisions about them (their nonces, their
        executions' tokens) know whether they are an admin. Written only when something changed."""
        with self._lock:
            if self._seen.get(name) == admin:
                return
            self._seen[name] = admin
        existing = self.store.get_user(name)
        if existing is None or existing.admin != admin:
            self.store.put_user(User(name, admin, None, "hub", existing.create_time if existing else now()))
