"""The execution timeline: one lane per worker, one bar per execution, as an SVG string.

Pure drawing from execution records (no I/O), so the dashboard, a notebook (``timeline_svg(...)`` in
``IPython.display.SVG``) and tests all use the same picture.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from typing import Any

from ..records import OUTCOME_COLOURS, STATUS_COLOURS, outcome, parse_time

TEXT_STYLE = "fill:var(--jp-content-font-color2, #616161)"  # readable on light and dark themes
LANE_STYLE = "stroke:var(--jp-border-color2, #e0e0e0)"

LANE = 22
LABEL = 120
PAD = 6


def _field(record: dict[str, Any], name: str) -> Any:
    head, *rest = name.split("_")
    camel = head + "".join(p.title() for p in rest)
    return record.get(name, record.get(camel))


def timeline_svg(
    executions: Iterable[dict[str, Any]], width: int = 640, now: dt.datetime | None = None
) -> str:
    """An SVG with a lane per worker; bars from start to finish (to ``now`` while running)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    bars: list[tuple[str, dt.datetime, dt.datetime, str, str, str]] = []
    for ex in executions:
        start = parse_time(_field(ex, "start_time"))
        if start is None:
            continue
        finish = parse_time(_field(ex, "finish_time")) or now
        worker = str(_field(ex, "worker_id") or "?")
        status = str(ex.get("status", ""))
        colour = (
            OUTCOME_COLOURS[outcome(ex)]
            if status in ("COMPLETE", "ERROR")
            else STATUS_COLOURS.get(status, "#424242")
        )
        bars.append((worker, start, max(finish, start), status, str(ex.get("id", "")), colour))
    if not bars:
        return (
            f"<svg xmlns='http://www.w3.org/2000/svg' class='abaco-timeline' width='{width}' height='30'>"
            f"<text x='6' y='19' font-size='12' style='{TEXT_STYLE}'>no executions have started yet</text></svg>"
        )
    workers = sorted({b[0] for b in bars}, key=lambda wid: min(b[1] for b in bars if b[0] == wid))
    t0 = min(b[1] for b in bars)
    t1 = max(b[2] for b in bars)
    span = max((t1 - t0).total_seconds(), 1e-3)
    plot = width - LABEL - PAD
    height = LANE * len(workers) + 24
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='abaco-timeline' width='100%' viewBox='0 0 {width} {height}' "
        f"style='max-width:{width}px' font-family='sans-serif' font-size='11'>"
    ]
    for i, wid in enumerate(workers):
        y = i * LANE + 4
        out.append(f"<text x='4' y='{y + 14}' style='{TEXT_STYLE}'>worker {html.escape(wid[:9])}</text>")
        out.append(
            f"<line x1='{LABEL}' y1='{y + LANE - 2}' x2='{width - PAD}' y2='{y + LANE - 2}' style='{LANE_STYLE}'/>"
        )
    for worker, start, finish, status, eid, colour in bars:
        y = workers.index(worker) * LANE + 4
        x = LABEL + (start - t0).total_seconds() / span * plot
        bw = max(2.0, (finish - start).total_seconds() / span * plot)
        secs = (finish - start).total_seconds()
        out.append(
            f"<rect class='abaco-timeline-bar' x='{x:.1f}' y='{y + 2}' width='{bw:.1f}' height='{LANE - 6}' "
            f"rx='3' fill='{colour}'><title>{html.escape(eid)} {html.escape(status)} {secs:.2f} s</title></rect>"
        )
    axis_y = LANE * len(workers) + 18
    out.append(f"<text x='{LABEL}' y='{axis_y}' style='{TEXT_STYLE}'>0 s</text>")
    out.append(
        f"<text x='{width - PAD}' y='{axis_y}' style='{TEXT_STYLE}' text-anchor='end'>{span:.2f} s</text>"
    )
    out.append("</svg>")
    return "".join(out)
