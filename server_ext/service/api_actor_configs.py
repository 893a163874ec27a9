"""Routes for actor configs (reference/abaco-api.md §1.3 row 34, checklist item 32).

Registered ``first`` so ``/actors/configs`` is not read as an actor id. Each handler is a few lines
over ``Service.configs`` (``actor_configs.ActorConfigs``). Results are ``{name, value, is_secret, actors}``;
``value`` is user data, never re-cased, and a secret's is its ciphertext, as in Abaco.
"""

from __future__ import annotations

from typing import Any

from .actor_config_rules import ActorConfig
from .api import Api, Request, Response, envelope, recase, route

_CONFIG = r"/actors/configs/(?P<name>[^/]+)"


def _view(api: Api, request: Request, config: ActorConfig) -> dict[str, Any]:
    shown = config.display()
    value = shown.pop("value")
    return {**recase(shown, api._camel(request)), "value": value}


def _ok(result: Any, message: str) -> Response:
    """Not ``Api._ok``: ``value`` is user data that ``?case=camel`` must not touch."""
    return Response(200, envelope(result, message))


def list_configs(api: Api, request: Request, params: dict[str, str]) -> Response:
    result = [_view(api, request, c) for c in api.service.configs.list()]
    return _ok(result, "Configs retrieved successfully.")


def create_config(api: Api, request: Request, params: dict[str, str]) -> Response:
    config = api.service.configs.create(api._body(request, allow_empty=False), api._user(request))
    return _ok(_view(api, request, config), "Config created successfully.")


def get_config(api: Api, request: Request, params: dict[str, str]) -> Response:
    config = api.service.configs.get(params["name"])
    return _ok(_view(api, request, config), "Config retrieved successfully.")


def update_config(api: Api, request: Request, params: dict[str, str]) -> Response:
    config = api.service.configs.update(params["name"], api._body(request, allow_empty=False))
    return _ok(_view(api, request, config), "Config updated successfully.")


def delete_config(api: Api, request: Request, params: dict[str, str]) -> Response:
    api.service.configs.delete(params["name"])
    return _ok(None, "Config deleted successfully.")


def list_config_permissions(api: Api, request: Request, params: dict[str, str]) -> Response:
    """A ``{user: LEVEL}`` map: user names are data, never re-cased."""
    return _ok(api.service.configs.permissions(params["name"]), "Permissions retrieved successfully.")


def update_config_permissions(api: Api, request: Request, params: dict[str, str]) -> Response:
    body = api._body(request, allow_empty=False)
    return _ok(api.service.configs.grant(params["name"], body), "Permission added successfully.")


route("/actors/configs", first=True, GET=list_configs, POST=create_config)
route(_CONFIG, first=True, GET=get_config, PUT=update_config, DELETE=delete_config)
route(_CONFIG + "/permissions", first=True, GET=list_config_permissions, POST=update_config_permissions)
