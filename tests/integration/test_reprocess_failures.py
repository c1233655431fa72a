"""A reprocess run that could not transcribe a call again is red, and says why.

A reprocess run is asked to transcribe its day again (a new engine, a fixed model). When it
leaves a call to another live run it is red ("not reprocessed"). When it fails on a call itself
(the worker fails the recording, or chunking it fails), the call keeps the earlier transcript and
stays `done`; its reason says this run could not redo it, the run's report lists it, and the
run is red, as it is for a call left to another run.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, loading, pipeline, reporting
from callscribe.audit import run_verdict
from callscribe.config import s3_settings
from callscribe.samples import sample_dir
from tests.integration.helpers import run_through, upload_day

pytestmark = pytest.mark.integration

CALLS = [sample_dir() / "call-0001.wav", sample_dir() / "call-0003.wav"]


def _rows(pg, day: date) -> dict[int, sa.Row]:
    with pg.connect() as c:
        return {r.id: r for r in c.execute(sa.text(
            "SELECT id, object_key, status, last_error, loads, loaded_run_id FROM recordings WHERE call_date = :d "
            "ORDER BY id"), {"d": day})}


def test_a_reprocess_whose_worker_failed_a_call_is_not_green(stack, s3, pg):
    day = date(2052, 2, 3)
    upload_day(s3, day, files=CALLS)
    assert run_through(s3, pg, day, "scheduled__refail-first").ok

    run = "manual__refail-reprocess-pack-lost"
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny")
    ids = discovery.discover(s3, pg, day, "calls/", run, reprocess=True, is_live=lambda r: False)
    assert len(ids) == 2
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    victim = ids[0]
    for key in pipeline.pack_keys(day, victim):  # the worker fails this recording alone
        s3.delete(s3.uri(key))
    for j in jobs:
        pipeline.run_worker_local(j, s3_settings())
    result = loading.load_jobs(s3, pg, jobs, run)
    assert result.failed == 1 and result.recordings == 1
    discovery.close_run(pg, run)

    rows = _rows(pg, day)
    # The call was not transcribed again: it keeps the first run's transcript ...
    assert rows[victim].status == "done" and rows[victim].loads == 1
    assert "kept the earlier transcript" in rows[victim].last_error
    # ... and the reprocess run's verdict must say so (as it does for a call left to another run).
    verdict = run_verdict(s3, pg, run, [day], "calls/", reporting.listed_at(pg, run), is_live=lambda r: False)
    assert not verdict.ok, "a reprocess run that failed to transcribe a call again is green"
    assert [p.split(":")[0] for p in verdict.audits[0].not_reprocessed] == [rows[victim].object_key]


def test_a_reprocess_whose_chunker_failed_a_call_is_red_and_says_why(stack, s3, pg, monkeypatch):
    """Through the DAG (dag.test): the chunker raises on one call of a reprocess run. recording_error.sql
    keeps a `done` row `done` and its old reason (none), so the run reports 2 done, 0 failed, green."""
    from callscribe.audio import decode
    from callscribe.local_run import run_day

    day = date(2052, 2, 4)
    upload_day(s3, day, files=CALLS)
    assert str(run_day(day).state).rsplit(".", 1)[-1].lower() == "success"
    first = {r.object_key: r for r in _rows(pg, day).values()}

    bad = sorted(first)[0]
    bad_duration = decode(s3.get_bytes(s3.uri(bad)), bad).duration_s
    real = pipeline.chunk_recording

    def crashing(decoded, *args, **kwargs):
        if abs(decoded.duration_s - bad_duration) < 0.01:
            raise RuntimeError("simulated crash inside the chunker")
        return real(decoded, *args, **kwargs)

    monkeypatch.setattr(pipeline, "chunk_recording", crashing)
    dr = run_day(day, conf={"reprocess": True}, logical_date=None)
    after = {r.object_key: r for r in _rows(pg, day).values()}
    # The other call was transcribed again; the bad one was not: it keeps the first run's transcript.
    assert [after[k].loads for k in sorted(after)] == [1, 2]
    assert after[bad].status == "done"
    # What the run could not redo must show: in its report's failures (report_failures.sql lists a
    # `done` row with a reason, "what it could not redo, when reprocessing") or in a red verdict.
    failures = {f["object_key"]: f for f in reporting.run_failures(pg, dr.run_id)}
    state = str(dr.state).rsplit(".", 1)[-1].lower()
    assert bad in failures or state == "failed", (
        f"reprocess run {state}, its report lists {sorted(failures)}, although {bad} was not transcribed "
        f"again (its row: status {after[bad].status}, reason {after[bad].last_error!r})")
