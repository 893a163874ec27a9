"""Remote output, live, in the cell that started it (what ipyparallel's ``%%px --stream`` gives).

The function runner writes a marker line before each call of a chunk (``--- abaco-nb call 3 @<time>
---``) and one at the end, so an execution's log splits into one section per call: ``future.logs()``
is that call's output, not its chunk's, and the dashboard page draws one bar per call from the times.

``LiveOutput`` is one display in one cell. It is created (and displayed, empty) on the kernel's main
thread while the cell runs, so it lands in that cell; background threads then only *update* it by its
display id, which Jupyter routes to the right cell whatever runs now. Lines carry a prefix (``[f 17]``
for call 17 of a map, ``[exec X]`` for an execution), the display is redrawn at most every
``interval`` seconds, shows the last ``SHOWN_LINES`` lines and keeps at most ``KEPT_LINES`` behind
"show all", so a flood of prints cannot freeze the notebook. Pure parsing and drawing here; the
executor's monitor thread (and the magics' follower) fetch the logs.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections import deque
from typing import Any

from .records import BORDER, CODE_FONT, MUTED, PANEL, TEXT, is_finished

_MARKER = re.compile(r"^--- abaco-nb (?:call (-?\d+)|end) @([0-9.]+) ---\n?", re.MULTILINE)
SHOWN_LINES = 20
KEPT_LINES = 2000
PREAMBLE = -1  # output before the first call (imports of the function's module, the runner's own lines)


def split_calls(text: str) -> dict[int, str]:
    """An execution's log as ``{call index: its output}`` (``PREAMBLE``: before the first call; after the
    end marker the runner's summary line joins the preamble)."""
    sections: dict[int, list[str]] = {}
    current, pos = PREAMBLE, 0
    for match in _MARKER.finditer(text):
        sections.setdefault(current, []).append(text[pos : match.start()])
        current = int(match.group(1)) if match.group(1) is not None else PREAMBLE
        pos = match.end()
    sections.setdefault(current, []).append(text[pos:])
    return {k: "".join(v) for k, v in sections.items() if "".join(v) or k != PREAMBLE}


def call_spans(text: str, finished: float | None = None) -> list[tuple[int, float, float | None]]:
    """``[(call index, start, end)]`` from the markers' times; a call ends where the next marker starts
    (the last one at ``finished``, or None while it runs)."""
    marks = [(m.group(1), float(m.group(2))) for m in _MARKER.finditer(text)]
    spans: list[tuple[int, float, float | None]] = []
    for n, (index, start) in enumerate(marks):
        if index is None:
            continue
        end = marks[n + 1][1] if n + 1 < len(marks) else finished
        spans.append((int(index), start, end))
    return spans


def strip_markers(text: str) -> str:
    """The log without the runner's marker lines (``CALL_MARKER``, ``END_MARKER``)."""
    return _MARKER.sub("", text)


def current_cell() -> str | None:
    """The message id of the cell the kernel is executing (None outside a Jupyter kernel)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or not getattr(shell, "kernel", None):
        return None
    parent = getattr(shell, "parent_header", None) or {}
    msg_id = parent.get("header", {}).get("msg_id") if isinstance(parent, dict) else None
    return str(msg_id) if msg_id else None


class LiveOutput:
    """Remote output shown in one cell: ``write(prefix, text)`` from any thread, redrawn at most every
    ``interval`` seconds. ``lines`` holds what was kept; ``render()`` gives the HTML and text shown."""

    def __init__(self, title: str = "remote output", interval: float = 0.5, link: str = "") -> None:
        self.title = title
        self.link = link
        self.interval = interval
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.total = 0  # lines written, including those no longer kept
        self._partial: dict[str, str] = {}  # prefix -> a line not ended yet
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._dirty = False
        self._timer: threading.Timer | None = None
        self.handle: Any = None

    def show(self) -> LiveOutput:
        """Display the (empty) output in the running cell; updates go to that display from then on."""
        from IPython.display import display

        self.handle = display(self._bundle(), raw=True, display_id=True)
        return self

    def write(self, prefix: str, text: str, final: bool = False) -> None:
        """Add ``text`` from the source ``prefix``; a trailing partial line waits for its end (or
        ``final``)."""
        if not text and not final:
            return
        with self._lock:
            pending = self._partial.pop(prefix, "") + text
            parts = pending.split("\n")
            rest = parts.pop()
            if rest and not final:
                self._partial[prefix] = rest
            elif rest:
                parts.append(rest)
            for line in parts:
                self.lines.append(f"[{prefix}] {line}")
                self.total += 1
            self._dirty = self._dirty or bool(parts)
        self._schedule()

    def _schedule(self) -> None:
        """Draw now if the last draw is old enough, else once when it is: rate-limited, never lost."""
        with self._lock:
            if not self._dirty or self._timer is not None:
                return
            wait = self._drawn + self.interval - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._timed)
                self._timer.daemon = True
                self._timer.start()
                return
        self.flush()

    def _timed(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush(self) -> None:
        """Redraw now (when anything changed)."""
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            self._drawn = time.monotonic()
        if self.handle is not None:
            self.handle.update(self._bundle(), raw=True)

    def _bundle(self) -> dict[str, str]:
        text, markup = self.render()
        return {"text/plain": text, "text/html": markup}

    def render(self) -> tuple[str, str]:
        """(plain text, HTML): the last lines, the rest behind "show all"."""
        with self._lock:
            kept = list(self.lines)
            total = self.total
        if not kept:
            return "", "<div class='abaco-live-output abaco-live-empty'></div>"
        tail = kept[-SHOWN_LINES:]
        head = f"{self.title}: {total} line{'s' if total != 1 else ''}"
        if total > len(tail):
            head += f", last {len(tail)} shown"
        box = (
            f"max-height:22em;overflow:auto;background:{PANEL};color:{TEXT};border:1px solid {BORDER};"
            f"padding:4px 6px;margin:2px 0;font-family:{CODE_FONT};white-space:pre-wrap"
        )
        more = ""
        if total > len(tail):
            dropped = (
                f" (the first {total - len(kept)} dropped; future.logs() has them)"
                if total > len(kept)
                else ""
            )
            more = (
                f"<details class='abaco-live-all'><summary><small>show all {len(kept)} kept lines{dropped}"
                f"</small></summary><pre style='{box}'>{html.escape(chr(10).join(kept))}</pre></details>"
            )
        link = f" · {self.link}" if self.link else ""
        markup = (
            f"<div class='abaco-live-output'><small style='color:{MUTED}'>{html.escape(head)}{link}</small>"
            f"<pre class='abaco-live-tail' style='{box}'>{html.escape(chr(10).join(tail))}</pre>{more}</div>"
        )
        return f"{head}\n" + "\n".join(tail), markup


class LogCursor:
    """What of one execution's log was already shown, so each poll writes only the new part."""

    def __init__(self) -> None:
        self.seen = 0
        self.current = PREAMBLE  # the call whose output the log is in at ``seen``

    def advance(self, text: str, final: bool = False) -> list[tuple[int, str]]:
        """The new complete lines since the last call (everything when ``final``), as
        ``[(call index, text)]`` in order. A line still being written waits, so a marker is never cut."""
        if len(text) < self.seen:  # logs were cut (head and tail): start over from the tail
            self.seen = 0
        end = len(text) if final else text.rfind("\n", self.seen) + 1
        if end <= self.seen:
            return []
        new, self.seen = text[self.seen : end], end
        out: list[tuple[int, str]] = []
        pos = 0
        for match in _MARKER.finditer(new):
            if match.start() > pos:
                out.append((self.current, new[pos : match.start()]))
            self.current = int(match.group(1)) if match.group(1) is not None else PREAMBLE
            pos = match.end()
        if pos < len(new):
            out.append((self.current, new[pos:]))
        return out


_CELLS: dict[tuple[str, str], LiveOutput] = {}
_CELLS_LOCK = threading.Lock()


def for_cell(key: str, title: str, link: str = "") -> LiveOutput | None:
    """The ``LiveOutput`` of the running cell for ``key`` (an executor or an actor), displayed on first
    use; None outside a Jupyter kernel. Several submits from one cell share one display."""
    cell = current_cell()
    if cell is None:
        return None
    with _CELLS_LOCK:
        out = _CELLS.get((cell, key))
        if out is None:
            if len(_CELLS) > 200:  # old cells' outputs: forget (their displays keep what they show)
                _CELLS.clear()
            out = _CELLS[(cell, key)] = LiveOutput(title, link=link).show()
    return out


class _LiveReprs:
    """One thread that keeps displayed reprs current (``AbacoExecutor``, ``Sweep``) while their work
    runs: each is redrawn at most once a ``interval`` when its HTML changed, and dropped when its
    ``live_finished()`` says so (after a last redraw)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._items: list[tuple[Any, Any, str]] = []  # (object, display handle, last HTML)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, obj: Any, handle: Any, shown: str) -> None:
        with self._lock:
            self._items.append((obj, handle, shown))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="abaco-live-reprs", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                items, self._items = self._items, []
            keep = []
            for obj, handle, shown in items:
                try:
                    finished = bool(obj.live_finished())
                    markup = obj._repr_html_()
                    if markup != shown:
                        handle.update({"text/plain": repr(obj), "text/html": markup}, raw=True)
                except Exception:  # a repr that fails stops updating; the kernel never sees it
                    continue
                if not finished:
                    keep.append((obj, handle, markup))
            with self._lock:
                self._items = keep + self._items
                if not self._items:
                    self._thread = None
                    return


LIVE_REPRS = _LiveReprs()


def show_live(obj: Any) -> None:
    """Display ``obj`` (its text and HTML reprs) and, in a Jupyter kernel, keep the display current
    until ``obj.live_finished()``: a repr that updates instead of a snapshot."""
    from IPython.display import display

    markup = obj._repr_html_()
    bundle = {"text/plain": repr(obj), "text/html": markup}
    if current_cell() is None:
        display(bundle, raw=True)
        return
    handle = display(bundle, raw=True, display_id=True)
    if not obj.live_finished():
        LIVE_REPRS.add(obj, handle, markup)


def follow(client: Any, actor_id: str, execution_id: str, title: str, interval: float = 0.5) -> bool:
    """Show a reactor execution's output live in the running cell until it ends (a background
    thread; the cell returns at once). False outside a Jupyter kernel."""
    from .page import dashboard_link

    link = dashboard_link(client, "full log", actor=actor_id, execution=execution_id)
    out = for_cell(f"actor {actor_id}", title, link)
    if out is None:
        return False

    def run() -> None:
        cursor, prefix = LogCursor(), f"exec {execution_id}"
        deadline = time.monotonic() + 24 * 3600
        while time.monotonic() < deadline:
            try:
                ended = is_finished(client.execution(actor_id, execution_id))
                text = client.logs(actor_id, execution_id)
            except Exception:  # the service went away: stop quietly, the cell keeps what it shows
                return
            for _index, chunk in cursor.advance(text, final=ended):
                out.write(prefix, chunk, final=ended)
            if ended:
                out.flush()
                return
            time.sleep(interval)

    threading.Thread(target=run, name=f"abaco-follow-{execution_id}", daemon=True).start()
    return True
