"""Every day of a year, in zones with awkward DST changes, is covered once by the runs
Airflow itself places: the scheduler's timetable (as it holds it, serialised) and a backfill's
list of runs (``airflow.models.backfill._get_info_list``, what POST /backfills creates), read
by the tasks' own ``call_day`` with the pendulum datetimes the task runner gives them.
"""

from __future__ import annotations

from datetime import date, timedelta

import pendulum
import pytest

from callscribe.pipeline import call_day

pytestmark = pytest.mark.integration

ZONES = ["America/Havana", "Asia/Beirut", "America/Santiago", "Africa/Cairo", "Australia/Lord_Howe",
         "Asia/Kathmandu", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/New_York", "Europe/Berlin"]


def _context(run_type: str, start) -> dict:
    start = pendulum.instance(start)  # the Task SDK's coerce_datetime
    return {"params": {"prefix": "calls/", "date": None}, "logical_date": start, "data_interval_start": start,
            "dag_run": {"run_type": run_type, "logical_date": start, "data_interval_start": start}}


def _serialized_dag(monkeypatch, zone: str):
    from airflow.serialization.serialized_objects import DagSerialization

    from callscribe.local_run import get_dag

    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", zone)  # read when the DAG file is parsed, and by the tasks
    return DagSerialization.from_dict(DagSerialization.to_dict(get_dag()))


@pytest.mark.parametrize("zone", ZONES)
def test_scheduled_runs_cover_every_day_of_a_year_once(stack, monkeypatch, zone):
    from airflow.timetables.base import TimeRestriction

    timetable = _serialized_dag(monkeypatch, zone).timetable
    restriction = TimeRestriction(earliest=pendulum.datetime(2025, 1, 1, tz="UTC"), latest=None, catchup=True)
    last, days = None, []
    for _ in range(370):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        last = info.data_interval
        days.append(call_day(_context("scheduled", info.logical_date)))
    assert days == [days[0] + timedelta(days=k) for k in range(len(days))]


@pytest.mark.parametrize("zone, first, last", [
    ("America/Havana", date(2025, 3, 7), date(2025, 3, 11)),  # DST starts at midnight on 9 March
    ("Asia/Beirut", date(2025, 3, 28), date(2025, 4, 1)),  # on 30 March
    ("America/Santiago", date(2025, 9, 5), date(2025, 9, 9)),  # on 7 September
    ("Europe/Berlin", date(2025, 10, 24), date(2025, 10, 28)),  # a 25-hour day (26 October)
])
def test_a_backfill_across_a_dst_change_covers_each_day_once(stack, monkeypatch, zone, first, last):
    from airflow.models.backfill import _get_info_list

    dag = _serialized_dag(monkeypatch, zone)
    tz = pendulum.timezone(zone)
    infos = _get_info_list(from_date=pendulum.datetime(first.year, first.month, first.day, tz=tz),
                           to_date=pendulum.datetime(last.year, last.month, last.day, tz=tz), reverse=False, dag=dag)
    days = [call_day(_context("backfill", i.logical_date)) for i in infos]
    assert days == [first + timedelta(days=k) for k in range((last - first).days + 1)]
