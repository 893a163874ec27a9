"""A log viewer that follows a running execution until it ends.

Polls the execution and its logs from a background thread (every ``interval`` seconds) so the kernel
stays free; the last fetch happens after the execution is terminal, so the final lines are never lost.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..logtext import log_block
from ..page import dashboard_link
from ..records import FINISHED, status_badge

if TYPE_CHECKING:
    from ..client import Client


class LogViewer(w.VBox):
    """``LogViewer(client, actor_id, execution_id)``: status and logs, live while running."""

    def __init__(
        self, client: Client, actor_id: str, execution_id: str, interval: float = 1.0, follow: bool = True
    ) -> None:
        self.client = client
        self.actor_id = actor_id
        self.execution_id = execution_id
        self.interval = interval
        self.status = ""
        self.text = ""
        self._stop = threading.Event()
        self.header = w.HTML()
        self.body = w.HTML()
        self.body.add_class("abaco-log-body")
        super().__init__([self.header, self.body])
        self.add_class("abaco-log-viewer")
        self._view_count = 0  # the frontend reports views: a cleared output stops the thread
        self.observe(self._on_views, names="_view_count")
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(follow,), name="abaco-logs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the widget keeps what it shows)."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        super().close()

    @property
    def running(self) -> bool:
        """Whether the follow thread still runs."""
        return self._thread.is_alive()

    def _on_views(self, change: dict[str, object]) -> None:
        if change.get("old") and not change.get("new"):
            self._stop.set()

    def _loop(self, follow: bool) -> None:
        while not self._stop.is_set():
            try:
                execution = self.client.execution(self.actor_id, self.execution_id)
                status = str(execution.get("status", ""))
                text = self.client.logs(self.actor_id, self.execution_id)
            except Exception as exc:  # shown in the widget; the kernel never sees a thread traceback
                self._show(self.status, self.text, error=str(exc))
                self.finished.set()
                return
            self._show(status, text, record=execution)
            if status in FINISHED or not follow:
                self.finished.set()
                return
            self._stop.wait(self.interval)

    def _show(self, status: str, text: str, error: str = "", record: dict[str, Any] | None = None) -> None:
        self.status, self.text = status, text
        live = "" if status in FINISHED else " <small>(following)</small>"
        with self.hold_sync():
            self.header.value = (
                f"logs of execution <code>{html.escape(self.execution_id)}</code> {status_badge(status, record)}{live}"
                + (f" <span style='color:#e53935'>{html.escape(error)}</span>" if error else "")
            )
            link = dashboard_link(self.client, "full log", actor=self.actor_id, execution=self.execution_id)
            self.body.value = log_block(text, "output" if text else "no output yet", link)

    def __repr__(self) -> str:
        return f"<LogViewer {self.execution_id} {self.status}>\n{self.text}"
