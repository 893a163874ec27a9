"""Executor progress: done, running, failed, cancelled and queued counts, elapsed time, rate and time
left, a bar, a cancel button and a link to the dashboard page.

Takes any ``concurrent.futures.Future``s (``AbacoExecutor.map``'s responses) and an optional cancel
callback. It never blocks the kernel: done callbacks wake one background thread that redraws at most
every ``interval`` seconds, so the cell that created it returns at once and the Cancel button works —
a kernel blocked in ``result()`` cannot process a button press (ipykernel#65), which is why ``map``
must not block while this is shown.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from ..records import MUTED, TEXT


@dataclass(frozen=True)
class Counts:
    total: int
    done: int  # finished without error
    failed: int  # raised
    running: int  # running right now (an Abaco call: its execution is RUNNING and it is the current call)
    queued: int
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled


def _is_running(future: Future[Any]) -> bool:
    """An Abaco response says whether it runs (``status``, kept by its executor); agavepy-style
    ``running()`` means "not done", which would count every queued call as running."""
    status = getattr(future, "status", None)
    if isinstance(status, str) and not callable(status):
        return status.upper() == "RUNNING"
    return future.running()


def count(futures: Sequence[Future[Any]]) -> Counts:
    """Classify futures without blocking."""
    done = failed = running = cancelled = 0
    for f in futures:
        if f.cancelled():
            cancelled += 1
        elif f.done():
            if f.exception(timeout=0) is not None:
                failed += 1
            else:
                done += 1
        elif _is_running(f):
            running += 1
    queued = len(futures) - done - failed - running - cancelled
    return Counts(len(futures), done, failed, running, queued, cancelled)


def timing(c: Counts, elapsed: float) -> str:
    """``12.3 s · 4.1/s · ~5 s left``: elapsed time, completion rate and an estimate of the time left
    (from the rate so far; none until something has finished)."""
    parts = [_seconds(elapsed)]
    finished = c.done + c.failed
    if finished and elapsed > 0:
        rate = finished / elapsed
        parts.append(f"{rate:.3g}/s")
        left = c.total - c.finished
        if left:
            parts.append(f"~{_seconds(left / rate)} left")
    return " · ".join(parts)


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


class ExecutorProgress(w.VBox):
    """A live progress bar over futures. ``ExecutorProgress(futures, cancel=executor_cancel)``."""

    def __init__(
        self,
        futures: Sequence[Future[Any]],
        cancel: Callable[[], Any] | None = None,
        description: str = "executions",
        interval: float = 0.25,
        link: str = "",
    ) -> None:
        self.futures = list(futures)
        self.started = time.monotonic()
        self.ended: float | None = None
        self.link = link  # HTML: the dashboard page, where each call's bar is drawn
        self._cancel_callback = cancel
        self._interval = interval
        self._wake = threading.Event()
        self._closed = False
        self.bar = w.IntProgress(value=0, min=0, max=max(1, len(self.futures)), bar_style="info")
        self.bar.add_class("abaco-progress-bar")
        self.label = w.HTML()
        self.label.add_class("abaco-progress-counts")
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="danger")
        self.cancel_button.add_class("abaco-progress-cancel")
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.description = description
        super().__init__([w.HBox([self.bar, self.cancel_button]), self.label])
        self.add_class("abaco-progress")
        self._view_count = 0  # the frontend reports views: a cleared output stops the thread
        self.observe(self._on_views, names="_view_count")
        self._refresh()
        for f in self.futures:
            f.add_done_callback(lambda _f: self._wake.set())
        for f in self.futures:  # Abaco responses: have their executor follow which call runs
            track = getattr(f, "track", None)
            if callable(track):
                track()
        self._thread = threading.Thread(target=self._loop, name="abaco-progress", daemon=True)
        self._thread.start()

    # -- state --------------------------------------------------------------------------------------

    @property
    def counts(self) -> Counts:
        return count(self.futures)

    def cancel(self) -> None:
        """Cancel the work: the callback when one was given (it can stop running containers), else
        ``Future.cancel()`` on every unfinished future."""
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling"
        if self._cancel_callback is not None:
            self._cancel_callback()
        else:
            for f in self.futures:
                f.cancel()
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        super().close()

    def _on_views(self, change: dict[str, Any]) -> None:
        if change.get("old") and not change.get("new"):  # was shown, now shown nowhere
            self._closed = True
            self._wake.set()

    # -- drawing ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(1.0)  # running counts change without a done callback: poll slowly too
            self._wake.clear()
            if self._closed:
                return
            finished = self._refresh()
            if finished:
                return
            threading.Event().wait(self._interval)  # throttle: many completions, one redraw

    def _refresh(self) -> bool:
        c = self.counts
        if c.finished == c.total and self.ended is None:
            self.ended = time.monotonic()
        with self.hold_sync():
            self.bar.value = c.finished
            self.label.value = self._label(c)
            if c.finished == c.total:
                self.bar.bar_style = "danger" if c.failed else "warning" if c.cancelled else "success"
                self.cancel_button.disabled = True
                self.cancel_button.button_style = ""
                self.cancel_button.description = (
                    "Done" if not (c.failed or c.cancelled) else "Cancelled" if c.cancelled else "Finished"
                )
        return c.finished == c.total

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def _label(self, c: Counts) -> str:
        parts = [
            f"<b>{c.finished}/{c.total}</b> {html.escape(self.description)}",
            f"<span style='color:#2e7d32'>{c.done} done</span>",
            f"<span style='color:#1565c0'>{c.running} running</span>",
            f"<span style='color:#c62828'>{c.failed} failed</span>",
        ]
        if c.cancelled:
            parts.append(f"<span style='color:{MUTED}'>{c.cancelled} cancelled</span>")
        parts.append(f"<span style='color:{MUTED}'>{c.queued} queued</span>")
        parts.append(
            f"<span class='abaco-progress-timing' style='color:{MUTED}'>"
            f"{html.escape(timing(c, self.elapsed))}</span>"
        )
        if self.link:
            parts.append(self.link)
        return f"<span style='color:{TEXT}'>{' · '.join(parts)}</span>"

    def __repr__(self) -> str:
        c = self.counts
        cancelled = f", {c.cancelled} cancelled" if c.cancelled else ""
        return (
            f"<ExecutorProgress {c.finished}/{c.total} {self.description}: {c.done} done, "
            f"{c.running} running, {c.failed} failed{cancelled}, {c.queued} queued; "
            f"{timing(c, self.elapsed)}>"
        )


def show_progress(
    futures: Sequence[Future[Any]],
    cancel: Callable[[], Any] | None = None,
    description: str = "executions",
    link: str = "",
) -> ExecutorProgress | None:
    """Display an ``ExecutorProgress`` when running in a Jupyter kernel (what ``AbacoExecutor.map`` can
    call for its bar); None in a terminal or a script, where a widget would only print its repr."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or not getattr(shell, "kernel", None):
        return None
    progress = ExecutorProgress(futures, cancel=cancel, description=description, link=link)
    display(progress)
    return progress
