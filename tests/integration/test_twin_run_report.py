"""A run refused at `discover` because the other DAG has a live run under the same run id (both
DAGs unpaused) still runs `report` and `verify`. Leases name the run id only, so they must leave
the twin's calls alone: not end its leases, not stamp "not finished" on calls it is working on
(which any other run of the day could then take while it still transcribes them), not judge them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from callscribe import discovery, reporting
from callscribe.samples import sample_dir
from tests.integration.helpers import upload_day

pytestmark = pytest.mark.integration

DAY = date(2053, 5, 6)


def _live_k8s_run(run_id: str, logical_date: datetime) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        session.add(DagRun(dag_id="transcribe_calls_k8s", run_id=run_id, logical_date=logical_date,
                           run_after=logical_date, start_date=datetime.now(UTC), run_type="manual",
                           state=DagRunState.RUNNING, conf={}))


def _end_k8s_run(run_id: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        for dr in session.query(DagRun).filter_by(dag_id="transcribe_calls_k8s", run_id=run_id):
            dr.state = DagRunState.FAILED


def test_a_refused_twin_run_leaves_the_live_twin_s_leases_alone(stack, s3, pg):
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    from callscribe.local_run import get_dag

    upload_day(s3, DAY, files=[sample_dir() / "call-0001.wav", sample_dir() / "call-0003.wav"])
    logical = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    run_after = datetime(2053, 5, 7, 1, 2, 3, tzinfo=UTC)
    # What dag.test names the local DAG's run of that day; a scheduler gives both DAGs the same
    # scheduled__ id when both are unpaused.
    run_id = DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=logical, run_after=run_after)
    # transcribe_calls_k8s has a live run under that id, which has claimed the day and is working on it.
    _live_k8s_run(run_id, logical)
    try:
        # Its discover task: it notes its listing (the id is the k8s DAG's now), then claims.
        reporting.run_listed(pg, run_id, "transcribe_calls_k8s", DAY, "whisper-tiny")
        held = discovery.discover(s3, pg, DAY, "calls/", run_id)
        assert len(held) == 2

        dag = get_dag()
        dag.deadline = None  # as local_run.run_day: dag.test cannot finish a run of a DAG with one
        dr = dag.test(logical_date=logical, run_after=run_after)  # transcribe_calls under the same run id
        assert dr.run_id == run_id
        assert str(dr.state).rsplit(".", 1)[-1].lower() == "failed"
        states = {ti.task_id: str(ti.state).rsplit(".", 1)[-1].lower() for ti in dr.get_task_instances()}
        assert states["report"] == "failed" and states["verify"] == "failed", states

        with pg.connect() as c:
            rows = c.execute(sa.text(
                "SELECT object_key, status, last_error, lease_until > now() AS leased, last_run_id "
                "FROM recordings WHERE call_date = :d ORDER BY id"), {"d": DAY}).all()
        # The live twin still holds what it claimed: no other run may take those calls meanwhile,
        # and the refused run has no business giving them reasons.
        assert all(r.leased for r in rows), [(r.object_key, r.leased, r.last_error) for r in rows]
        assert not any(r.last_error for r in rows), [(r.object_key, r.last_error) for r in rows]
        # Consequence: another run of the day now takes the calls the twin is transcribing.
        stolen = discovery.discover(s3, pg, DAY, "calls/", "manual__twin-other-run", is_live=lambda r: True)
        assert stolen == [], f"another run took {len(stolen)} calls the live twin is transcribing"
        # The twin itself still reports its own calls (the refused run took nothing from it).
        figures = reporting.report_run(pg, run_id, "transcribe_calls_k8s", DAY, "whisper-tiny")
        assert figures["recordings_found"] == 2
    finally:
        _end_k8s_run(run_id)
