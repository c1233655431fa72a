"""Call days at the edges of time zones, with the datetimes Airflow's task runner gives.

The Task SDK hands a task ``logical_date`` and ``data_interval_start`` as pendulum DateTimes
(``coerce_datetime``), not the standard library's: a day's reading must not depend on which.
"""

from datetime import UTC, date, datetime

import pendulum
import pytest

from callscribe.pipeline import BadParam, call_day


def _run(run_type: str, start: datetime) -> dict:
    return {"params": {"prefix": "calls/", "date": None}, "logical_date": start, "data_interval_start": start,
            "dag_run": {"run_type": run_type, "logical_date": start, "data_interval_start": start}}


# Zones whose DST starts at midnight: the day's cron fires at 01:00 (the midnight does not exist).
@pytest.mark.parametrize("zone, start_utc, day", [
    ("America/Havana", (2025, 3, 9, 5), date(2025, 3, 9)),
    ("Asia/Beirut", (2025, 3, 29, 22), date(2025, 3, 30)),
    ("America/Santiago", (2025, 9, 7, 4), date(2025, 9, 7)),
    ("Africa/Cairo", (2025, 4, 24, 22), date(2025, 4, 25)),
])
@pytest.mark.parametrize("run_type", ["scheduled", "backfill"])
def test_a_run_at_a_skipped_midnight_covers_its_day_as_the_task_runner_gives_it(monkeypatch, zone, start_utc, day,
                                                                                 run_type):
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", zone)
    start = pendulum.datetime(*start_utc, tz="UTC")  # what context["logical_date"] is in a task
    assert call_day(_run(run_type, start)) == day
    # The standard library's datetime reads the same.
    assert call_day(_run(run_type, datetime(*start_utc, tzinfo=UTC))) == day


def test_an_hour_off_is_still_refused_with_pendulum(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "Europe/Berlin")
    with pytest.raises(BadParam, match="01:00 CET"):
        call_day(_run("scheduled", pendulum.datetime(2031, 1, 15, 0, tz="UTC")))


def test_a_run_made_before_the_zone_changed_says_how_to_run_its_day_again(monkeypatch):
    """A scheduled run created while CALLSCRIBE_TIMEZONE was UTC, cleared (or still running)
    after it became America/New_York: it cannot be read safely, and clearing it again never
    helps, so the refusal names the way that works (a manual run with the date Param)."""
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "America/New_York")
    with pytest.raises(BadParam, match="date Param"):
        call_day(_run("scheduled", pendulum.datetime(2026, 11, 24, 0, tz="UTC")))
