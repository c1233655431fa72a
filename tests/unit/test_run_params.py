"""The run's day and Params as the package checks them, with plain dict contexts (no Airflow)."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from callscribe.pipeline import BadParam, call_day, check_date, check_prefix

GOOD_PREFIXES = ["calls/", "calls", "", "site-a/calls/", "recordings/2026/", "calls_callscribe/", "x/_callscribe/"]
BAD_PREFIXES = ["_callscribe/", "_callscribe", "_callscribe/runs/", "/calls/", "../calls/", "calls/../_callscribe/",
                "calls/..", "s3://calls/calls/", "file:///etc/",
                # The erasures' notes: the Trigger form took them, discover refused them (review 2)
                "_callscribe_erasures/", "_callscribe_erasures", "_callscribe_erasures/calls/"]


def test_scheduled_run_covers_its_logical_date():
    ctx = {"params": {"prefix": "calls/", "date": None},
           "logical_date": datetime(2026, 11, 24, tzinfo=UTC),
           "data_interval_start": datetime(2026, 11, 24, tzinfo=UTC)}
    assert call_day(ctx) == date(2026, 11, 24)


def test_the_date_param_wins():
    ctx = {"params": {"prefix": "calls/", "date": "2026-11-02"}, "logical_date": datetime(2026, 11, 24, tzinfo=UTC)}
    assert call_day(ctx) == date(2026, 11, 2)


def test_a_logical_date_in_another_zone_is_read_in_utc():
    cet = timezone(timedelta(hours=1))
    assert call_day({"params": {}, "logical_date": datetime(2026, 11, 25, 0, 30, tzinfo=cet)}) == date(2026, 11, 24)


@pytest.mark.parametrize("run_after, day", [
    (datetime(2026, 11, 25, 10, 30, tzinfo=UTC), date(2026, 11, 24)),
    (datetime(2026, 11, 25, 0, 0, tzinfo=UTC), date(2026, 11, 24)),  # the moment a scheduled run would start
    (datetime(2026, 11, 25, 23, 59, tzinfo=UTC), date(2026, 11, 24)),
])
def test_a_manual_run_without_a_logical_date_covers_the_last_whole_day(run_after, day):
    # What Airflow 3 gives a run triggered with logical_date None: no logical_date or data
    # interval keys in the context, the dag run's logical_date None, run_after the trigger time.
    ctx = {"params": {"prefix": "calls/", "date": None},
           "dag_run": {"logical_date": None, "data_interval_start": None, "run_after": run_after}}
    assert call_day(ctx) == day


def test_a_manual_run_without_a_logical_date_can_name_its_day():
    ctx = {"params": {"prefix": "calls/", "date": "2026-10-01"},
           "dag_run": {"logical_date": None, "run_after": datetime(2026, 11, 25, 10, tzinfo=UTC)}}
    assert call_day(ctx) == date(2026, 10, 1)


def test_a_run_with_no_day_at_all_is_refused():
    with pytest.raises(BadParam, match="which day"):
        call_day({"params": {"date": None}, "dag_run": {"logical_date": None, "run_after": None}})


@pytest.mark.parametrize("prefix", GOOD_PREFIXES)
def test_key_prefixes_are_taken(prefix):
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_prefixes_outside_the_uploads_are_refused(prefix):
    with pytest.raises(BadParam):
        check_prefix(prefix)


def test_call_day_refuses_a_bad_prefix_before_anything_else():
    ctx = {"params": {"prefix": "_callscribe/", "date": "2026-11-24"}}
    with pytest.raises(BadParam, match="work area"):
        call_day(ctx)


@pytest.mark.parametrize("value", ["20261124", "2026-W48-2", "2026-02-30", "2026-11-24T00:00:00", "24/11/2026",
                                   " 2026-11-24"])
def test_dates_must_be_calendar_days_written_yyyy_mm_dd(value):
    with pytest.raises(BadParam):
        check_date(value)
    with pytest.raises(BadParam):
        call_day({"params": {"date": value}, "logical_date": datetime(2026, 11, 24, tzinfo=UTC)})


def test_a_good_date():
    assert check_date("2028-02-29") == date(2028, 2, 29)
