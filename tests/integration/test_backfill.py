"""A 3-day backfill created the way the UI's Backfill dialog does it: POST /api/v2/backfills.

Starts Airflow's API server, scheduler and DAG processor (LocalExecutor) against the
embedded services, then checks that every day's recordings are transcribed exactly once.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.audit import audit_day
from callscribe.discovery import day_prefix
from callscribe.samples import sample_dir
from tests import chaos
from tests.integration.helpers import airflow_api as _api
from tests.integration.helpers import airflow_cancel_open_backfills, airflow_reparsed
from tests.integration.helpers import wait_for as _wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAYS = [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)]
FILES = ["call-0003.wav", "call-0002.mp3"]
DAG_ID = "transcribe_calls"


@pytest.fixture(scope="module")
def airflow(stack):
    # Parsed again here first: an earlier module's Airflow may have serialized the DAG in another
    # zone (test_zoned_backfill), and a backfill made before would get that zone's midnights.
    with airflow_reparsed(stack) as (_, logs):
        yield stack, logs


def test_three_day_backfill_transcribes_each_day_exactly_once(airflow, s3, pg):
    stack, logs = airflow
    for day in DAYS:
        for name in FILES:
            s3.put_bytes(s3.uri(day_prefix("calls/", day) + name), (sample_dir() / name).read_bytes())

    port = stack.api_port
    _api(port, "PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
    airflow_cancel_open_backfills(port, DAG_ID)
    backfill = _api(port, "POST", "/backfills", {
        "dag_id": DAG_ID,
        "from_date": f"{DAYS[0]}T00:00:00Z",
        "to_date": f"{DAYS[-1]}T00:00:00Z",
        "max_active_runs": 2,
        "reprocess_behavior": "none",
    })
    assert backfill["dag_id"] == DAG_ID
    # Someone also runs one of the days by hand while the backfill is going: the two overlap.
    manual = _api(port, "POST", f"/dags/{DAG_ID}/dagRuns", {
        "logical_date": f"{DAYS[1]}T12:00:00Z", "conf": {"date": str(DAYS[1])},
    })

    def finished():
        runs = _api(port, "GET", f"/dags/{DAG_ID}/dagRuns?run_type=backfill&limit=100")["dag_runs"]
        # This backfill's runs: other modules' backfills of the DAG share the metadata database.
        runs = [r for r in runs if r["logical_date"] and r["logical_date"][:10] in {str(d) for d in DAYS}]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        return runs if len(runs) == len(DAYS) and len(done) == len(DAYS) else None

    runs = _wait("three backfill runs to finish", finished, 900, logs)
    assert sorted(r["logical_date"][:10] for r in runs) == [str(d) for d in DAYS]
    assert {r["state"] for r in runs} == {"success"}, logs()

    def manual_finished():
        run = _api(port, "GET", f"/dags/{DAG_ID}/dagRuns/{manual['dag_run_id']}")
        return run if run["state"] in ("success", "failed") else None

    manual_run = _wait("the overlapping manual run to finish", manual_finished, 300, logs)
    assert manual_run["state"] == "success", logs()

    with pg.connect() as c:
        for day in DAYS:
            rows = c.execute(sa.text(
                "SELECT object_key, status, last_run_id, channels, loads, "
                "       (SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts, "
                "       (SELECT count(*) FROM segments s WHERE s.recording_id = r.id) AS segments "
                "FROM recordings r WHERE call_date = :d ORDER BY object_key"), {"d": day}).all()
            assert [r.object_key.rsplit("/", 1)[1] for r in rows] == sorted(FILES), f"{day}: {rows}"
            run_ids = {r["dag_run_id"] for r in runs if r["logical_date"][:10] == str(day)}
            if day == DAYS[1]:
                run_ids.add(manual["dag_run_id"])
            for r in rows:
                assert r.status == "done", r
                assert r.last_run_id in run_ids  # claimed by a run of that day only
                assert r.transcripts == r.channels and r.segments > 0
                assert r.loads == 1, r  # transcribed and loaded once, whichever run took it
        dupes = c.execute(sa.text(
            "SELECT count(*) FROM (SELECT bucket, object_key FROM recordings "
            "WHERE status NOT IN ('superseded', 'deleted') AND call_date = ANY(:days) "
            "GROUP BY 1, 2 HAVING count(*) > 1) d"), {"days": DAYS}).scalar_one()
        assert dupes == 0
        reported = c.execute(sa.text(
            "SELECT call_date, sum(recordings_done) FROM pipeline_runs WHERE run_id = ANY(:ids) "
            "GROUP BY call_date ORDER BY call_date"),
            {"ids": [r["dag_run_id"] for r in runs] + [manual["dag_run_id"]]}).all()
    # Each recording is counted by the one run that claimed it (the manual run may have taken some).
    assert [(d, n) for d, n in reported] == [(d, len(FILES)) for d in DAYS]
    audits = [audit_day(s3, pg, day) for day in DAYS]
    entry = chaos.record("backfill overlapping a manual run (scheduler)", audits, len(FILES) * len(DAYS), 1)
    assert entry["lost"] == 0 and entry["duplicates"] == 0, entry["details"]
