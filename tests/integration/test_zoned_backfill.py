"""A backfill across a DST change at midnight, through Airflow's own scheduler.

America/Havana skips midnight on 8 March 2026 (00:00 becomes 01:00), so Airflow starts that
day's run at 01:00. The backfill is created as the UI does it (POST /backfills), runs on the
scheduler and LocalExecutor, and each task reads its day from the context the task runner
gives it: every day of the range must be transcribed and every run green.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from callscribe.discovery import day_prefix
from callscribe.samples import sample_dir
from tests.integration.helpers import airflow_api as _api
from tests.integration.helpers import (
    airflow_cancel_open_backfills,
    airflow_running,
    serialize_dags_here,
    serialized_zone,
)
from tests.integration.helpers import wait_for as _wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ZONE = "America/Havana"
# The range starts two days before the change: Airflow's own alignment (CronMixin._align_to_next)
# moves a from_date on the day just before a skipped midnight to the next day, dropping it.
DAYS = [date(2026, 3, 6), date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)]  # no other test uses them
FILE = "call-0003.wav"
DAG_ID = "transcribe_calls"


@pytest.fixture(scope="module")
def airflow_in_havana(stack):
    # Just before, the DAG is serialized in another zone (as an earlier test's Airflow leaves it),
    # so the backfill below is made right after the DAG is parsed again in Havana: the moment a
    # person in the UI sees the new schedule and backfills.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALLSCRIBE_TIMEZONE", "Asia/Tokyo")
        serialize_dags_here()
    assert serialized_zone(DAG_ID) == "Asia/Tokyo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALLSCRIBE_TIMEZONE", ZONE)  # the DAG processor's, the scheduler's and the tasks'
        mp.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")  # a refused day goes red in seconds, not minutes
        with airflow_running(stack) as running:
            # What the UI shows: the DAG's next run at a Havana midnight.
            def in_havana() -> bool:
                nxt = _api(stack.api_port, "GET", f"/dags/{DAG_ID}").get("next_dagrun_logical_date")
                return bool(nxt) and datetime.fromisoformat(nxt).astimezone(ZoneInfo(ZONE)).hour in (0, 1)

            _wait("the DAG to be parsed in Havana's zone", in_havana, 300, running[1])
            yield running


def test_a_backfill_across_a_skipped_midnight_is_green_and_takes_every_day(airflow_in_havana, s3, pg):
    stack, logs = airflow_in_havana
    for day in DAYS:
        s3.put_bytes(s3.uri(day_prefix("calls/", day) + FILE), (sample_dir() / FILE).read_bytes())
    port = stack.api_port
    _api(port, "PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
    airflow_cancel_open_backfills(port, DAG_ID)
    _api(port, "POST", "/backfills", {
        "dag_id": DAG_ID, "from_date": "2026-03-06T00:00:00-05:00", "to_date": "2026-03-09T00:00:00-04:00",
        "max_active_runs": 3, "reprocess_behavior": "none", "dag_run_conf": {"lookback_days": 0},
    })

    def finished():
        runs = _api(port, "GET", f"/dags/{DAG_ID}/dagRuns?run_type=backfill&limit=100")["dag_runs"]
        # A backfill made from a serialization older than the parse the UI shows lands on Tokyo's
        # midnights (Airflow skips writing a DAG serialized less than 30 s before unless told, as
        # the dev services tell it). Those runs are refused: say so now, not in 15 minutes.
        stale = [r["logical_date"] for r in runs if r["logical_date"]
                 and "2026-03-04" <= r["logical_date"][:10] <= "2026-03-10"
                 and datetime.fromisoformat(r["logical_date"]).astimezone(ZoneInfo(ZONE)).hour not in (0, 1)]
        assert not stale, f"the backfill's runs are not at Havana midnights: {stale}"
        # This backfill's runs: other tests' backfills of the DAG share the metadata database.
        runs = [r for r in runs if r["logical_date"] and datetime.fromisoformat(r["logical_date"])
                .astimezone(ZoneInfo(ZONE)).date() in DAYS]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        return runs if len(runs) == len(DAYS) and len(done) == len(DAYS) else None

    runs = _wait("the backfill's runs to finish", finished, 900, logs)
    with pg.connect() as c:
        states = dict(c.execute(sa.text("SELECT call_date, status FROM recordings WHERE call_date = ANY(:d)"),
                                {"d": DAYS}).all())
    assert states == {day: "done" for day in DAYS}
    assert sorted(r["state"] for r in runs) == ["success"] * len(DAYS), runs
