"""What an operator does to a live run in the Airflow UI, through the REST API the UI calls,
against the real scheduler (review): marking a running task or the whole run success or
failed, deleting it, pausing the DAG, backfilling days that have runs, clearing a failed run.

Each time every recording must end in a known state, loaded once, and a run is red while
calls of its day are missing; what a marked run leaves is finished by the next run of the day.
"""

from __future__ import annotations

import os
import time
import urllib.error
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

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


def _backfill(port: int, first: date, last: date, behaviour: str) -> dict:
    """The UI's Backfill dialog (one open backfill per DAG: one an earlier test left is cancelled)."""
    airflow_cancel_open_backfills(port)
    return _api(port, "POST", "/backfills", {
        "dag_id": "transcribe_calls", "from_date": f"{first}T00:00:00Z", "to_date": f"{last}T00:00:00Z",
        "max_active_runs": 3, "reprocess_behavior": behaviour, "dag_run_conf": {"lookback_days": 0}})


@pytest.mark.parametrize(("what", "state", "day"), [
    ("transcribe", "failed", date(2031, 3, 1)), ("transcribe", "success", date(2031, 3, 2)),
    ("run", "failed", date(2031, 3, 3)), ("run", "success", date(2031, 3, 4)),
    # The UI's Delete refuses a running run (409), not a queued one: marked queued first, it goes,
    # its running tasks killed (their heartbeats answered 404).
    ("run", "deleted", date(2031, 3, 6)),
])
def test_marked_mid_transcription_the_calls_are_finished_by_the_next_run_of_the_day(airflow_ui, s3, pg, what, state,
                                                                                     day):
    port, logs = airflow_ui
    n = upload_day(s3, day, files=FILES)
    run = _trigger(port, day)
    _running(port, run, "transcribe", logs)
    if state == "deleted":
        with pytest.raises(urllib.error.HTTPError) as refused:
            _api(port, "DELETE", f"{DAG}/dagRuns/{run}")
        assert refused.value.code == 409
        _api(port, "PATCH", f"{DAG}/dagRuns/{run}", {"state": "queued"})
        _api(port, "DELETE", f"{DAG}/dagRuns/{run}")
    elif what == "run":
        _api(port, "PATCH", f"{DAG}/dagRuns/{run}", {"state": state})
    else:
        _api(port, "PATCH", f"{DAG}/dagRuns/{run}/taskInstances/transcribe/0", {"new_state": state})
    ended = "deleted" if state == "deleted" else _finished(port, run, logs)
    rows = _rows(pg, day)
    if what == "transcribe":
        # Its calls are missing: red whichever way the task was marked; their leases end with the report.
        assert ended == "failed", (_states(port, run), rows)
        assert all(r.lease_until is None and (r.status == "done" or r.last_error) for r in rows), rows
    else:
        assert ended == state  # the operator's word: no task of the run runs again, the report neither
    again = _trigger(port, day)
    assert _finished(port, again, logs) == "success", (_states(port, again), _rows(pg, day))
    rows = _rows(pg, day)
    assert [(r.status, r.loads, r.lease_until) for r in rows] == [("done", 1, None)] * n, rows
    record_clean(f"{what} marked {state} in the UI mid-transcription, then the day again (scheduler)", s3, pg, day,
                 n, 1)


def test_a_run_paused_mid_transcription_ends_green_once_unpaused(airflow_ui, s3, pg):
    port, logs = airflow_ui
    day = date(2031, 3, 5)
    n = upload_day(s3, day, files=FILES)
    run = _trigger(port, day)
    _running(port, run, "transcribe", logs)
    _api(port, "PATCH", DAG, {"is_paused": True})
    time.sleep(15)
    assert _api(port, "GET", f"{DAG}/dagRuns/{run}")["state"] == "running"
    _api(port, "PATCH", DAG, {"is_paused": False})
    assert _finished(port, run, logs) == "success", _states(port, run)
    assert [(r.status, r.loads) for r in _rows(pg, day)] == [("done", 1)] * n


def test_a_backfill_over_a_green_day_and_a_live_one_takes_nothing_twice(airflow_ui, s3, pg):
    """reprocess_behavior "completed" clears the green day's run (same run id, now a backfill) and
    leaves the live one alone (Airflow: in flight)."""
    port, logs = airflow_ui
    green, live = date(2025, 6, 1), date(2025, 6, 2)
    for day in (green, live):
        upload_day(s3, day, files=FILES)
    first = _trigger(port, green, at_midnight=True)
    assert _finished(port, first, logs) == "success"
    busy = _trigger(port, live, at_midnight=True)
    _running(port, busy, "transcribe", logs)
    _backfill(port, green, live, "completed")
    _wait_cleared = time.monotonic() + 60
    while _api(port, "GET", f"{DAG}/dagRuns/{first}")["run_type"] != "backfill" and time.monotonic() < _wait_cleared:
        time.sleep(1)
    assert _finished(port, first, logs) == "success", _states(port, first)
    assert _finished(port, busy, logs) == "success", _states(port, busy)
    for day, which in ((green, "the green day"), (live, "the live day")):
        assert [(r.status, r.loads) for r in _rows(pg, day)] == [("done", 1)] * len(FILES), _rows(pg, day)
        record_clean(f"a backfill (completed) over a green day and a live one: {which} (scheduler)", s3, pg, day,
                     len(FILES), 1)


def _pending_deadlines(run_id: str) -> list[timedelta]:
    """How long after its queue time each deadline of a run still to come falls (Airflow's metadata
    database, on the suite's PostgreSQL)."""
    engine = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as c:
            return list(c.execute(sa.text(
                "SELECT d.deadline_time - r.queued_at FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id "
                "WHERE r.run_id = :r AND NOT d.missed"), {"r": run_id}).scalars())
    finally:
        engine.dispose()


def test_a_red_run_can_be_cleared_with_downstream_or_backfilled_again(airflow_ui, s3, pg):
    """The README's recovery for a red run: Clear the failed task with Downstream (or a backfill of
    failed days, which clears the run), within CALLSCRIBE_DEADLINE_HOURS of the run being queued.
    Airflow 3.3.0-3.3.2 answer both with HTTP 500 (a TypeError recalculating the queued-at
    deadline, apache/airflow#70368) unless callscribe.airflow_fixes is in place (the plugin in
    plugins/). The cleared run's deadline then counts from its new queue time, so its "run late"
    alert still tells the truth."""
    port, logs = airflow_ui
    days = [date(2025, 6, 3), date(2025, 6, 5)]
    runs = []
    for day in days:
        upload_day(s3, day, files=FILES)
        runs.append(_trigger(port, day, at_midnight=True))
        _running(port, runs[-1], "transcribe", logs)
        _api(port, "PATCH", f"{DAG}/dagRuns/{runs[-1]}/taskInstances/transcribe/0", {"new_state": "failed"})
        assert _finished(port, runs[-1], logs) == "failed"
    codes, deadlines = [], []
    for action in (lambda: _api(port, "POST", f"{DAG}/clearTaskInstances", {  # the UI dialog's defaults
                       "dry_run": False, "dag_run_id": runs[0], "task_ids": [["transcribe", 0]], "only_failed": False,
                       "include_downstream": True}),
                   lambda: _backfill(port, days[1], days[1], "failed")):
        try:
            action()
            codes.append(200)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
        # Read at once: Airflow drops a run's deadline when the run succeeds.
        deadlines.append(_pending_deadlines(runs[len(codes) - 1]))
    assert codes == [200, 200], f"clear, backfill answered {codes}"
    # From the new queue time (the clear's; Airflow stamps the run's queueing again a moment later),
    # not the first one, a minute and more before.
    assert [len(d) for d in deadlines] == [1, 1], deadlines
    assert all(abs(d[0] - timedelta(hours=8)) < timedelta(seconds=1) for d in deadlines), deadlines
    assert [_finished(port, run, logs) for run in runs] == ["success", "success"]
    for day in days:
        assert [(r.status, r.loads) for r in _rows(pg, day)] == [("done", 1)] * len(FILES)
