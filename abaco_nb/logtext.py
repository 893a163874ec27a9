"""Logs as a cell shows them: the last lines, the rest behind "show all", head and tail when huge.

A flood of output must not freeze the notebook or bloat the saved file (a 1 MB log once made a
2.3 MB notebook): a cell shows ``SHOWN_LINES`` lines, keeps at most ``KEPT_CHARS`` behind "show all"
(head and tail, since a traceback is at the end) and links the full log on the dashboard page.
Pure string functions, shared by the magics, the widgets and the live output.
"""

from __future__ import annotations

import html

from .records import BORDER, CODE_FONT, MUTED, PANEL, TEXT

SHOWN_LINES = 40  # the lines of a log a cell shows before "show all"
KEPT_CHARS = 200_000  # at most this much of a log goes into the notebook (head and tail)


def collapse(text: str, lines: int = SHOWN_LINES) -> tuple[str, int]:
    """The last ``lines`` lines of ``text`` and how many lines it has in all."""
    all_lines = text.splitlines()
    return "\n".join(all_lines[-lines:]), len(all_lines)


def head_and_tail(text: str, limit: int = KEPT_CHARS) -> str:
    """``text`` when short; else its head and tail with a marker between (a traceback is at the end)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… {len(text) - limit} characters left out …\n{text[-half:]}"


def log_block(text: str, title: str, link: str = "") -> str:
    """Logs as HTML for a cell: the last lines in a themed monospace box, everything else behind
    "show all", and a link to the full log on the dashboard page."""
    tail, count = collapse(text)
    box = (
        f"max-height:24em;overflow:auto;background:{PANEL};color:{TEXT};border:1px solid {BORDER};"
        f"padding:6px;margin:2px 0;font-family:{CODE_FONT};white-space:pre-wrap"
    )
    body = html.escape(tail) if text else "<i>(empty)</i>"
    more = ""
    if count > SHOWN_LINES:
        more = (
            f"<details class='abaco-logs-all'><summary><small>show all {count} lines</small></summary>"
            f"<pre style='{box}'>{html.escape(head_and_tail(text))}</pre></details>"
        )
    shown = f" · last {SHOWN_LINES} of {count} lines" if count > SHOWN_LINES else ""
    links = f" · {link}" if link else ""
    return (
        f"<div class='abaco-logs'><small style='color:{MUTED}'>{title}{shown}{links}</small>"
        f"<pre class='abaco-logs-tail' style='{box}'>{body}</pre>{more}</div>"
    )
