"""Innocent recordings not failed, innocent jobs not thrown away, when outages and erasures race
the pipeline. Each test is an order of events that did so (found in review):

1. A database outage while a decoded recording is being recorded as chunked fails that
   recording ("chunking failed: OperationalError ..."), or, when the database is still down,
   leaves its chunking mark for the task's retry to read as "the chunk task died on it".
2. An erasure that commits while a load is under way (after it read its job manifests, before
   it asked which of their calls were erased) scrubs the job's shard of the erased call but not
   the job manifest the load already holds: the two no longer match, and the whole job's shard
   is thrown away as "from an earlier plan", its healthy calls left unfinished.
3. A database outage while a recording is marked quarantined or failed left its attempt spent and
   its chunking mark for the retry to read as "the chunk task died on it".
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from callscribe import db, discovery, loading, pipeline
from callscribe.config import s3_settings
from callscribe.discovery import day_prefix
from callscribe.erasure import erase
from callscribe.samples import sample_dir
from tests.integration.helpers import key_versions

pytestmark = pytest.mark.integration

CALL_A = sample_dir() / "call-0003.wav"
CALL_B = sample_dir() / "call-0001.wav"


def _status(pg, rid: int) -> sa.Row:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT status, last_error, attempts, chunking_since FROM recordings WHERE id = :i"),
                         {"i": rid}).one()


def _one_call(s3, pg, day: date, run: str) -> int:
    key = day_prefix("calls/", day) + "call.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    (rid,) = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    return rid


def _database_blip_on(monkeypatch, name: str, times: int = 1) -> None:
    """The statement ``name`` loses its connection (the server ends the session), ``times`` times."""
    real = db.q
    left = {"n": times}

    def q(n: str):
        if n == name and left["n"] > 0:
            left["n"] -= 1
            return sa.text("SELECT pg_terminate_backend(pg_backend_pid())")
        return real(n)

    monkeypatch.setattr(db, "q", q)


def test_a_database_blip_while_a_recording_is_chunked_does_not_fail_it(stack, s3, pg, monkeypatch):
    run = "review-db-blip"
    rid = _one_call(s3, pg, date(2033, 4, 1), run)
    _database_blip_on(monkeypatch, "recording_chunked")
    # An outage fails the task (for Airflow to retry it), as one while reading the file does.
    with pytest.raises(OperationalError):
        pipeline.chunk_one(s3, pg, rid, run_id=run)
    row = _status(pg, rid)
    assert row.status == "pending" and row.chunking_since is None, row
    # The task's retry chunks it, one attempt spent in all.
    out = pipeline.chunk_one(s3, pg, rid, run_id=run)
    assert out is not None
    row = _status(pg, rid)
    assert row.status == "chunked" and row.attempts == 1, row
    discovery.release(pg, run)


def test_a_database_down_while_a_recording_is_chunked_is_not_taken_for_a_crash(stack, s3, pg, monkeypatch):
    """The database stays down for the refund too: the retry must not blame the recording."""
    run = "review-db-down"
    rid = _one_call(s3, pg, date(2033, 4, 2), run)
    _database_blip_on(monkeypatch, "recording_chunked")
    _database_blip_on(monkeypatch, "recording_attempt_refund")
    _database_blip_on(monkeypatch, "recording_error")
    with pytest.raises(OperationalError):
        pipeline.chunk_one(s3, pg, rid, run_id=run)
    monkeypatch.undo()
    out = pipeline.chunk_one(s3, pg, rid, run_id=run)  # the task's retry, the database back
    row = _status(pg, rid)
    assert out is not None and row.status == "chunked", row
    discovery.release(pg, run)


def test_a_database_down_longer_than_the_refund_waits_is_not_taken_for_a_crash_either(stack, s3, pg, monkeypatch):
    """The database stays down for every refund try (about 5 s): the task fails with the chunking
    mark still set. Its retry, the database back, must still not blame the recording."""
    run = "review-db-down-long"
    rid = _one_call(s3, pg, date(2033, 4, 4), run)
    _database_blip_on(monkeypatch, "recording_chunked")
    real = db.q
    monkeypatch.setattr(db, "q", lambda n: (sa.text("SELECT pg_terminate_backend(pg_backend_pid())")
                                            if n == "recording_attempt_refund" else real(n)))
    with pytest.raises(OperationalError):
        pipeline.chunk_one(s3, pg, rid, run_id=run)
    monkeypatch.undo()
    assert _status(pg, rid).chunking_since is not None  # the mark a crash would have left
    out = pipeline.chunk_one(s3, pg, rid, run_id=run)  # the task's retry, the database back
    row = _status(pg, rid)
    assert out is not None and row.status == "chunked" and row.attempts == 1, row
    # A crash's mark is still a crash: the next run's task dies on the file, and its retry blames it.
    run2 = "review-db-down-long-2"
    discovery.release(pg, run)
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'pending', last_run_id = :r WHERE id = :i"),
                  {"r": run2, "i": rid})
        c.execute(db.q("recording_attempt"), {"id": rid, "run_id": run2})
    assert pipeline.chunk_one(s3, pg, rid, run_id=run2) is None
    row = _status(pg, rid)
    assert row.status == "failed" and "chunk task died" in row.last_error, row


def test_a_database_blip_while_a_recording_is_quarantined_gives_its_attempt_back(stack, s3, pg, monkeypatch):
    """The database drops the connection as a file that cannot be decoded is marked quarantined (or
    failed): the task fails on the outage, and its retry must quarantine the file, not read the mark
    left for "the chunk task died on it", nor count a second attempt."""
    run = "review-db-blip-quarantine"
    day = date(2098, 4, 1)
    key = day_prefix("calls/", day) + "not audio.wav"
    s3.put_bytes(s3.uri(key), b"Dear customer, your invoice is attached." * 50)
    (rid,) = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    _database_blip_on(monkeypatch, "recording_error")
    with pytest.raises(OperationalError):
        pipeline.chunk_one(s3, pg, rid, run_id=run)
    monkeypatch.undo()
    row = _status(pg, rid)
    assert row.status == "pending" and row.chunking_since is None and row.attempts == 0, row
    assert pipeline.chunk_one(s3, pg, rid, run_id=run) is None  # the task's retry
    row = _status(pg, rid)
    assert row.status == "quarantined" and row.attempts == 1 and "died" not in row.last_error, row
    discovery.close_run(pg, run)


def test_an_erasure_during_a_load_does_not_throw_away_its_jobs_other_calls(stack, s3, pg):
    day = date(2033, 4, 3)
    prefix = day_prefix("calls/", day)
    key_a, key_b = prefix + "subject.wav", prefix + "neighbour.wav"
    s3.put_bytes(s3.uri(key_a), CALL_A.read_bytes())
    s3.put_bytes(s3.uri(key_b), CALL_B.read_bytes())
    run = "review-erase-during-load"
    ids = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    assert len(ids) == 2
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    (job_uri,) = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny", max_jobs=1)
    pipeline.run_worker_local(job_uri, s3_settings())

    class ErasedWhileLoading:
        """The erasure commits just after the load read the job manifest."""

        def __getattr__(self, name):
            return getattr(s3, name)

        def get_bytes(self, uri, *args, **kw):
            data = s3.get_bytes(uri, *args, **kw)
            if uri == job_uri:
                # The run shows as over in the UI (its load task failed once), so the erasure is
                # forced, as the README says; the load task is then cleared and runs meanwhile.
                erase(s3, pg, key_a, "dpo", force=True)
            return data

    res = loading.load_jobs(ErasedWhileLoading(), pg, [job_uri], run)
    assert not res.unfinished_jobs, res
    assert key_versions(pg, day, key_a) == []
    (b,) = key_versions(pg, day, key_b)
    assert b.status == "done" and b.segments > 0, b
    discovery.close_run(pg, run)
