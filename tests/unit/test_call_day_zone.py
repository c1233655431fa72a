"""Call days in the recorder's time zone (CALLSCRIBE_TIMEZONE): the DAG runs at that zone's
midnight, and every stage reads the run's day in it, DST changes included."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from callscribe.config import day_zone
from callscribe.pipeline import BadParam, call_day


def _scheduled(start: datetime) -> dict:
    return {"params": {"prefix": "calls/", "date": None}, "logical_date": start, "data_interval_start": start,
            "dag_run": {"run_type": "scheduled", "logical_date": start, "data_interval_start": start}}


def test_utc_unless_told(monkeypatch):
    monkeypatch.delenv("CALLSCRIBE_TIMEZONE", raising=False)
    assert day_zone() == ZoneInfo("UTC")


def test_a_zone_that_does_not_exist_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="CALLSCRIBE_TIMEZONE.*Mars/Olympus_Mons"):
        day_zone()


@pytest.mark.parametrize("zone, start, day", [
    # Midnight east of Greenwich is the evening before in UTC: the day is the zone's.
    ("Europe/Berlin", datetime(2031, 3, 29, 23, 0, tzinfo=UTC), date(2031, 3, 30)),  # the day DST starts
    ("Europe/Berlin", datetime(2031, 3, 30, 22, 0, tzinfo=UTC), date(2031, 3, 31)),
    ("Australia/Sydney", datetime(2031, 6, 30, 14, 0, tzinfo=UTC), date(2031, 7, 1)),
    ("America/New_York", datetime(2031, 3, 9, 5, 0, tzinfo=UTC), date(2031, 3, 9)),
    # Where DST skips midnight, the day's run starts at 01:00 (Airflow's cron): still that day.
    ("America/Havana", datetime(2031, 3, 9, 5, 0, tzinfo=UTC), date(2031, 3, 9)),
])
def test_a_scheduled_run_covers_the_zone_s_day(monkeypatch, zone, start, day):
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", zone)
    assert call_day(_scheduled(start)) == day


def test_a_manual_run_without_a_logical_date_covers_the_zone_s_last_whole_day(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "Asia/Tokyo")
    # 2031-03-01 20:00 UTC is 05:00 on 2 March in Tokyo: the last whole day there is 1 March.
    ctx = {"params": {}, "dag_run": {"logical_date": None, "run_after": datetime(2031, 3, 1, 20, 0, tzinfo=UTC)}}
    assert call_day(ctx) == date(2031, 3, 1)
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "UTC")
    assert call_day(ctx) == date(2031, 2, 28)


def test_a_scheduled_run_from_a_scheduler_in_another_zone_is_refused(monkeypatch):
    """The scheduler made the run at Berlin's midnight; a worker reading the day in UTC would
    take the day before (its folder, its recordings): the stage fails and says why instead."""
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "UTC")
    with pytest.raises(BadParam, match="CALLSCRIBE_TIMEZONE"):
        call_day(_scheduled(datetime(2031, 3, 30, 22, 0, tzinfo=UTC)))
    # One hour apart is caught too (01:00 is a day's start only where midnight was skipped).
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "Europe/Berlin")
    with pytest.raises(BadParam, match="01:00 CET"):
        call_day(_scheduled(datetime(2031, 1, 15, 0, 0, tzinfo=UTC)))
    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "UTC")
    # A manual run with a logical date a person picked at any hour is read as it is.
    ctx = _scheduled(datetime(2031, 3, 30, 22, 0, tzinfo=UTC))
    ctx["dag_run"]["run_type"] = "manual"
    assert call_day(ctx) == date(2031, 3, 30)


def test_a_date_whose_lookback_reaches_before_the_calendar_is_refused_as_a_param():
    """date=0001-01-01 with lookback_days failed in discovery with an OverflowError (retried like an
    outage, then red with a traceback); it is a bad Param, refused before anything is listed."""
    with pytest.raises(BadParam, match="lookback_days"):
        call_day({"params": {"prefix": "calls/", "date": "0001-01-02", "lookback_days": 3}})
    assert call_day({"params": {"prefix": "calls/", "date": "0001-01-04", "lookback_days": 3}}) == date(1, 1, 4)
