"""``%abaco nonces``, ``%abaco alias`` and ``%abaco aliases``: sharing an actor from a notebook.

A nonce lets someone without the token call one actor (``?x-nonce=<id>``) at one level, a limited
number of times; an alias is a stable name for an actor that works wherever its id does. The
commands are functions over the connected client so ``core`` only routes to them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import AbacoAPIError
from ..records import Record, RecordList
from .display import Notice
from .parsing import MagicError

if TYPE_CHECKING:
    from ..client import Client


class NonceList(RecordList):
    columns = ("id", "level", "max_uses", "current_uses", "remaining_uses", "last_use_time")
    title = "nonces"


class AliasList(RecordList):
    columns = ("alias", "actor_id", "owner")
    title = "aliases"


def nonces(client: Client, actor_id: str, args: argparse.Namespace) -> NonceList | Record | Notice:
    """List the actor's nonces, or ``--create`` one (returned, so ``n = %abaco nonces a --create``
    gives ``n.id``), or ``--delete NID``."""
    if args.create and args.delete:
        raise MagicError("nonces: use --create or --delete, not both")
    if args.delete:
        client.delete_nonce(actor_id, args.delete)
        return Notice(f"nonce {args.delete} deleted")
    if args.create:
        if args.max_uses is not None and (args.max_uses == 0 or args.max_uses < -1):
            raise MagicError("--max-uses must be a positive number, or -1 for unlimited")
        return client.create_nonce(
            actor_id, level=args.level, max_uses=args.max_uses, description=args.description or ""
        )
    if args.level is not None or args.max_uses is not None:
        raise MagicError("--level and --max-uses go with --create")
    return NonceList(client.nonces(actor_id))


def alias(client: Client, name: str, actor_id: str | None, delete: bool) -> Record | Notice:
    """Give the actor the alias ``name``; an alias that exists is pointed at the actor instead, so
    re-running the cell does the obvious. ``--delete`` removes the alias."""
    if delete:
        client.delete_alias(name)
        return Notice(f"alias {name} deleted")
    if actor_id is None:
        raise MagicError("alias needs an actor: %abaco alias ALIAS ACTOR (or --delete)")
    try:
        return client.create_alias(name, actor_id)
    except AbacoAPIError as exc:
        if exc.status == 400 and "already exists" in exc.message:
            return client.update_alias(name, actor_id)
        raise


def is_alias(client: Client, ref: str) -> bool:
    """Is ``ref`` one of the service's aliases? (False where the service has none to list.)"""
    try:
        return any(a.get("alias") == ref for a in client.aliases())
    except AbacoAPIError:
        return False


def aliases(client: Client) -> AliasList:
    return AliasList(client.aliases())
