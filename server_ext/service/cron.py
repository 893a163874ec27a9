"""Abaco's cron schedules, as pure arithmetic over UTC hours.

A schedule is ``"YYYY-MM-DD HH + <n> <unit>"`` or ``"now + <n> <unit>"`` with unit hour(s), day(s),
week(s) or month(s) (reference/abaco-api.md §1.4, §5.4). Abaco works at hour granularity: an actor's
``cron_next_ex`` (``"YYYY-MM-DD HH"``) is the hour of its next run, and the cron pass fires when it
equals the current hour. Everything here takes the current time as an argument, so the rules (month
ends, skipping missed slots, ``now``) are tested without clocks or threads; ``automation`` runs the pass.

Months are added to the schedule's *start* (``start + k*n months``), with the day clamped to the
month's end, so a schedule starting on the 31st runs on the last day of short months and goes back to
the 31st afterwards (Abaco adds to the previous run, so it drifts to the 28th for good).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

from .errors import AbacoError

CRON_EXECUTOR = "cron"  # the execution's ``executor``; such executions get no ``_abaco_username``
CRON_MESSAGE = "This is your cron execution"
UNITS = {"hour": "hours", "day": "days", "week": "weeks", "month": "months"}
_SCHEDULE_RE = re.compile(
    r"^\s*(?P<start>now|\d{4}-\d{1,2}-\d{1,2}\s+\d{1,2})\s*\+\s*(?P<n>\d+)\s+(?P<unit>[a-zA-Z]+)\s*$"
)
_HOUR_RE = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})\s+(\d{1,2})\s*$")
FORMAT_HELP = (
    "Invalid cron_schedule: {value!r}. Use 'YYYY-MM-DD HH + <number> <unit>' or 'now + <number> <unit>', "
    "with unit hour(s), day(s), week(s) or month(s), in UTC; for example '2030-01-31 05 + 1 month'."
)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: ``start`` is None for ``now`` (the hour it is registered)."""

    start: dt.datetime | None
    every: int
    unit: str  # hours | days | weeks | months


@dataclass(frozen=True)
class Step:
    """What one cron pass does for an actor: queue the cron message or not, and the new ``cron_next_ex``."""

    fire: bool
    next_ex: str


def hour_of(t: dt.datetime) -> dt.datetime:
    """``t`` truncated to the hour, naive UTC (the only resolution cron has)."""
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t.replace(minute=0, second=0, microsecond=0)


def format_hour(t: dt.datetime) -> str:
    """``cron_next_ex`` as shown: ``"YYYY-MM-DD HH"``."""
    return t.strftime("%Y-%m-%d %H")


def parse_hour(text: str) -> dt.datetime:
    """``"YYYY-MM-DD HH"`` (also Abaco's unpadded ``"2021-3-9 5"``) to a naive UTC datetime."""
    match = _HOUR_RE.match(text)
    if match is None:
        raise ValueError(f"not an hour: {text!r}")
    year, month, day, hour = (int(g) for g in match.groups())
    return dt.datetime(year, month, day, hour)


def parse_schedule(text: str) -> Schedule:
    """Check the format only (a stored schedule may have started long ago); else 400 naming the field."""
    match = _SCHEDULE_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise AbacoError(FORMAT_HELP.format(value=text))
    word = match["unit"].lower()
    unit = UNITS.get(word) or (word if word in UNITS.values() else None)
    every = int(match["n"])
    if unit is None or every < 1:
        raise AbacoError(FORMAT_HELP.format(value=text))
    start = None
    if match["start"] != "now":
        try:
            start = parse_hour(match["start"])
        except ValueError:  # e.g. month 13 or hour 24
            raise AbacoError(FORMAT_HELP.format(value=text)) from None
    return Schedule(start, every, unit)


def add_months(t: dt.datetime, months: int) -> dt.datetime:
    """``t`` plus ``months`` calendar months, the day clamped to the target month's last day."""
    index = t.year * 12 + (t.month - 1) + months
    year, month = divmod(index, 12)
    day = min(t.day, calendar.monthrange(year, month + 1)[1])
    return t.replace(year=year, month=month + 1, day=day)


def slot(anchor: dt.datetime, schedule: Schedule, k: int) -> dt.datetime:
    """The ``k``-th run after ``anchor`` (``k = 0`` is the anchor itself)."""
    n = k * schedule.every
    if schedule.unit == "months":
        return add_months(anchor, n)
    return anchor + dt.timedelta(**{schedule.unit: n})


def first_run(text: str, now: dt.datetime) -> str:
    """``cron_next_ex`` for a schedule set at registration or PUT: its start (``now``: this hour).
    A start before the current hour is refused, as Abaco does, with the current UTC time."""
    schedule = parse_schedule(text)
    current = hour_of(now)
    if schedule.start is None:
        return format_hour(current)
    if schedule.start < current:
        raise AbacoError(
            f"Invalid cron_schedule: The starting datetime is old. The current UTC time is "
            f"{format_hour(current)}; {text!r} starts at {format_hour(schedule.start)}."
        )
    return format_hour(schedule.start)


def _first_slot_at_or_after(anchor: dt.datetime, schedule: Schedule, target: dt.datetime) -> dt.datetime:
    """The earliest run ``>= target`` on the schedule anchored at ``anchor`` (``anchor <= target``)."""
    if schedule.unit != "months":
        width = slot(anchor, schedule, 1) - anchor
        k = -(-(target - anchor) // width)  # ceiling division of timedeltas
        return slot(anchor, schedule, k)
    k = max(0, ((target.year - anchor.year) * 12 + target.month - anchor.month) // schedule.every - 1)
    while slot(anchor, schedule, k) < target:
        k += 1
    return slot(anchor, schedule, k)


def step(text: str, next_ex: str, now: dt.datetime) -> Step:
    """One cron pass for one actor (§5.4): fire when ``next_ex`` is the current hour, then move it to
    the following run; when it is in the past (the service was down), skip the missed runs to the first
    one at or after now, firing if that is this hour; in the future, nothing. The runs are counted from
    the schedule's start, or from ``next_ex`` for a ``now`` schedule (its start is not written down)."""
    schedule = parse_schedule(text)
    current = hour_of(now)
    due = parse_hour(next_ex)
    if due > current:
        return Step(False, format_hour(due))
    anchor = schedule.start if schedule.start is not None and schedule.start <= due else due
    if due < current:
        due = _first_slot_at_or_after(anchor, schedule, current)
        if due > current:
            return Step(False, format_hour(due))
    following = _first_slot_at_or_after(anchor, schedule, current + dt.timedelta(hours=1))
    return Step(True, format_hour(following))
