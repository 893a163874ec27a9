"""Actor configs (Abaco 1.9.0, reference/abaco-api.md §1.3 row 34, §3): the rules, with no I/O.

A config is a named JSON value shared by a list of actors (ids or aliases). Every execution of a
listed actor gets ``_actor_configs``, the Python ``str()`` of ``{name: value}`` over the configs that
list it, secrets decrypted. A secret's value is stored encrypted and, as in Abaco, ``GET`` shows
the ciphertext (so a secret never leaves the service in the clear through the API).

This module validates bodies, decides which configs reach an actor and renders the variable, so those
rules are tested without a socket; ``actor_configs`` encrypts and stores, ``api_actor_configs`` serves.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from .errors import AbacoError
from .models import normalise_keys, parse_bool

# A name travels in the path (/actors/configs/{name}): no separators, spaces or URL syntax.
FORBIDDEN_NAME_CHARS = frozenset("\\ \":/?#[]@!$&'()*+,;=%") | frozenset(string.whitespace)
MAX_NAME = 128


@dataclass
class ActorConfig:
    """A config as stored. ``value`` is the plain JSON value, or for a secret the Fernet ciphertext
    (a str) of its JSON text. ``actors`` is the comma-separated list as given (ids or aliases)."""

    name: str
    value: Any
    is_secret: bool
    actors: str
    owner: str
    create_time: float
    last_update_time: float

    def actor_list(self) -> list[str]:
        return split_actors(self.actors)

    def display(self) -> dict[str, Any]:
        """Abaco's shape: ``{name, value, is_secret, actors}``; a secret shows its ciphertext."""
        return {"name": self.name, "value": self.value, "is_secret": self.is_secret, "actors": self.actors}


@dataclass(frozen=True)
class ConfigInput:
    """A validated POST or PUT body; ``value`` still in the clear."""

    name: str
    value: Any
    is_secret: bool
    actors: list[str]
    actors_text: str = ""  # the string as sent, which Abaco returns unchanged ("id1, id2" stays so)


def split_actors(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``, order kept, duplicates dropped."""
    seen: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    return seen


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AbacoError("Invalid name: a config needs a non-empty string name.")
    name = value.strip()
    bad = sorted({c for c in name if c in FORBIDDEN_NAME_CHARS})
    if bad:
        raise AbacoError(f"Invalid name: {name!r} contains forbidden characters {''.join(bad)!r}.")
    if len(name) > MAX_NAME:
        raise AbacoError(f"Invalid name: at most {MAX_NAME} characters.")
    return name


def actors_as_sent(value: Any) -> str:
    """Abaco takes a comma-separated string and returns it as sent; a JSON list of strings is accepted
    too (shown joined by commas)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise AbacoError("Invalid actors: expected a comma-separated string of actor ids or aliases.")
    return value


def parse_actors(value: Any) -> list[str]:
    """The actor ids or aliases a config's ``actors`` names, in order, without duplicates."""
    actors = split_actors(actors_as_sent(value))
    if not actors:
        raise AbacoError("Invalid actors: list at least one actor id or alias.")
    return actors


def parse_config(body: dict[str, Any], *, name: str | None = None) -> ConfigInput:
    """A POST body (``name`` in it) or a PUT body (``name`` from the path: a body naming another one is
    refused, as renaming would orphan its permissions). ``is_secret``/``isSecret`` is required."""
    data = normalise_keys(body)
    if name is None:
        config_name = check_name(data.get("name"))
    else:
        config_name = name
        if data.get("name") not in (None, name):
            raise AbacoError("Invalid name: a config cannot be renamed; delete it and create another.")
    if "value" not in data:
        raise AbacoError("Invalid value: a config needs a value (any JSON).")
    if data.get("is_secret") is None:
        raise AbacoError("Invalid is_secret: required, true or false.")
    is_secret = parse_bool(data["is_secret"], "is_secret")
    if "actors" not in data:
        raise AbacoError("Invalid actors: required, a comma-separated string of actor ids or aliases.")
    actors = parse_actors(data["actors"])
    return ConfigInput(config_name, data["value"], is_secret, actors, actors_as_sent(data["actors"]))


def applies_to(config: ActorConfig, actor_id: str, aliases: list[str]) -> bool:
    """Does ``config`` list the actor, by its id or by one of its aliases (those pointing at it now)?"""
    listed = set(config.actor_list())
    return actor_id in listed or any(a in listed for a in aliases)


def environment_value(values: dict[str, Any]) -> str:
    """``_actor_configs`` exactly as Abaco sets it: ``str()`` of the dict (a Python repr)."""
    return str(values)
