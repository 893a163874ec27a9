"""The operations on actor configs: ``actor_config_rules`` decides, this encrypts and stores.

``Service.configs`` is one of these. Secrets are encrypted with Fernet (AES-128-CBC + HMAC-SHA256,
from ``cryptography``) under a key kept in the store's meta table next to the token secret, so they
survive a restart. That protects a secret from the API (``GET`` returns the ciphertext, as Abaco does)
and from a dump of the config rows, not from someone holding the whole database file (0600), just as
Abaco's key sits in its own configuration file.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from . import access_rules, actor_config_rules
from .actor_config_rules import ActorConfig, ConfigInput
from .errors import AbacoError, NotFound
from .ids import now
from .store import Store

log = logging.getLogger("abaco_nb.service")
KEY_META = "config_fernet_key"


class ActorConfigs:
    """Actor configs of one service, and what each execution of an actor gets from them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        key = store.get_meta(KEY_META)
        if key is None:
            key = Fernet.generate_key().decode()
            store.set_meta(KEY_META, key)
        self._fernet = Fernet(key.encode())

    # -- encryption ---------------------------------------------------------------------------------

    def _stored_value(self, config: ConfigInput) -> Any:
        if not config.is_secret:
            return config.value
        return self._fernet.encrypt(json.dumps(config.value).encode()).decode()

    def _plain_value(self, config: ActorConfig) -> Any:
        if not config.is_secret:
            return config.value
        return json.loads(self._fernet.decrypt(str(config.value).encode()))

    # -- CRUD ---------------------------------------------------------------------------------------

    def _check_actors(self, identifiers: list[str]) -> None:
        """Each listed actor must exist, as an id or as an alias of an existing actor; else 404."""
        for ident in identifiers:
            if self.store.get_actor(ident) is not None:
                continue
            alias = self.store.get_alias(ident)
            if alias is None or self.store.get_actor(alias.actor_id) is None:
                raise NotFound(f"Invalid actors: no actor or alias found: {ident}.")

    def create(self, body: dict[str, Any], owner: str) -> ActorConfig:
        parsed = actor_config_rules.parse_config(body)
        self._check_actors(parsed.actors)
        t = now()
        config = ActorConfig(
            name=parsed.name,
            value=self._stored_value(parsed),
            is_secret=parsed.is_secret,
            actors=parsed.actors_text,
            owner=owner,
            create_time=t,
            last_update_time=t,
        )
        if not self.store.add_config(config):
            raise AbacoError(f"Config {parsed.name} already exists.")
        return config

    def get(self, name: str) -> ActorConfig:
        config = self.store.get_config(name)
        if config is None:
            raise NotFound(f"No config found: {name}.")
        return config

    def list(self) -> list[ActorConfig]:
        return self.store.list_configs()

    def update(self, name: str, body: dict[str, Any]) -> ActorConfig:
        """PUT: full replacement of value, is_secret and actors; name and owner are kept."""
        config = self.get(name)
        parsed = actor_config_rules.parse_config(body, name=name)
        self._check_actors(parsed.actors)
        config.value, config.is_secret = self._stored_value(parsed), parsed.is_secret
        config.actors, config.last_update_time = parsed.actors_text, now()
        self.store.put_config(config)
        return config

    def delete(self, name: str) -> None:
        if not self.store.delete_config(name):
            raise NotFound(f"No config found: {name}.")

    def permissions(self, name: str) -> dict[str, str]:
        config = self.get(name)
        return access_rules.permission_map(config.owner, self.store.get_permissions("config", name))

    def grant(self, name: str, body: dict[str, Any]) -> dict[str, str]:
        self.get(name)
        user, level = access_rules.parse_grant(body)
        self.store.set_permission("config", name, user, level)
        return self.permissions(name)

    # -- executions ---------------------------------------------------------------------------------

    def values_for(self, actor_id: str) -> dict[str, Any]:
        """``{name: value}`` of every config listing the actor or one of its aliases, secrets decrypted:
        what the dispatcher hands to ``engine.execution_environment``."""
        aliases = [a.alias for a in self.store.list_aliases() if a.actor_id == actor_id]
        values: dict[str, Any] = {}
        for config in self.store.list_configs():
            if not actor_config_rules.applies_to(config, actor_id, aliases):
                continue
            try:
                values[config.name] = self._plain_value(config)
            except (InvalidToken, ValueError):
                log.error("config %s: its secret cannot be decrypted; left out of the execution", config.name)
        return values
