"""callscribe.airflow_fixes: Airflow 3.3's clear of a run with a queued-at deadline (apache/airflow#70368).

The clear itself, through the API server as the UI calls it, is
tests/integration/test_scheduler_ui_marks.py::test_a_red_run_can_be_cleared_with_downstream_or_backfilled_again
(make chaos: it starts a scheduler)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import airflow
import pytest

from callscribe import airflow_fixes


def test_the_stored_interval_is_read_in_either_form():
    from airflow.sdk.serde import serialize

    assert airflow_fixes.deadline_interval(serialize(timedelta(hours=8))) == timedelta(hours=8)  # 3.3 on: JSON
    assert airflow_fixes.deadline_interval(28800.0) == timedelta(hours=8)  # before 3.3: seconds
    with pytest.raises(TypeError):
        airflow_fixes.deadline_interval(serialize("eight hours"))


def test_the_fix_is_in_place_on_this_airflow_and_applying_it_again_changes_nothing():
    from airflow.models import taskinstance

    assert airflow.__version__ in airflow_fixes.AFFECTED  # when Airflow moves on, check #70370 landed
    assert airflow_fixes.apply() is True and airflow_fixes.apply() is True
    assert taskinstance._recalculate_dagrun_queued_at_deadlines is airflow_fixes.move_queued_at_deadlines


class _Session:
    def __init__(self, rows):
        self.rows = rows

    def execute(self, statement):
        self.statement = statement
        return SimpleNamespace(all=lambda: self.rows)


def test_each_pending_queued_at_deadline_moves_to_the_new_queue_time_plus_its_interval():
    from airflow.sdk.serde import serialize

    deadlines = [SimpleNamespace(deadline_time=None), SimpleNamespace(deadline_time=None)]
    alerts_ = [SimpleNamespace(interval=serialize(timedelta(hours=8))), SimpleNamespace(interval=3600.0)]
    session = _Session(list(zip(deadlines, alerts_, strict=True)))
    queued = datetime(2026, 11, 27, 9, tzinfo=UTC)
    airflow_fixes.move_queued_at_deadlines(SimpleNamespace(id=7), queued, session)
    assert [d.deadline_time for d in deadlines] == [queued + timedelta(hours=8), queued + timedelta(hours=1)]
    sql = str(session.statement.compile(compile_kwargs={"literal_binds": True}))
    assert "deadline.dagrun_id = 7" in sql and "DagRunQueuedAtDeadline" in sql  # this run's, queued-at ones
