"""A log viewer that follows a running execution until it ends.

Polls the execution and its logs from a background thread (every ``interval`` seconds) so the kernel
stays free; the last fetch happens after the execution is terminal, so the final lines are never lost.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING

import ipywidgets as w

from ..records import status_badge

if TYPE_CHECKING:
    from ..client import Client

TERMINAL = ("COMPLETE", "ERROR")


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
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(follow,), name="abaco-logs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the widget keeps what it shows)."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        super().close()

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
            self._show(status, text)
            if status in TERMINAL or not follow:
                self.finished.set()
                return
            self._stop.wait(self.interval)

    def _show(self, status: str, text: str, error: str = "") -> None:
        self.status, self.text = status, text
        live = "" if status in TERMINAL else " <small>(following)</small>"
        with self.hold_sync():
            self.header.value = (
                f"logs of execution <code>{html.escape(self.execution_id)}</code> {status_badge(status)}{live}"
                + (f" <span style='color:#c62828'>{html.escape(error)}</span>" if error else "")
            )
            self.body.value = (
                "<pre style='max-height:20em;overflow:auto;background:#f6f8fa;padding:6px;margin:0'>"
                f"{html.escape(text) or '<i>(no output yet)</i>'}</pre>"
            )

    def __repr__(self) -> str:
        return f"<LogViewer {self.execution_id} {self.status}>\n{self.text}"
