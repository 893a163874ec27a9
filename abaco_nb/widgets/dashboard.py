"""The dashboard: actors, their executions, live logs, a send form, delete/scale and a timeline.

All network calls run on one background thread (a periodic refresh plus the actions the buttons
queue), so button presses return at once and the kernel is never blocked. Finished executions are
cached: an execution's details are fetched until it is terminal and then never again.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..page import dashboard_link
from ..records import BORDER, FINISHED, MUTED, TEXT, Execution, duration, status_badge
from .logs import LogViewer
from .timeline import timeline_svg

if TYPE_CHECKING:
    from ..client import Client

DETAIL_LAST = 25  # executions whose details (exit code, worker) the dashboard shows
CONFIRM_SECONDS = 5.0  # a Delete press arms deletion of that actor for this long


def _kv(text: str) -> dict[str, str]:
    """``"a=1 b=2"`` -> environment overrides for the send form; a bad pair raises ValueError."""
    env: dict[str, str] = {}
    for pair in text.split():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"environment overrides are KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


class Dashboard(w.VBox):
    """``Dashboard(client)``; ``%abaco dashboard`` shows one."""

    def __init__(self, client: Client, interval: float = 2.0) -> None:
        self.client = client
        self.interval = interval
        self.actors: list[dict[str, Any]] = []
        self.executions: list[Execution] = []
        self._details: dict[str, Execution] = {}
        self._jobs: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._closed = False
        self.selected_actor: str | None = None
        self._armed: tuple[str, float] | None = None  # (actor id, deadline): Delete pressed once
        self._selection = threading.RLock()  # an actor switch and an executions refresh never interleave
        self._scaled_for: str | None = None
        self.log_viewer: LogViewer | None = None
        self.refreshed = (
            threading.Event()
        )  # set after each completed refresh (tests and notebooks wait on it)

        self.title = w.HTML(
            f"<b style='color:{TEXT}'>Abaco dashboard</b> "
            f"<small>{dashboard_link(client, 'open the page')}</small>"
        )
        self.status_line = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self._jobs.put(self._refresh))
        self.auto = w.Checkbox(value=True, description="live", indent=False, layout=w.Layout(width="70px"))
        self.actor_table = w.HTML()
        self.actor_table.add_class("abaco-dashboard-actors")
        self.actor_select = w.Dropdown(description="Actor", options=[], layout=w.Layout(width="340px"))
        self.actor_select.observe(self._on_actor, names="value")
        self.delete_button = w.Button(description="Delete", icon="trash", button_style="danger")
        self.delete_button.on_click(self._on_delete)
        self.workers_input = w.BoundedIntText(
            value=1, min=1, max=64, description="Workers", layout=w.Layout(width="150px")
        )
        self.scale_button = w.Button(description="Scale", icon="arrows-v")
        self.scale_button.on_click(self._on_scale)
        self.execution_table = w.HTML()
        self.execution_table.add_class("abaco-dashboard-executions")
        self.timeline = w.HTML()
        self.timeline.add_class("abaco-dashboard-timeline")
        self.execution_select = w.Dropdown(description="Logs of", options=[], layout=w.Layout(width="340px"))
        self.execution_select.observe(self._on_execution, names="value")
        self.log_box = w.VBox()
        self.message = w.Textarea(placeholder="message: text, or JSON", layout=w.Layout(width="98%"))
        self.env = w.Text(placeholder="KEY=VALUE overrides", layout=w.Layout(width="98%"))
        self.send_button = w.Button(description="Send", icon="paper-plane", button_style="primary")
        self.send_button.on_click(self._on_send)
        self.send_result = w.HTML()

        left = w.VBox(
            [w.HTML("<b>Executions</b>"), self.execution_table, w.HTML("<b>Timeline</b>"), self.timeline],
            layout=w.Layout(width="58%"),
        )
        right = w.VBox(
            [
                w.HTML("<b>Send a message</b>"),
                self.message,
                self.env,
                w.HBox([self.send_button, self.send_result]),
                self.execution_select,
                self.log_box,
            ],
            layout=w.Layout(width="42%"),
        )
        super().__init__(
            [
                w.HBox([self.title, self.refresh_button, self.auto, self.status_line]),
                self.actor_table,
                w.HBox([self.actor_select, self.delete_button, self.workers_input, self.scale_button]),
                w.HBox([left, right]),
            ]
        )
        self.add_class("abaco-dashboard")
        self._view_count = 0  # the frontend reports its views: output cleared or replaced -> stop
        self.observe(self._on_views, names="_view_count")
        self._worker = threading.Thread(target=self._run, name="abaco-dashboard", daemon=True)
        self._worker.start()
        self._jobs.put(self._refresh)

    # -- the background thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            try:
                job = self._jobs.get(timeout=self.interval)
            except queue.Empty:
                job = self._refresh if self.auto.value else None
            if job is None:
                continue
            try:
                job()
            except Exception as exc:  # one line in the widget, never a thread traceback
                self.status_line.value = f"<span style='color:#e53935'>{html.escape(str(exc))}</span>"

    def close(self) -> None:
        """Stop the refresh thread and the log viewer's, then close the widget."""
        self.stop()
        super().close()

    def stop(self) -> None:
        """Stop polling (the widget keeps what it shows)."""
        self._closed = True
        self._jobs.put(None)
        if self.log_viewer is not None:
            self.log_viewer.stop()

    @property
    def running(self) -> bool:
        """Whether the refresh thread still runs."""
        return self._worker.is_alive()

    def _on_views(self, change: dict[str, Any]) -> None:
        if change.get("old") and not change.get("new"):  # was shown, now shown nowhere
            self.stop()

    def refresh(self, wait: float | None = None) -> None:
        """Queue a refresh; with ``wait``, block up to that many seconds until it is done."""
        self.refreshed.clear()
        self._jobs.put(self._refresh)
        if wait:
            self.refreshed.wait(wait)

    # -- data ---------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        rows = []
        for actor in self.client.actors():
            aid = str(actor.get("id"))
            try:
                workers = len(self.client.workers(aid))
                queued = self.client.queue_length(aid)
            except Exception:
                workers, queued = 0, 0
            rows.append({**actor, "_workers": workers, "_queue": queued})
        self.actors = rows
        options = [(f"{a.get('name') or a['id']} ({a['id']})", a["id"]) for a in rows]
        with self.hold_sync():
            self.actor_table.value = self._actor_html(rows)
            if list(self.actor_select.options) != options:
                current = self.actor_select.value
                self.actor_select.options = options
                ids = [o[1] for o in options]
                self.actor_select.value = current if current in ids else (ids[-1] if ids else None)
        self.selected_actor = self.actor_select.value
        if self.selected_actor and self.selected_actor != self._scaled_for:
            self._scaled_for = self.selected_actor  # start the scale box at the actor's worker count
            workers = next((a["_workers"] for a in rows if a["id"] == self.selected_actor), 1)
            self.workers_input.value = max(1, min(64, workers))
        if self.selected_actor:
            self._refresh_executions(self.selected_actor)
        else:
            self.executions = []
            self.execution_table.value = "<i>no actor selected</i>"
            self.timeline.value = timeline_svg([])
        self.status_line.value = (
            f"<small style='color:{MUTED}'>{len(rows)} actors · {html.escape(self.client.base_url)}</small>"
        )
        self.refreshed.set()

    def _refresh_executions(self, actor_id: str) -> None:
        if actor_id != self.selected_actor:  # queued before the user picked another actor
            return
        summary = self.client.executions(actor_id).get("executions") or []
        if actor_id != self.selected_actor:
            return
        recent = summary[-DETAIL_LAST:]
        details = []
        for ex in recent:
            eid = str(ex["id"])
            cached = self._details.get(eid)
            if cached is None or cached.get("status") not in FINISHED:
                cached = self.client.execution(actor_id, eid)
                self._details[eid] = cached
            details.append(cached)
        options = [(f"{e['id']} {e.get('status')}", str(e["id"])) for e in reversed(details)]
        with self._selection, self.hold_sync():
            if actor_id != self.selected_actor:
                return
            self.executions = details
            self.execution_table.value = self._execution_html(details, len(summary))
            self.timeline.value = timeline_svg(details)
            if [o[1] for o in self.execution_select.options] != [o[1] for o in options]:
                current = self.execution_select.value
                self.execution_select.options = options
                ids = [o[1] for o in options]
                self.execution_select.value = current if current in ids else (ids[0] if ids else None)
            else:
                self.execution_select.options = options

    @staticmethod
    def _actor_html(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "<i>no actors yet: %abaco register IMAGE --name NAME</i>"
        body = "".join(
            f"<tr><td><code>{html.escape(str(a['id']))}</code></td><td>{html.escape(str(a.get('name') or ''))}</td>"
            f"<td><code>{html.escape(str(a.get('image')))}</code></td><td>{status_badge(a.get('status'))}</td>"
            f"<td>{a['_workers']}</td><td>{a['_queue']}</td></tr>"
            for a in rows
        )
        return (
            f"<table class='abaco-table' style='color:{TEXT};border-color:{BORDER}'><thead><tr><th>id</th><th>name</th><th>image</th><th>status</th>"
            f"<th>workers</th><th>queue</th></tr></thead><tbody>{body}</tbody></table>"
        )

    @staticmethod
    def _execution_html(details: list[Execution], total: int) -> str:
        if not details:
            return "<i>no executions yet</i>"
        body = ""
        for e in reversed(details):
            secs = duration(e)
            code = e.field("exit_code")
            body += (
                f"<tr><td><code>{html.escape(str(e['id']))}</code></td><td>{status_badge(e.get('status'), e)}</td>"
                f"<td>{'' if code is None else html.escape(str(code))}</td>"
                f"<td>{'' if secs is None else f'{secs:.2f} s'}</td>"
                f"<td><code>{html.escape(str(e.field('worker_id') or ''))}</code></td></tr>"
            )
        more = f"<small>latest {len(details)} of {total}</small>" if total > len(details) else ""
        return (
            f"<table class='abaco-table' style='color:{TEXT};border-color:{BORDER}'><thead><tr><th>execution</th><th>status</th><th>exit</th>"
            f"<th>runtime</th><th>worker</th></tr></thead><tbody>{body}</tbody></table>{more}"
        )

    # -- actions (queued on the background thread) --------------------------------------------------

    def _on_actor(self, change: dict[str, Any]) -> None:
        if change.get("new") and change["new"] != self.selected_actor:
            with self._selection:
                self.selected_actor = change["new"]
                self._disarm()
                if self.log_viewer is not None:  # the previous actor's logs must not stay on screen
                    self.log_viewer.close()
                    self.log_viewer = None
                self.log_box.children = []
                self.execution_select.options = []
            self._jobs.put(lambda: self._refresh_executions(str(change["new"])))

    def _on_execution(self, change: dict[str, Any]) -> None:
        eid = change.get("new")
        if not eid or not self.selected_actor:
            return
        if self.log_viewer is not None:
            if self.log_viewer.execution_id == eid and self.log_viewer.actor_id == self.selected_actor:
                return
            self.log_viewer.close()
        self.log_viewer = LogViewer(self.client, self.selected_actor, str(eid))
        self.log_box.children = [self.log_viewer]

    def _on_send(self, _button: Any) -> None:
        actor = self.selected_actor
        if not actor:
            self.send_result.value = "select an actor first"
            return
        text = self.message.value
        try:
            env = _kv(self.env.value)
        except ValueError as exc:
            self.send_result.value = f"<span style='color:#c62828'>{html.escape(str(exc))}</span>"
            return

        def send() -> None:
            from ..magics.parsing import message_value

            receipt = self.client.send(actor, message_value(text), environment=env)
            eid = getattr(receipt, "execution_id", "")
            self.send_result.value = f"sent: execution <code>{html.escape(str(eid))}</code>"
            self._refresh_executions(actor)
            if eid:
                self.execution_select.value = str(eid)

        self._jobs.put(send)

    def _disarm(self) -> None:
        self._armed = None
        self.delete_button.description = "Delete"
        self.delete_button.tooltip = ""

    def _on_delete(self, button: Any) -> None:
        """The first press arms deletion of *this* actor for ``CONFIRM_SECONDS``; a second press on the
        same actor within that time deletes it. Switching actors or waiting disarms."""
        actor = self.selected_actor
        if not actor:
            return
        armed = self._armed
        if armed is None or armed[0] != actor or time.monotonic() > armed[1]:
            self._armed = (actor, time.monotonic() + CONFIRM_SECONDS)
            button.description = "Confirm"
            button.tooltip = f"press again within {CONFIRM_SECONDS:.0f} s to delete {actor}"

            def expire(token: tuple[str, float] = self._armed) -> None:
                if self._armed == token:
                    self._disarm()

            timer = threading.Timer(CONFIRM_SECONDS, expire)
            timer.daemon = True
            timer.start()
            return
        self._disarm()

        def delete() -> None:
            self.client.delete(actor)
            self.status_line.value = f"deleted {html.escape(actor)}"
            self._refresh()

        self._jobs.put(delete)

    def _on_scale(self, _button: Any) -> None:
        actor, num = self.selected_actor, int(self.workers_input.value)
        if not actor:
            return

        def scale() -> None:
            self.client.add_workers(actor, num)
            self._refresh()

        self._jobs.put(scale)

    def __repr__(self) -> str:
        return f"<Dashboard {self.client.base_url}: {len(self.actors)} actors>"
