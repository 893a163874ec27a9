"""Cron schedule arithmetic (server_ext/service/cron.py): formats, month ends, missed runs, ``now``."""

from __future__ import annotations

import datetime as dt

import pytest

from server_ext.service import cron
from server_ext.service.errors import AbacoError

T = dt.datetime(2024, 1, 31, 5, 42, 17)  # a fixed "now": 2024-01-31 05:42:17 UTC


@pytest.mark.parametrize(
    ("text", "start", "every", "unit"),
    [
        ("2024-02-01 00 + 1 hour", dt.datetime(2024, 2, 1, 0), 1, "hours"),
        ("2024-2-1 7 + 3 hours", dt.datetime(2024, 2, 1, 7), 3, "hours"),
        ("2030-12-31 23 + 2 days", dt.datetime(2030, 12, 31, 23), 2, "days"),
        ("2030-01-01 00 + 1 Week", dt.datetime(2030, 1, 1), 1, "weeks"),
        ("  2030-01-31 05   +  1   months ", dt.datetime(2030, 1, 31, 5), 1, "months"),
        ("now + 1 hour", None, 1, "hours"),
        ("now + 6 months", None, 6, "months"),
    ],
)
def test_parse_schedule(text: str, start: dt.datetime | None, every: int, unit: str) -> None:
    assert cron.parse_schedule(text) == cron.Schedule(start, every, unit)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "now",
        "tomorrow + 1 hour",
        "2030-01-01 + 1 hour",  # no hour
        "2030-01-01 00 + 1",  # no unit
        "2030-01-01 00 + 1 minute",
        "2030-01-01 00 + 0 hours",
        "2030-01-01 00 + -1 hours",
        "2030-13-01 00 + 1 hour",  # month 13
        "2030-02-30 00 + 1 hour",  # no such day
        "2030-01-01 24 + 1 hour",
        "2030-01-01 00 - 1 hour",
        "2030-01-01 00:00 + 1 hour",
    ],
)
def test_bad_formats_are_400_naming_the_field(text: str) -> None:
    with pytest.raises(AbacoError) as err:
        cron.parse_schedule(text)
    assert err.value.status == 400
    assert "cron_schedule" in err.value.message


def test_first_run_is_the_start_or_this_hour_for_now() -> None:
    assert cron.first_run("2024-01-31 05 + 1 hour", T) == "2024-01-31 05"  # this hour is not old
    assert cron.first_run("2024-02-29 13 + 1 month", T) == "2024-02-29 13"
    assert cron.first_run("now + 1 day", T) == "2024-01-31 05"
    assert cron.first_run("now + 1 day", T.replace(tzinfo=dt.timezone.utc)) == "2024-01-31 05"


def test_first_run_refuses_a_start_in_the_past_with_the_current_time() -> None:
    with pytest.raises(AbacoError) as err:
        cron.first_run("2024-01-31 04 + 1 hour", T)
    assert "cron_schedule" in err.value.message
    assert "The starting datetime is old. The current UTC time is 2024-01-31 05" in err.value.message
    with pytest.raises(AbacoError):
        cron.first_run("1955-11-05 06 + 1 day", T)


def test_timezone_aware_now_is_converted_to_utc() -> None:
    chicago = dt.timezone(dt.timedelta(hours=-6))
    assert cron.hour_of(dt.datetime(2024, 1, 30, 23, 59, tzinfo=chicago)) == dt.datetime(2024, 1, 31, 5)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (dt.datetime(2024, 1, 31, 5), 1, dt.datetime(2024, 2, 29, 5)),  # leap year
        (dt.datetime(2023, 1, 31, 5), 1, dt.datetime(2023, 2, 28, 5)),
        (dt.datetime(2024, 1, 31, 5), 2, dt.datetime(2024, 3, 31, 5)),  # back to the 31st
        (dt.datetime(2024, 1, 31, 5), 3, dt.datetime(2024, 4, 30, 5)),
        (dt.datetime(2024, 11, 30, 0), 2, dt.datetime(2025, 1, 30, 0)),  # across the year
        (dt.datetime(2024, 12, 15, 0), 1, dt.datetime(2025, 1, 15, 0)),
        (dt.datetime(2024, 2, 29, 0), 12, dt.datetime(2025, 2, 28, 0)),
        (dt.datetime(2024, 2, 29, 0), 48, dt.datetime(2028, 2, 29, 0)),
    ],
)
def test_add_months_clamps_the_day(start: dt.datetime, months: int, expected: dt.datetime) -> None:
    assert cron.add_months(start, months) == expected


def test_step_fires_in_its_hour_and_moves_to_the_next_run() -> None:
    assert cron.step("2024-01-31 05 + 1 hour", "2024-01-31 05", T) == cron.Step(True, "2024-01-31 06")
    assert cron.step("2024-01-31 05 + 3 days", "2024-01-31 05", T) == cron.Step(True, "2024-02-03 05")
    assert cron.step("2024-01-31 05 + 2 weeks", "2024-01-31 05", T) == cron.Step(True, "2024-02-14 05")
    assert cron.step("2024-01-31 05 + 1 month", "2024-01-31 05", T) == cron.Step(True, "2024-02-29 05")


def test_step_waits_for_a_future_run() -> None:
    assert cron.step("2024-01-31 06 + 1 hour", "2024-01-31 06", T) == cron.Step(False, "2024-01-31 06")
    assert cron.step("2030-01-01 00 + 1 day", "2030-01-01 00", T) == cron.Step(False, "2030-01-01 00")


def test_monthly_runs_keep_the_start_day_instead_of_drifting() -> None:
    text = "2024-01-31 05 + 1 month"
    runs, next_ex = [], "2024-01-31 05"
    for month in range(1, 8):  # a pass in each month's run hour
        at = cron.parse_hour(next_ex) + dt.timedelta(minutes=10)
        step = cron.step(text, next_ex, at)
        assert step.fire, (month, next_ex)
        runs.append(next_ex)
        next_ex = step.next_ex
    assert runs == [
        "2024-01-31 05",
        "2024-02-29 05",
        "2024-03-31 05",
        "2024-04-30 05",
        "2024-05-31 05",
        "2024-06-30 05",
        "2024-07-31 05",
    ]


def test_missed_runs_are_skipped_and_the_current_one_fires() -> None:
    # Down from 01:00 to 05:42: runs at 01, 02, 03, 04 are skipped; 05 is this hour and fires once.
    assert cron.step("2024-01-31 01 + 1 hour", "2024-01-31 01", T) == cron.Step(True, "2024-01-31 06")
    # Every 3 hours from 00: 00, 03 missed, 06 is next (in the future): nothing now.
    assert cron.step("2024-01-31 00 + 3 hours", "2024-01-31 00", T) == cron.Step(False, "2024-01-31 06")
    # Every 5 hours from 00: 00 missed, 05 is now.
    assert cron.step("2024-01-31 00 + 5 hours", "2024-01-31 00", T) == cron.Step(True, "2024-01-31 10")
    # Weekly on Wednesdays (2024-01-31 is one), down for months: this week's run is now.
    step = cron.step("2023-11-01 05 + 1 week", "2023-11-08 05", T)
    assert step == cron.Step(True, "2024-02-07 05")
    # Weekly on Thursdays: the next run keeps the weekday and the hour, nothing now.
    step = cron.step("2023-11-02 05 + 1 week", "2023-11-09 05", T)
    assert step == cron.Step(False, "2024-02-01 05")
    # Monthly on the 31st, down since October: January 31st 05 is now.
    assert cron.step("2023-10-31 05 + 1 month", "2023-11-30 05", T) == cron.Step(True, "2024-02-29 05")
    # Monthly at 06, missed in December: January's run is later today.
    assert cron.step("2023-12-31 06 + 1 month", "2023-12-31 06", T) == cron.Step(False, "2024-01-31 06")


def test_now_schedules_count_from_their_next_run() -> None:
    first = cron.first_run("now + 1 hour", T)
    step = cron.step("now + 1 hour", first, T + dt.timedelta(minutes=5))
    assert step == cron.Step(True, "2024-01-31 06")
    assert cron.step("now + 1 day", "2024-01-29 05", T) == cron.Step(True, "2024-02-01 05")
    assert cron.step("now + 2 days", "2024-01-28 07", T) == cron.Step(False, "2024-02-01 07")


def test_unpadded_next_ex_from_abaco_is_read() -> None:
    assert cron.parse_hour("2021-3-9 5") == dt.datetime(2021, 3, 9, 5)
    with pytest.raises(ValueError):
        cron.parse_hour("2021-03-09")
