"""Two deployments (two Airflows, each its own bucket) on one callscribe database. Their scheduled
runs of a day have the same run id (``scheduled__2031-06-02T00:00:00+00:00``), and leases, a run's
close (report) and its row in pipeline_runs name the run id only: one deployment's run ended the
other's live leases, and a second run took calls the first was still transcribing. One database
serves one deployment: the second deployment's run of an id is refused at its listing, and its
report and verdict leave the first one's calls alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, reporting
from callscribe.storage import Store
from tests.integration.copies import call_bytes

pytestmark = pytest.mark.integration

DAY = date(2031, 6, 2)
RUN = "scheduled__2031-06-02T00:00:00+00:00"
OTHER_BUCKET = "calls-deploy-b"


def other_store(s3) -> Store:
    store = Store(replace(s3.settings, bucket=OTHER_BUCKET))
    if not store.client.bucket_exists(OTHER_BUCKET):
        store.client.make_bucket(OTHER_BUCKET)
    return store


def rows(pg, bucket: str):
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT id, object_key, status, last_error, last_run_id, COALESCE(lease_until > now(), false) AS leased "
            "FROM recordings WHERE bucket = :b AND call_date = :d ORDER BY id"), {"b": bucket, "d": DAY}).all()


def test_a_second_deployment_s_run_of_the_same_id_is_refused_and_leaves_the_first_alone(stack, pg, s3):
    b = other_store(s3)
    b.put_bytes(b.uri(f"calls/{DAY:%Y/%m/%d}/b1.wav"), call_bytes(911))
    s3.put_bytes(s3.uri(f"calls/{DAY:%Y/%m/%d}/a1.wav"), call_bytes(912))

    # Deployment B's scheduled run of the day: listed and claimed, now chunking and transcribing.
    source_b = reporting.run_source(OTHER_BUCKET, "calls/")
    reporting.run_listed(pg, RUN, "transcribe_calls", DAY, "whisper-tiny", source_b)
    held = discovery.discover(b, pg, DAY, "calls/", RUN, is_live=lambda r: False)
    assert len(held) == 1 and all(r.leased for r in rows(pg, OTHER_BUCKET))

    # Deployment A's scheduled run of the same day, same run id, on its own bucket: refused at its
    # listing, and its report (which runs whatever happened upstream) closes nothing of B's.
    source_a = reporting.run_source(s3.bucket, "calls/")
    with pytest.raises(reporting.ForeignRun, match="one callscribe database serves one deployment"):
        reporting.run_listed(pg, RUN, "transcribe_calls", DAY, "whisper-tiny", source_a)
    with pytest.raises(reporting.ForeignRun):
        reporting.report_run(pg, RUN, "transcribe_calls", DAY, "whisper-tiny", store=s3, source=source_a)
    mine = rows(pg, OTHER_BUCKET)
    assert all(r.leased for r in mine) and not any(r.last_error for r in mine), (
        f"deployment A's run {RUN} ended deployment B's live run's leases or gave its calls reasons: "
        f"{[(r.object_key, r.status, r.leased, r.last_error) for r in mine]}")

    # A second run in deployment B (an engineer's manual run of the day; B's RUN is live) leaves
    # the call B's RUN is transcribing to it.
    again = discovery.discover(b, pg, DAY, "calls/", "manual__b", is_live=lambda r: r == RUN)
    assert not again, f"manual__b took {again}, which B's live run {RUN} holds"
    # B's own report still closes its run.
    figures = reporting.report_run(pg, RUN, "transcribe_calls", DAY, "whisper-tiny", store=b, source=source_b)
    assert figures["recordings_found"] == 1


def test_a_deployment_running_the_other_dag_is_refused_with_the_reason(stack, pg, s3):
    """Deployment A runs transcribe_calls, deployment B (GPU) transcribe_calls_k8s: the same scheduled
    run id. Without the source, whichever listed last owned the id, and the other's report and verify
    failed as "the other DAG's run" every night, which sent operators to unpause one DAG."""
    day = date(2031, 6, 9)
    run = "scheduled__2031-06-09T00:00:00+00:00"
    other_store(s3)
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", reporting.run_source(s3.bucket, "calls/"))
    source_b = reporting.run_source(OTHER_BUCKET, "calls/")
    with pytest.raises(reporting.ForeignRun, match="one callscribe database serves one deployment"):
        reporting.run_listed(pg, run, "transcribe_calls_k8s", day, "whisper-tiny", source_b)
    with pytest.raises(reporting.ForeignRun, match="one callscribe database serves one deployment"):
        reporting.check_owner(pg, run, "transcribe_calls_k8s", source_b)
    reporting.check_owner(pg, run, "transcribe_calls", reporting.run_source(s3.bucket, "calls/"))


def test_a_bucket_switched_mid_run_is_named_as_such_and_the_run_still_closes(stack, pg, s3, monkeypatch, capfd, caplog):
    """The S3 connection edited to another bucket while a run is in flight (an operator moving the
    deployment): its report and verify read another source than its discover listed, which reads as
    "another deployment". The run is red, it says what happened, and its report still closes it: the
    run listed and holds these calls, and no other deployment does."""
    import json
    import os

    from callscribe import local_run

    day = date(2098, 6, 3)
    s3.put_bytes(s3.uri(f"calls/{day:%Y/%m/%d}/a1.wav"), call_bytes(931))
    other_store(s3)
    real = discovery.discover

    def discover_then_switch(*a, **kw):
        out = real(*a, **kw)
        conn = json.loads(os.environ["AIRFLOW_CONN_CALLSCRIBE_S3"])
        conn["extra"]["bucket"] = OTHER_BUCKET
        monkeypatch.setenv("AIRFLOW_CONN_CALLSCRIBE_S3", json.dumps(conn))
        return out

    monkeypatch.setattr(discovery, "discover", discover_then_switch)
    monkeypatch.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")
    dr = local_run.run_day(day)
    assert str(dr.state).rsplit(".", 1)[-1].lower() == "failed"
    with pg.connect() as c:
        left = c.execute(sa.text(
            "SELECT object_key, status, last_error, COALESCE(lease_until > now(), false) AS leased "
            "FROM recordings WHERE call_date = :d"), {"d": day}).all()
    assert left and all(not r.leased and (r.status == "done" or r.last_error) for r in left), left
    with pg.connect() as c:  # its report's figures, as the run listed them
        found = c.execute(sa.text("SELECT recordings_found FROM pipeline_runs WHERE run_id = :r"),
                          {"r": dr.run_id}).scalar_one()
    assert found == 1
    said = "".join(capfd.readouterr()) + caplog.text  # where the log goes depends on the tests before
    assert "CALLSCRIBE ALERT run failed" in said  # the run's own log was read
    assert "one callscribe database serves one deployment" not in said, said[-3000:]
    assert "S3 connection (its bucket) was changed while the run was in flight" in said, said[-3000:]
