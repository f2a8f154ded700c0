"""The nightly schedule on Danish wall-clock time, across the daylight-saving nights of 2026
(summer time starts Sunday 29 March at 02:00, ends Sunday 25 October at 03:00): computed with
the job's trigger and a fake clock, the way the scheduler asks it, without waiting."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from coordination.config import Schedule
from coordination.jobs import NIGHTLY_SYNC
from coordination.scheduler import aligned_interval_trigger, job_trigger, latest_fire_time
from tests.scheduler import make_config

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def nightly_trigger(cron: str):
    config = make_config("sqlite:///not-used.db")
    config = dataclasses.replace(config, schedule=Schedule(cron, "Europe/Copenhagen"))
    return job_trigger(NIGHTLY_SYNC, config)


def fire_times(trigger, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The fire times a running scheduler gets between ``start`` and ``end``: after each run it
    asks for the next fire time after the last one, a moment after it fired."""
    times = []
    fire_time = trigger.get_next_fire_time(None, start)
    while fire_time is not None and fire_time <= end:
        assert not times or fire_time > times[-1], "fire times must strictly increase"
        times.append(fire_time)
        woke = fire_time + dt.timedelta(milliseconds=5)
        fire_time = trigger.get_next_fire_time(fire_time, woke)
        assert len(times) < 1000, "the trigger does not advance"
    return times


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=COPENHAGEN)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        # 02:30 does not exist on 29 March: it runs at 03:30 summer time (01:30 UTC).
        ("30 2 * * *", [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]),
        # 02:00 does not exist either: it runs at 03:00 summer time (01:00 UTC).
        ("0 2 * * *", [utc(2026, 3, 28, 1, 0), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0)]),
    ],
)
def test_the_spring_night_runs_the_job_once(cron, expected):
    times = fire_times(nightly_trigger(cron), local(2026, 3, 27, 12), local(2026, 3, 30, 12))
    assert times == expected


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        # 02:30 happens twice on 25 October: only the first (summer time, 00:30 UTC) runs.
        (
            "30 2 * * *",
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        ("0 2 * * *", [utc(2026, 10, 24, 0, 0), utc(2026, 10, 25, 0, 0), utc(2026, 10, 26, 1, 0)]),
    ],
)
def test_the_autumn_night_runs_the_job_once(cron, expected):
    times = fire_times(nightly_trigger(cron), local(2026, 10, 23, 12), local(2026, 10, 26, 12))
    assert times == expected


@pytest.mark.parametrize("cron", ["30 2 * * *", "0 2 * * *", "0 3 * * *", "45 1 * * *"])
def test_every_day_of_2026_runs_the_job_exactly_once(cron):
    times = fire_times(nightly_trigger(cron), local(2026, 1, 1), local(2026, 12, 31, 23, 59))
    days = Counter(t.astimezone(COPENHAGEN).date() for t in times)
    assert len(days) == 365
    assert set(days.values()) == {1}


def test_outside_the_change_nights_the_job_runs_at_the_configured_danish_time():
    times = fire_times(nightly_trigger("0 2 * * *"), local(2026, 1, 1), local(2026, 12, 31, 23, 59))
    clock = Counter(t.astimezone(COPENHAGEN).strftime("%H:%M") for t in times)
    assert clock == {"02:00": 364, "03:00": 1}  # 03:00 only on 29 March, when 02:00 is skipped


def test_a_scheduler_that_missed_the_autumn_night_catches_up_the_one_occurrence():
    trigger = nightly_trigger("30 2 * * *")
    missed = latest_fire_time(trigger, local(2026, 10, 25, 6, 0), dt.timedelta(hours=6))
    assert missed == utc(2026, 10, 25, 0, 30)


def test_a_night_missed_by_more_than_the_grace_time_is_not_caught_up():
    trigger = nightly_trigger("0 2 * * *")
    assert latest_fire_time(trigger, local(2026, 3, 3, 12, 0), dt.timedelta(hours=6)) is None


def test_the_testing_interval_gives_every_process_the_same_fire_times():
    now = utc(2026, 5, 1, 12, 0, 7)
    first, second = aligned_interval_trigger(5), aligned_interval_trigger(5)
    assert first.get_next_fire_time(None, now) == utc(2026, 5, 1, 12, 0, 10)
    assert second.get_next_fire_time(None, now + dt.timedelta(seconds=2)) == utc(
        2026, 5, 1, 12, 0, 10
    )
