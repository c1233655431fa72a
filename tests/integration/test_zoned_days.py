"""A deployment whose recorder names day folders in local time (CALLSCRIBE_TIMEZONE).

The DAG's runs then start at that zone's midnight, and a run covers the zone's day: the
folder the recorder has just finished, not the UTC day that ended hours before or after.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pendulum
import pytest

from callscribe.samples import sample_files
from tests.integration.helpers import run_covered, upload_day

pytestmark = pytest.mark.integration
DAY = date(2031, 3, 30)  # no other test uses it; Europe's DST starts that night


def test_the_schedule_fires_at_the_zone_s_midnight(stack, monkeypatch):
    from airflow.serialization.serialized_objects import decode_timetable, encode_timetable
    from airflow.timetables.base import TimeRestriction

    from callscribe.local_run import get_dag

    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "Asia/Tokyo")  # read when the DAG file is parsed
    timetable = decode_timetable(encode_timetable(get_dag().timetable))  # as the scheduler holds it
    info = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=pendulum.datetime(2031, 3, 29, 12, tz="UTC"), latest=None, catchup=True))
    # Tokyo's 30 March starts at 15:00 UTC on the 29th; its run is queued when the day ends there.
    assert info.logical_date == datetime(2031, 3, 29, 15, 0, tzinfo=UTC)
    assert info.data_interval.end == datetime(2031, 3, 30, 15, 0, tzinfo=UTC)


def test_a_run_covers_the_zone_s_day_folder(stack, s3, pg, monkeypatch):
    from callscribe.local_run import run_day

    monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "Asia/Tokyo")
    upload_day(s3, DAY, files=sample_files()[:1])
    dr = run_day(DAY)
    assert dr.logical_date == datetime(2031, 3, 29, 15, 0, tzinfo=UTC)  # Tokyo's midnight, in UTC
    assert str(dr.state).rsplit(".", 1)[-1].lower() == "success"
    assert run_covered(pg, dr) == (DAY, ["done"])
