"""What ``%abaco`` returns besides records: logs, notices, help, state, a finished message.

Each is a plain value (a ``str`` subclass where the value is text) with a plain-text and an HTML repr,
so ``logs = %abaco logs test`` keeps working as a string. Reprs do no I/O.
"""

from __future__ import annotations

import html
import json
from typing import Any

from ..logtext import SHOWN_LINES, collapse, log_block
from ..page import dashboard_link
from ..records import PANEL, TEXT, Execution, MessageReceipt


class Logs(str):
    """An execution's logs: a string (all of it) that displays its last lines, the rest behind
    "show all", with a link to the full log on the dashboard page."""

    actor_id: str = ""
    execution_id: str = ""
    link: str = ""

    @classmethod
    def of(cls, text: str, actor_id: str, execution_id: str, client: Any = None) -> Logs:
        logs = cls(text)
        logs.actor_id, logs.execution_id = actor_id, execution_id
        if client is not None:
            logs.link = dashboard_link(client, "full log", actor=actor_id, execution=execution_id)
        return logs

    def __repr__(self) -> str:
        if not self:
            return f"(no logs for execution {self.execution_id})"
        tail, count = collapse(str(self))
        if count <= SHOWN_LINES:
            return str(self)
        return f"… {count - SHOWN_LINES} earlier lines (the value holds all {count}) …\n{tail}"

    def _repr_html_(self) -> str:
        title = f"logs of execution <code>{html.escape(self.execution_id)}</code>"
        return log_block(str(self), title, self.link)


class Notice(str):
    """A one-line outcome (``actor deleted``) shown as text."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<div class='abaco-notice'>{html.escape(str(self))}</div>"


class HelpText(str):
    """``%abaco help``: preformatted text."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<pre class='abaco-help' style='color:{TEXT}'>{html.escape(str(self))}</pre>"


class State:
    """An actor's state. ``.value`` is the Python value; equality compares the value."""

    def __init__(self, actor_id: str, value: Any) -> None:
        self.actor_id = actor_id
        self.value = value

    def __eq__(self, other: object) -> bool:
        return bool(self.value == (other.value if isinstance(other, State) else other))

    def __hash__(self) -> int:
        return hash(json.dumps(self.value, sort_keys=True, default=str))

    def __repr__(self) -> str:
        return f"<State of {self.actor_id}: {self.value!r}>"

    def _repr_html_(self) -> str:
        text = json.dumps(self.value, indent=2, default=str)
        return (
            f"<div class='abaco-state'><small>state of <code>{html.escape(self.actor_id)}</code></small>"
            f"<pre style='background:{PANEL};color:{TEXT};padding:6px'>{html.escape(text)}</pre></div>"
        )


class Finished:
    """``%abaco send ... --wait``: the receipt, the ended execution and its logs."""

    def __init__(self, receipt: MessageReceipt, execution: Execution, logs: Logs) -> None:
        self.receipt = receipt
        self.execution = execution
        self.logs = logs

    @property
    def execution_id(self) -> str:
        return self.receipt.execution_id

    @property
    def status(self) -> str:
        return str(self.execution.get("status"))

    def __repr__(self) -> str:
        code = self.execution.field("exit_code")
        return f"execution {self.execution_id} {self.status} exit_code={code}\n{self.logs}"

    def _repr_html_(self) -> str:
        return (
            f"<div class='abaco-finished'>{self.execution._repr_html_()}{self.logs._repr_html_()}</div>"
            if self.logs is not None
            else self.execution._repr_html_()
        )
