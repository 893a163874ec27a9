"""Executor progress: done, running, failed and queued counts, a bar and a cancel button.

Takes any ``concurrent.futures.Future``s (``AbacoExecutor.map``'s responses) and an optional cancel
callback. It never blocks the kernel: done callbacks wake one background thread that redraws at most
every ``interval`` seconds, so the cell that created it returns at once and the Cancel button works —
a kernel blocked in ``result()`` cannot process a button press (ipykernel#65), which is why ``map``
must not block while this is shown.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ipywidgets as w


@dataclass(frozen=True)
class Counts:
    total: int
    done: int  # finished without error
    failed: int  # raised, or cancelled
    running: int
    queued: int

    @property
    def finished(self) -> int:
        return self.done + self.failed


def _is_running(future: Future[Any]) -> bool:
    status = getattr(future, "status", None)  # an Abaco response may know the remote status
    if isinstance(status, str) and not callable(status):
        return status.upper() == "RUNNING"
    return future.running()


def count(futures: Sequence[Future[Any]]) -> Counts:
    """Classify futures without blocking."""
    done = failed = running = 0
    for f in futures:
        if f.done():
            if f.cancelled() or f.exception(timeout=0) is not None:
                failed += 1
            else:
                done += 1
        elif _is_running(f):
            running += 1
    return Counts(len(futures), done, failed, running, len(futures) - done - failed - running)


class ExecutorProgress(w.VBox):
    """A live progress bar over futures. ``ExecutorProgress(futures, cancel=executor_cancel)``."""

    def __init__(
        self,
        futures: Sequence[Future[Any]],
        cancel: Callable[[], Any] | None = None,
        description: str = "executions",
        interval: float = 0.25,
    ) -> None:
        self.futures = list(futures)
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
        self._refresh()
        for f in self.futures:
            f.add_done_callback(lambda _f: self._wake.set())
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
        with self.hold_sync():
            self.bar.value = c.finished
            self.label.value = self._label(c)
            if c.finished == c.total:
                self.bar.bar_style = "danger" if c.failed else "success"
                self.cancel_button.disabled = True
                self.cancel_button.button_style = ""
                self.cancel_button.description = "Done" if not c.failed else "Finished"
        return c.finished == c.total

    def _label(self, c: Counts) -> str:
        parts = [
            f"<b>{c.finished}/{c.total}</b> {html.escape(self.description)}",
            f"<span style='color:#2e7d32'>{c.done} done</span>",
            f"<span style='color:#1565c0'>{c.running} running</span>",
            f"<span style='color:#c62828'>{c.failed} failed</span>",
            f"<span style='color:#757575'>{c.queued} queued</span>",
        ]
        return " · ".join(parts)

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"<ExecutorProgress {c.finished}/{c.total} {self.description}: {c.done} done, "
            f"{c.running} running, {c.failed} failed, {c.queued} queued>"
        )


def show_progress(
    futures: Sequence[Future[Any]], cancel: Callable[[], Any] | None = None, description: str = "executions"
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
    progress = ExecutorProgress(futures, cancel=cancel, description=description)
    display(progress)
    return progress
