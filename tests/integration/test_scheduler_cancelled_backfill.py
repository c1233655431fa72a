"""A run of a cancelled backfill, cleared later, never starts (apache/airflow#72054, open; Airflow
3.3.0-3.3.2): cancelling a backfill pauses it and fails its queued runs, and the scheduler never
promotes a queued run whose backfill is paused, finished or not. Clearing such a run (the UI's
Clear, the README's recovery for a red run) leaves it queued for ever; a queued run counts as live
for callscribe's leases, and its deadline alert fires hours later.

The README's step ("Backfilling past days"): mark such a run failed and backfill its day again
with "Only failed" (reprocess_behavior "failed"), which moves the run to the new backfill. This
test shows the bug (it fails once Airflow promotes such runs: drop the README step then) and that
the step gets the day transcribed.
"""

from __future__ import annotations

import time
from datetime import date

import pytest

from callscribe.samples import sample_dir
from tests.integration.helpers import airflow_api as _api
from tests.integration.helpers import airflow_cancel_open_backfills, upload_day
from tests.integration.helpers import airflow_finished as _finished
from tests.integration.helpers import airflow_trigger as _trigger
from tests.integration.helpers import day_rows as _rows

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]
DAG = "/dags/transcribe_calls"
FILES = [sample_dir() / "call-0001.wav"]


def _backfill(port: int, first: date, last: date, behaviour: str, max_active_runs: int = 3) -> dict:
    airflow_cancel_open_backfills(port)
    return _api(port, "POST", "/backfills", {
        "dag_id": "transcribe_calls", "from_date": f"{first}T00:00:00Z", "to_date": f"{last}T00:00:00Z",
        "max_active_runs": max_active_runs, "reprocess_behavior": behaviour, "dag_run_conf": {"lookback_days": 0}})


def _run_of(port: int, day: date) -> dict:
    runs = _api(port, "GET", f"{DAG}/dagRuns?logical_date_gte={day}T00:00:00Z&logical_date_lte={day}T00:00:00Z")
    (run,) = runs["dag_runs"]
    return run


def test_a_cleared_run_of_a_cancelled_backfill_stays_queued_until_backfilled_again(airflow_ui, s3, pg):
    port, logs = airflow_ui
    days = [date(2025, 8, 11), date(2025, 8, 12), date(2025, 8, 13)]
    for day in days:  # a rerun on the same services: the days' runs of the last time go
        for old in _api(port, "GET", f"{DAG}/dagRuns?logical_date_gte={day}T00:00:00Z"
                                     f"&logical_date_lte={day}T00:00:00Z")["dag_runs"]:
            _api(port, "DELETE", f"{DAG}/dagRuns/{old['dag_run_id']}")
    n = upload_day(s3, days[-1], files=FILES)
    backfill = _backfill(port, days[0], days[-1], "none", max_active_runs=1)
    _api(port, "PUT", f"/backfills/{backfill['id']}/cancel")  # the UI's Cancel: its queued runs fail
    run = _run_of(port, days[-1])
    assert (run["run_type"], run["state"]) == ("backfill", "failed"), run
    run_id = run["dag_run_id"]

    # The UI's Clear Run on the red run: accepted, the run queued again...
    _api(port, "POST", f"{DAG}/dagRuns/{run_id}/clear", {"dry_run": False, "only_failed": False})
    # ...while a manual run triggered after it is started and finished by the same scheduler,
    control = _trigger(port, date(2025, 8, 10))
    assert _finished(port, control, logs) in ("success", "failed")
    time.sleep(10)
    # the cleared run is never started (apache/airflow#72054): its cancelled backfill is paused.
    stuck = _api(port, "GET", f"{DAG}/dagRuns/{run_id}")
    assert (stuck["state"], stuck["start_date"]) == ("queued", None), (
        f"Airflow started a cleared run of a cancelled backfill ({stuck['state']}): apache/airflow#72054 is "
        "fixed in this version; drop the README's step for it")

    # The README's way out: mark it failed, backfill the day again with "Only failed".
    _api(port, "PATCH", f"{DAG}/dagRuns/{run_id}", {"state": "failed"})
    _backfill(port, days[-1], days[-1], "failed")
    assert _finished(port, run_id, logs) == "success"
    assert [(r.status, r.loads) for r in _rows(pg, days[-1])] == [("done", 1)] * n
