"""Clearing a finished run's tasks in the Airflow UI, with Downstream ticked (its default), against
the real scheduler (review): the run is judged again on what is there now, and nothing is loaded
twice, whichever run finished the calls meanwhile.

The runs have the DAG's default deadline (CALLSCRIBE_DEADLINE_HOURS, 8 h): Airflow 3.3.0-3.3.2
cannot clear such a run without plugins/callscribe_airflow_fixes.py (apache/airflow#70368).
"""

from __future__ import annotations

from datetime import date

import pytest

from callscribe.samples import sample_dir
from tests.integration.helpers import airflow_api as _api
from tests.integration.helpers import airflow_cancel_open_backfills, record_clean, upload_day
from tests.integration.helpers import airflow_finished as _finished
from tests.integration.helpers import airflow_task_running as _running
from tests.integration.helpers import airflow_task_states as _states
from tests.integration.helpers import airflow_trigger as _trigger
from tests.integration.helpers import day_rows as _rows

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]
DAG = "/dags/transcribe_calls"
FILES = [sample_dir() / "call-0001.wav", sample_dir() / "call-0003.wav"]


def _clear(port: int, run: str, task: str | list) -> None:
    """The UI's Clear on one task instance, as its dialog sends it by default: Downstream ticked,
    "Only failed" not (the API's own default is only_failed true: then the succeeded `load` and
    `report` stay as they were and the new shard is never loaded)."""
    _api(port, "POST", f"{DAG}/clearTaskInstances", {
        "dry_run": False, "dag_run_id": run, "task_ids": [task], "only_failed": False, "include_downstream": True})


def _red_run(port: int, day: date, logs) -> str:
    """A run whose transcription was marked failed in the UI mid-way: red, its calls chunked."""
    run = _trigger(port, day)
    _running(port, run, "transcribe", logs)
    _api(port, "PATCH", f"{DAG}/dagRuns/{run}/taskInstances/transcribe/0", {"new_state": "failed"})
    assert _finished(port, run, logs) == "failed"
    return run


@pytest.mark.parametrize("finished_meanwhile", [False, True])
def test_a_red_runs_failed_task_cleared_with_downstream_is_judged_again_and_loads_nothing_twice(
        airflow_ui, s3, pg, finished_meanwhile):
    port, logs = airflow_ui
    day = date(2031, 4, 2) if finished_meanwhile else date(2031, 4, 1)
    n = upload_day(s3, day, files=FILES)
    red = _red_run(port, day, logs)
    if finished_meanwhile:  # the next run of the day finished the calls before the clear
        assert _finished(port, _trigger(port, day), logs) == "success"
    _clear(port, red, ["transcribe", 0])
    assert _finished(port, red, logs) == "success", (_states(port, red), _rows(pg, day))
    rows = _rows(pg, day)
    assert [(r.status, r.loads, r.lease_until) for r in rows] == [("done", 1, None)] * n, rows
    record_clean("a red run's failed task cleared with downstream" + (" after the next run finished the day"
                 if finished_meanwhile else "") + " (scheduler)", s3, pg, day, n, 1)


def test_a_green_run_cleared_whole_stays_green_and_loads_nothing_twice(airflow_ui, s3, pg):
    port, logs = airflow_ui
    day = date(2031, 4, 3)
    n = upload_day(s3, day, files=FILES)
    run = _trigger(port, day)
    assert _finished(port, run, logs) == "success"
    _clear(port, run, "discover")  # the run's Clear: every task, the same run id
    assert _finished(port, run, logs) == "success", (_states(port, run), _rows(pg, day))
    assert [(r.status, r.loads) for r in _rows(pg, day)] == [("done", 1)] * n


def test_a_backfill_of_failed_days_runs_a_red_run_again_whole(airflow_ui, s3, pg):
    """reprocess_behavior "failed" clears the red run of the day (same run id, every task, now a
    backfill run with the backfill's conf): its calls are finished, once."""
    port, logs = airflow_ui
    day = date(2025, 6, 4)
    n = upload_day(s3, day, files=FILES)
    red = _trigger(port, day, at_midnight=True)
    _running(port, red, "transcribe", logs)
    _api(port, "PATCH", f"{DAG}/dagRuns/{red}/taskInstances/transcribe/0", {"new_state": "failed"})
    assert _finished(port, red, logs) == "failed"
    airflow_cancel_open_backfills(port)
    _api(port, "POST", "/backfills", {
        "dag_id": "transcribe_calls", "from_date": f"{day}T00:00:00Z", "to_date": f"{day}T00:00:00Z",
        "reprocess_behavior": "failed", "dag_run_conf": {"lookback_days": 0}})
    assert _api(port, "GET", f"{DAG}/dagRuns/{red}")["run_type"] == "backfill"
    assert _finished(port, red, logs) == "success", (_states(port, red), _rows(pg, day))
    rows = _rows(pg, day)
    assert [(r.status, r.loads, r.lease_until) for r in rows] == [("done", 1, None)] * n, rows
