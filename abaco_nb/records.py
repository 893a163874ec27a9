"""What the client returns: Abaco's JSON results as dicts that also allow attribute access.

``actor.id`` and ``actor["id"]`` both work (like agavepy's AttrDict), camelCase and snake_case names
both resolve, and each kind has a rich repr for notebooks that does no I/O: a repr runs whenever a
notebook displays a value, so it must never wait on the network. Lists of records (what ``%abaco actors``
and ``%abaco executions`` return) are ``RecordList`` subclasses that render as one table.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from typing import Any, ClassVar

# Status -> colour, shared by reprs and widgets so a status looks the same everywhere.
STATUS_COLOURS = {
    "COMPLETE": "#2e7d32",
    "READY": "#2e7d32",
    "RUNNING": "#1565c0",
    "BUSY": "#1565c0",
    "SUBMITTED": "#757575",
    "REQUESTED": "#757575",
    "SPAWNER SETUP": "#757575",
    "SHUTTING_DOWN": "#ef6c00",
    "SHUTDOWN_REQUESTED": "#ef6c00",
    "ERROR": "#c62828",
}
# An ended execution's outcome -> colour: COMPLETE with exit code 1 did not succeed, whatever Abaco calls it.
OUTCOME_COLOURS = {
    "ok": "#2e7d32",
    "failed": "#c62828",
    "oom": "#6a1b9a",
    "error": "#c62828",
    "cancelled": "#757575",
    "running": "#1565c0",
    "queued": "#757575",
}
# Colours that read on JupyterLab's light and dark themes alike: its CSS variables, with fallbacks for
# pages without them (nbviewer, the dashboard page).
TEXT = "var(--jp-content-font-color1, inherit)"
MUTED = "var(--jp-content-font-color2, #757575)"
PANEL = "var(--jp-layout-color2, rgba(128, 128, 128, 0.12))"
BORDER = "var(--jp-border-color2, rgba(128, 128, 128, 0.35))"
CODE_FONT = "var(--jp-code-font-family, monospace)"


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _get(record: dict[str, Any], name: str) -> Any:
    for key in (name, _camel(name)):
        if key in record:
            return record[key]
    return None


def outcome(record: dict[str, Any]) -> str:
    """What happened to an execution, beyond Abaco's status: ``ok``, ``failed`` (a non-zero exit code),
    ``oom`` (killed for memory), ``error``, ``cancelled``, ``running`` or ``queued``."""
    status = str(record.get("status") or "")
    state = _get(record, "final_state") or {}
    code = _get(record, "exit_code")
    message = str(_get(record, "status_message") or "")
    if status in ("SUBMITTED", "REQUESTED", "QUEUED", ""):
        return "queued"
    if status == "RUNNING":
        return "running"
    if isinstance(state, dict) and state.get("OOMKilled"):
        return "oom"
    if "ancel" in message or "orce quit" in message:
        return "cancelled"
    if status == "ERROR":
        return "error"
    if code not in (None, 0, "0"):
        return "failed"
    return "ok"


FINISHED = ("COMPLETE", "ERROR")  # Abaco's statuses of an execution that has ended (the service's
# models.EXECUTION_TERMINAL; tests/test_contracts.py pins the pair)


def is_finished(execution: Any) -> bool:
    """Whether an execution record (a dict or an :class:`Execution`) has ended."""
    return bool(execution) and execution.get("status") in FINISHED


def status_badge(status: Any, record: dict[str, Any] | None = None) -> str:
    """A status as a small coloured label (HTML). With the execution ``record``, the colour and text say
    the outcome: ``COMPLETE · exit 1`` in red, ``OOM · exit 137``, ``CANCELLED``."""
    text = str(status or "")
    colour = STATUS_COLOURS.get(text, "#424242")
    kind = text.lower()
    classes = f"abaco-status abaco-status-{html.escape(kind.replace(' ', '-'))}"
    if record is not None and text in FINISHED:
        kind = outcome(record)
        colour = OUTCOME_COLOURS[kind]
        code = _get(record, "exit_code")
        if kind == "oom":
            text = f"OOM · exit {code}" if code is not None else "OOM"
        elif kind == "cancelled":
            text = "CANCELLED"
        elif kind in ("failed", "error") and code not in (None, 0, "0"):
            text = f"{text} · exit {code}"
        classes += f" abaco-outcome-{kind}"
    safe = html.escape(text)
    return (
        f"<span class='{classes}' "
        f"style='color:white;background:{colour};padding:1px 6px;border-radius:8px;font-size:85%;"
        f"white-space:nowrap'>{safe}</span>"
    )


def parse_time(value: Any) -> dt.datetime | None:
    """Abaco's ``2017-10-06T15:53:55.616Z`` (or with nanoseconds) as an aware datetime; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    text = value.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def duration(record: dict[str, Any]) -> float | None:
    """Seconds between start and finish (None while not started or not finished)."""
    start = parse_time(record.get("start_time") or record.get("startTime"))
    finish = parse_time(record.get("finish_time") or record.get("finishTime"))
    if start is None or finish is None:
        return None
    return max(0.0, (finish - start).total_seconds())


class Record(dict[str, Any]):
    """A dict with attribute access; ``rec.execution_id`` also finds ``executionId`` and back."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_repr_") or name.startswith("__"):
            raise AttributeError(name)  # IPython probes _repr_*_ names: never answer them from the dict
        for key in (name, _camel(name), _snake(name)):
            if key in self:
                return self[key]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}; fields: {', '.join(self)}")

    def field(self, name: str, default: Any = None) -> Any:
        """``name`` in snake_case or camelCase, whichever the service sent."""
        for key in (name, _camel(name), _snake(name)):
            if key in self:
                return self[key]
        return default

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{_cell(k, v)}</td></tr>"
            for k, v in self.items()
            if not k.startswith("_")
        )
        return f"<table class='abaco-record'><caption>{type(self).__name__}</caption>{rows}</table>"


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(key: str, value: Any, record: dict[str, Any] | None = None) -> str:
    if key == "status":
        return status_badge(value, record)
    return html.escape(_short(value))


class Actor(Record):
    """An actor as the service shows it."""

    def __repr__(self) -> str:
        return f"<Actor {self.get('id')} {self.get('name') or ''} {self.get('image')} {self.get('status')}>"

    def _repr_html_(self) -> str:
        env = self.field("default_environment") or {}
        env_text = ", ".join(f"{k}={v}" for k, v in env.items()) if isinstance(env, dict) else str(env)
        kind = "stateless" if self.field("stateless", True) else "stateful"
        message = self.field("status_message") or ""
        return (
            "<div class='abaco-actor'>"
            f"<b>Actor</b> <code>{html.escape(str(self.get('id')))}</code> "
            f"<b>{html.escape(str(self.get('name') or ''))}</b> {status_badge(self.get('status'))}"
            f"<br><small>image <code>{html.escape(str(self.get('image')))}</code> · {kind}"
            + (f" · env <code>{html.escape(_short(env_text, 120))}</code>" if env_text else "")
            + (f" · {html.escape(_short(message, 200))}" if message else "")
            + "</small></div>"
        )


class Execution(Record):
    """An execution (status, exit code, runtime...)."""

    @property
    def finished(self) -> bool:
        """It has ended: COMPLETE or ERROR."""
        return is_finished(self)

    @property
    def seconds(self) -> float | None:
        """Wall time from start to finish, from the timestamps (Abaco's ``runtime`` is whole seconds)."""
        return duration(self)

    def __repr__(self) -> str:
        code = self.get("exit_code", self.get("exitCode"))
        return f"<Execution {self.get('id')} {self.get('status')} exit_code={code}>"

    def _repr_html_(self) -> str:
        code = self.field("exit_code")
        secs = self.seconds
        message = self.field("status_message") or ""
        return (
            "<div class='abaco-execution'>"
            f"<b>Execution</b> <code>{html.escape(str(self.get('id')))}</code> "
            f"{status_badge(self.get('status'), self)}"
            + (f" exit code <b>{html.escape(str(code))}</b>" if code is not None else "")
            + (f" · {secs:.2f} s" if secs is not None else "")
            + (
                f" · worker <code>{html.escape(str(self.field('worker_id')))}</code>"
                if self.field("worker_id")
                else ""
            )
            + (f"<br><small>{html.escape(_short(message))}</small>" if message else "")
            + "</div>"
        )


class MessageReceipt(Record):
    """What sending a message answers: the new execution's id."""

    @property
    def execution_id(self) -> str:
        return str(self.get("execution_id") or self.get("executionId"))

    def __repr__(self) -> str:
        return f"<Message accepted: execution {self.execution_id}>"

    def _repr_html_(self) -> str:
        return (
            f"<div class='abaco-receipt'>Message accepted: execution "
            f"<code>{html.escape(self.execution_id)}</code></div>"
        )


class Worker(Record):
    """A worker of an actor."""

    def __repr__(self) -> str:
        return f"<Worker {self.get('id')} {self.get('status')}>"


class RecordList(list[Any]):
    """A list of records that displays as one table; ``columns`` names what the table shows."""

    columns: ClassVar[tuple[str, ...]] = ("id", "status")
    title: ClassVar[str] = "records"

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)

    def _value(self, item: Any, column: str) -> Any:
        return item.field(column) if isinstance(item, Record) else item.get(column)

    def __repr__(self) -> str:
        if not self:
            return f"<no {self.title}>"
        rows = [
            [
                _short(str(self._value(item, c) if self._value(item, c) is not None else ""), 40)
                for c in self.columns
            ]
            for item in self
        ]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        if not self:
            return f"<i>no {html.escape(self.title)}</i>"
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td style='text-align:left'>{self._html_cell(item, c)}</td>" for c in self.columns)
            + "</tr>"
            for item in self
        )
        return (
            f"<table class='abaco-table abaco-{self.title.replace(' ', '-')}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table><small>{len(self)} {html.escape(self.title)}</small>"
        )

    def _html_cell(self, item: Any, column: str) -> str:
        value = self._value(item, column)
        if value is None:
            return ""
        if column == "status":
            return status_badge(value, item if isinstance(item, Execution) else None)
        if column in ("id", "execution_id", "image"):
            return f"<code>{html.escape(str(value))}</code>"
        return html.escape(_short(value, 80))


class ActorList(RecordList):
    columns = ("id", "name", "image", "status", "stateless")
    title = "actors"


class ExecutionList(RecordList):
    """Executions, oldest first; ``seconds`` is computed from the start and finish times."""

    columns = ("id", "status", "exit_code", "seconds", "worker_id", "start_time")
    title = "executions"

    def _value(self, item: Any, column: str) -> Any:
        if column == "seconds":
            secs = duration(item)
            return None if secs is None else round(secs, 3)
        return super()._value(item, column)


class WorkerList(RecordList):
    columns = ("id", "status", "image", "location", "last_execution_time")
    title = "workers"


def wrap(value: Any, kind: type[Record] = Record) -> Any:
    """Dicts become ``kind`` (nested dicts plain Records); lists are wrapped item by item."""
    if isinstance(value, list):
        return [wrap(v, kind) for v in value]
    if isinstance(value, dict):
        return kind(
            {k: wrap(v) if isinstance(v, dict | list) and k != "state" else v for k, v in value.items()}
        )
    return value
