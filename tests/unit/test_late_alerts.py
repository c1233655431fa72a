"""The "run late" alert is for runs still going (review).

Airflow 3.3 deletes a run's deadline only when the scheduler finds the run succeeded
(DagRun.update_state); a run that failed, or that was marked success or failed in the UI,
keeps it, and the scheduler fires it CALLSCRIBE_DEADLINE_HOURS after the run was queued: the
callback gets the run as it is then (Deadline.handle_miss), so it can tell.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from callscribe import alerts


@pytest.mark.parametrize("state", ["failed", "success"])
def test_a_run_that_ended_before_its_deadline_raises_no_late_alert(caplog, state):
    run = {"dag_id": "transcribe_calls", "run_id": "scheduled__x", "state": state,
           "end_date": "2026-11-27T01:00:00Z"}
    with caplog.at_level(logging.INFO, logger="callscribe.alerts"):
        asyncio.run(alerts.deadline_missed(hours=8, context={"dag_run": run}))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert f"ended {state} before its deadline" in caplog.text


def test_a_run_still_running_at_its_deadline_is_late(caplog):
    run = {"dag_id": "transcribe_calls", "run_id": "scheduled__x", "state": "running", "end_date": None}
    with caplog.at_level(logging.ERROR, logger="callscribe.alerts"):
        asyncio.run(alerts.deadline_missed(hours=8, context={"dag_run": run}))
    assert [r.getMessage() for r in caplog.records] == [
        "CALLSCRIBE ALERT run late: dag transcribe_calls run scheduled__x: not finished 8 h after it was queued"]
