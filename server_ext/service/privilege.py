"""Who may grow what: the rules that keep a nonce or an execution token from reaching the host.

Three kinds of caller reach the API (README, "Threat model"):

- the **service token** holder (and, inside Jupyter, the server's own user): the owner of the service,
  who may already run anything on the host, so it alone may register ``local:`` images (a command line
  run on the host) and ``privileged`` actors (the Docker socket: root on the host);
- an **execution token** (``_abaco_access_token``), scoped to one actor while its execution runs;
- a **nonce** (``?x-nonce=``), a capability someone was handed for one actor or alias at one level.

A nonce or an execution token must never grow: it never lists or creates nonces (the list would show
the id of a stronger one), never changes permissions, and a PUT through it never changes what runs or
how much it may take (image, privileged, token, mounts, limits). Its level and uses only shrink (a use
is counted in the store's transaction; nothing creates a nonce from a nonce). These are pure decisions;
``Api._dispatch`` and ``Service.update`` apply them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from . import environment
from .errors import AbacoError
from .models import Registration, normalise_keys

# Operations a nonce or an execution token may never run, whatever its level: they would reveal or
# mint capabilities, or change who else may act.
GROWING_OPERATIONS = frozenset(
    {
        "list_nonces",
        "create_nonce",
        "list_alias_nonces",
        "create_alias_nonce",
        "update_permissions",
        "update_alias_permissions",
        "update_config_permissions",
    }
)
# Operations on one nonce, which a nonce may run on itself only (its own uses, or giving it up).
OWN_NONCE_OPERATIONS = frozenset({"get_nonce", "delete_nonce", "get_alias_nonce", "delete_alias_nonce"})

# Registration fields that decide what runs and with how much: a nonce's PUT keeps them as they are.
PROTECTED_FIELDS = (
    "image",
    "privileged",
    "token",
    "mem_limit",
    "max_cpus",
    "max_workers",
    "max_run_time",
    "use_container_uid",
    "run_as_executor",
)
# Accepted in a body but never stored: refused from a nonce when present, so nothing is silently lost.
PROTECTED_IGNORED = ("mounts",)

LOCAL_PREFIX = "local:"
PRIVILEGED_WARNING = "privileged actors get the Docker socket: root on the host"


def refuse(what: str) -> AbacoError:
    """Abaco's ``Not authorized`` 400, saying what a limited credential may not do."""
    return AbacoError(f"Not authorized -- {what}.", 400)


def check_operation(operation: str, params: Mapping[str, str | None], own_nonce: str | None) -> None:
    """Refuse an operation that would let a nonce (``own_nonce``: its id) or an execution token
    (``own_nonce`` None) grow. Call only for such limited credentials."""
    if operation in GROWING_OPERATIONS:
        raise refuse("a nonce or an execution token cannot list or create nonces or change permissions")
    if operation in OWN_NONCE_OPERATIONS and (own_nonce is None or params.get("nonce_id") != own_nonce):
        raise refuse("a nonce or an execution token can only read or delete the nonce it is")


def check_host_fields(reg: Registration, *, host_caller: bool, allow_privileged: bool) -> None:
    """``local:`` images and ``privileged`` only from the service token; ``privileged`` only when the
    service was started with ``--allow-privileged``."""
    if reg.image.startswith(LOCAL_PREFIX) and not host_caller:
        raise refuse("'local:' images run a command on the host; only the service token may set one")
    if reg.privileged:
        if not host_caller:
            raise refuse(f"only the service token may set privileged ({PRIVILEGED_WARNING})")
        if not allow_privileged:
            raise AbacoError(
                "Invalid privileged: this service was not started with --allow-privileged "
                f"({PRIVILEGED_WARNING})."
            )


def keep_protected(old: Registration, new: Registration, body: Any) -> Registration:
    """A PUT from a nonce: ``new`` with the protected fields of ``old``. A body that sends a different
    value for one is refused naming it (sending the same value, as a full replacement does, is fine)."""
    data = normalise_keys(body) if isinstance(body, dict) else {}
    for name in PROTECTED_IGNORED:
        if data.get(name):
            raise refuse(f"a nonce cannot change {name}")
    known = {f.name for f in fields(Registration)}
    for name in PROTECTED_FIELDS:
        assert name in known
        if name in data and getattr(new, name) != getattr(old, name):
            raise refuse(f"a nonce cannot change {name}")
        setattr(new, name, getattr(old, name))
    # the owner's settings in default_environment (a cell actor's handler source) decide what runs too
    for name in environment.ACTOR_SETTINGS:
        if new.default_environment.get(name) != old.default_environment.get(name):
            if name in new.default_environment:
                raise refuse(f"a nonce cannot change default_environment {name}")
            if name in old.default_environment:
                new.default_environment[name] = old.default_environment[name]
    return new
