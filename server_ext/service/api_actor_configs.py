"""Routes for actor configs (reference/abaco-api.md §1.3 row 34, checklist item 32).

``ROUTES`` match before the core ones (``api.ROUTES``), so ``/actors/configs`` is not read as an
actor id. Each handler is a few lines
over ``Service.configs`` (``actor_configs.ActorConfigs``). Results are ``{name, value, is_secret, actors}``;
``value`` is user data, never re-cased, and a secret's is its ciphertext, as in Abaco.
"""

from __future__ import annotations

from typing import Any

from . import guard
from .actor_config_rules import ActorConfig
from .rest import Call, Response, Route, recase
from .service import Service

_CONFIG = r"/actors/configs/(?P<name>[^/]+)"


def _view(call: Call, config: ActorConfig) -> dict[str, Any]:
    """Re-cased for ``?case=camel`` except ``value``: user data that re-casing must not touch."""
    shown = config.display()
    value = shown.pop("value")
    return {**recase(shown, call.camel()), "value": value}


def list_configs(service: Service, call: Call) -> Response:
    every = service.configs.list()
    readable = guard.readable(service, call.caller, "config", {c.name: c.owner for c in every})
    result = [_view(call, c) for c in every if readable is None or c.name in readable]
    return call.ok(result, "Configs retrieved successfully.", recased=False)


def create_config(service: Service, call: Call) -> Response:
    config = service.configs.create(call.body(allow_empty=False), call.user)
    return call.ok(_view(call, config), "Config created successfully.", recased=False)


def get_config(service: Service, call: Call) -> Response:
    config = service.configs.get(call.params["name"])
    return call.ok(_view(call, config), "Config retrieved successfully.", recased=False)


def update_config(service: Service, call: Call) -> Response:
    config = service.configs.update(call.params["name"], call.body(allow_empty=False))
    return call.ok(_view(call, config), "Config updated successfully.", recased=False)


def delete_config(service: Service, call: Call) -> Response:
    service.configs.delete(call.params["name"])
    return call.ok(None, "Config deleted successfully.", recased=False)


def list_config_permissions(service: Service, call: Call) -> Response:
    """A ``{user: LEVEL}`` map: user names are data, never re-cased."""
    return call.ok(
        service.configs.permissions(call.params["name"]), "Permissions retrieved successfully.", recased=False
    )


def update_config_permissions(service: Service, call: Call) -> Response:
    body = call.body(allow_empty=False)
    return call.ok(
        service.configs.grant(call.params["name"], body), "Permission added successfully.", recased=False
    )


ROUTES = [
    Route("/actors/configs", GET=list_configs, POST=create_config),
    Route(_CONFIG, GET=get_config, PUT=update_config, DELETE=delete_config),
    Route(_CONFIG + "/permissions", GET=list_config_permissions, POST=update_config_permissions),
]
