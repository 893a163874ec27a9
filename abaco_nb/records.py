"""What the client returns: Abaco's JSON results as dicts that also allow attribute access.

``actor.id`` and ``actor["id"]`` both work (like agavepy's AttrDict), camelCase and snake_case names
both resolve, and each kind has a rich repr for notebooks that does no I/O.
"""

from __future__ import annotations

import html
from typing import Any


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class Record(dict[str, Any]):
    """A dict with attribute access; ``rec.execution_id`` also finds ``executionId`` and back."""

    def __getattr__(self, name: str) -> Any:
        for key in (name, _camel(name), _snake(name)):
            if key in self:
                return self[key]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}; fields: {', '.join(self)}")

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(_short(v))}</td></tr>"
            for k, v in self.items()
            if not k.startswith("_")
        )
        return f"<table><caption>{type(self).__name__}</caption>{rows}</table>"


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Actor(Record):
    """An actor as the service shows it."""

    def __repr__(self) -> str:
        return f"<Actor {self.get('id')} {self.get('name') or ''} {self.get('image')} {self.get('status')}>"


class Execution(Record):
    """An execution (status, exit code, runtime...)."""

    def __repr__(self) -> str:
        code = self.get("exit_code", self.get("exitCode"))
        return f"<Execution {self.get('id')} {self.get('status')} exit_code={code}>"


class MessageReceipt(Record):
    """What sending a message answers: the new execution's id."""

    @property
    def execution_id(self) -> str:
        return str(self.get("execution_id") or self.get("executionId"))

    def __repr__(self) -> str:
        return f"<Message accepted: execution {self.execution_id}>"


def wrap(value: Any, kind: type[Record] = Record) -> Any:
    """Dicts become ``kind`` (nested dicts plain Records); lists are wrapped item by item."""
    if isinstance(value, list):
        return [wrap(v, kind) for v in value]
    if isinstance(value, dict):
        return kind(
            {k: wrap(v) if isinstance(v, dict | list) and k != "state" else v for k, v in value.items()}
        )
    return value
