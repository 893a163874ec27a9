"""``%abaco configs``: Abaco's actor configs from a notebook (list, set, delete).

A config is a named JSON value that every execution of the listed actors reads from
``_actor_configs`` (``abaco_nb.actors.get_context()`` leaves it in the environment); a ``--secret`` one is
stored encrypted and listed as ciphertext. A function over the connected client, so ``core`` only routes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..records import Record, RecordList
from .display import Notice
from .parsing import MagicError, message_value

if TYPE_CHECKING:
    from ..client import Client


class ConfigList(RecordList):
    columns = ("name", "value", "is_secret", "actors")
    title = "configs"


def configs(
    client: Client, args: argparse.Namespace, resolve: Callable[[str], str]
) -> ConfigList | Record | Notice:
    """No name: list. ``NAME --delete``: delete. ``NAME --value V --actors A,B [--secret]``: create or
    replace (``V`` is JSON when it parses as an object or array, else a string); actor names are
    resolved to ids, aliases kept."""
    if args.name is None:
        if args.value is not None or args.actors or args.delete or args.secret:
            raise MagicError("configs: name the config (%abaco configs NAME --value V --actors A)")
        return ConfigList(client.configs())
    if args.delete:
        client.delete_config(args.name)
        return Notice(f"config {args.name} deleted")
    if args.value is None or not args.actors:
        raise MagicError("configs NAME needs --value V and --actors A[,B] (or --delete)")
    actors = [resolve(a.strip()) for a in args.actors.split(",") if a.strip()]
    return client.set_config(args.name, message_value(args.value), actors, secret=args.secret)
