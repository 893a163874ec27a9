"""Tab completion for ``%abaco``: sub-commands, then actor names and ids, then execution ids.

Registered through IPython's ``complete_command`` hook for ``%abaco`` and ``%%abaco``. A completer
must never raise or hang, so every lookup is cached briefly and failures complete nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .parsing import SUB_PARSERS_ORDER

if TYPE_CHECKING:
    from .core import AbacoMagics

CELL_COMMANDS = ("send", "actor", "map")
# Commands whose first argument is an actor, and those whose second is one of its executions.
ACTOR_FIRST = {
    "actor",
    "update",
    "delete",
    "send",
    "executions",
    "execution",
    "logs",
    "state",
    "workers",
    "cancel",
}
EXECUTION_SECOND = {"execution", "logs", "cancel"}


def completer(magics: AbacoMagics) -> Any:
    """The hook function IPython calls with an event holding ``line`` and ``symbol``."""

    def complete(_self: Any, event: Any) -> list[str]:
        return complete_line(magics, event.line)

    return complete


def complete_line(magics: AbacoMagics, line: str) -> list[str]:
    words = line.split()
    if not words:
        return []
    position = len(words) if line.endswith((" ", "\t")) else len(words) - 1
    cell = words[0].startswith("%%")
    if position <= 1:
        return list(CELL_COMMANDS if cell else SUB_PARSERS_ORDER)
    command = words[1]
    if position == 2 and command in ACTOR_FIRST:
        return magics.actor_names()
    if position == 3 and command in EXECUTION_SECOND and magics.client is not None:
        try:
            actor_id = magics.resolve(words[2])
            summary = magics.client.executions(actor_id).get("executions") or []
            return [str(e["id"]) for e in reversed(summary)][:50]
        except Exception:
            return []
    return []
