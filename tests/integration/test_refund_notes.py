"""Refund notes (pipeline._refund) in the orders of events review found them mishandled:

1. The run ends without a retry that pays the note (the database down for all of the chunk
   task's tries; the run marked failed): its close (the report, or the next run's
   release_dead) counts the outage as the recording's attempt, and at its last attempt fails
   it for good ("gave up after 3 attempts"), though it was never tried.
2. A note outlives the try it was written for (its payment's delete failed): a later death of
   the task on that file in the same run is taken for that old outage, and the file is chunked
   again, killing the group's task once more.
3. The S3 connection is switched to another bucket while the run is live: the run's close and
   its chunk task's retry looked for the notes in the new bucket's work area, so the notes the
   run wrote in the bucket it listed stayed unpaid, and the outage spent those calls' attempts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import db, discovery, pipeline, reporting
from callscribe.discovery import MAX_ATTEMPTS, day_prefix
from callscribe.samples import sample_dir
from callscribe.storage import Store

pytestmark = pytest.mark.integration

CALL = sample_dir() / "call-0003.wav"
KILL = "SELECT pg_terminate_backend(pg_backend_pid())"
SWITCHED_TO = "calls-switched-mid-run"


class Died(BaseException):
    """The chunk task's process dying in the decoder: nothing runs after it."""


def _row(pg, rid: int) -> sa.Row:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT status, last_error, attempts, chunking_since, attempted_run_id "
                                 "FROM recordings WHERE id = :i"), {"i": rid}).one()


def _claimed(s3, pg, day: date, run: str, attempts: int = 0) -> int:
    s3.put_bytes(s3.uri(day_prefix("calls/", day) + "call.wav"), CALL.read_bytes())
    (rid,) = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET attempts = :a WHERE id = :i"), {"a": attempts, "i": rid})
    return rid


def _outage_outlasting_the_refund(s3, pg, rid: int, run: str, monkeypatch) -> None:
    """The try's database goes away as it records the chunking, and stays away for the refund."""
    real = db.q
    monkeypatch.setattr(db, "q", lambda n: sa.text(KILL) if n in ("recording_chunked", "recording_attempt_refund")
                        else real(n))
    monkeypatch.setattr(pipeline._refund, "__defaults__", ((0,),))  # one refund try, no waits
    with pytest.raises(sa.exc.OperationalError):
        pipeline.chunk_one(s3, pg, rid, run_id=run)
    monkeypatch.undo()
    assert s3.exists(discovery.refund_uri(s3, run, rid))


@pytest.mark.parametrize("closed_by", ["next run", "report"])
def test_a_refund_note_no_retry_paid_is_paid_when_the_run_is_closed(stack, s3, pg, monkeypatch, closed_by):
    day = date(2033, 6, 1) if closed_by == "next run" else date(2033, 6, 2)
    run = f"review2-unpaid-{closed_by.replace(' ', '-')}"
    rid = _claimed(s3, pg, day, run, attempts=MAX_ATTEMPTS - 1)  # its last attempt
    _outage_outlasting_the_refund(s3, pg, rid, run, monkeypatch)
    # Every retry of the chunk task fails while the database is down; the run ends without them.
    if closed_by == "report":
        reporting.report_run(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
        row = _row(pg, rid)
        assert row.status == "pending" and row.attempts == MAX_ATTEMPTS - 1, row
        next_run = f"{run}-next"
        ids = discovery.discover(s3, pg, day, "calls/", next_run, is_live=lambda r: False)
    else:
        next_run = f"{run}-next"
        ids = discovery.discover(s3, pg, day, "calls/", next_run, is_live=lambda r: False)
    # The outage was not the recording's: it keeps its last attempt, and the next run uses it.
    row = _row(pg, rid)
    assert ids == [rid], row
    assert row.attempts == MAX_ATTEMPTS - 1 and row.chunking_since is None, row
    assert not s3.exists(discovery.refund_uri(s3, run, rid))
    assert pipeline.chunk_one(s3, pg, rid, run_id=next_run) is not None
    assert _row(pg, rid).status == "chunked"
    discovery.release(pg, next_run)


def test_a_refund_note_left_over_does_not_excuse_a_later_death_on_the_file(stack, s3, pg, monkeypatch):
    day, run = date(2033, 6, 3), "review2-stale-note"
    rid = _claimed(s3, pg, day, run)
    _outage_outlasting_the_refund(s3, pg, rid, run, monkeypatch)
    note = discovery.refund_uri(s3, run, rid)
    # The retry pays the note, and the store fails it as it deletes the note: the retry fails.
    real_delete = type(s3).delete
    monkeypatch.setattr(type(s3), "delete", lambda self, uri: (_ for _ in ()).throw(OSError("store down"))
                        if uri == note else real_delete(self, uri))
    with pytest.raises(OSError):
        pipeline.chunk_one(s3, pg, rid, run_id=run)
    monkeypatch.undo()
    assert s3.exists(note) and _row(pg, rid).chunking_since is None
    # The next retry's process dies in the file's decoder: a crash, the mark left.
    monkeypatch.setattr(pipeline, "decode", lambda *a, **k: (_ for _ in ()).throw(Died()))
    with pytest.raises(Died):
        pipeline.chunk_one(s3, pg, rid, run_id=run)
    # The retry after it must blame the file (not chunk it again, dying again).
    assert pipeline.chunk_one(s3, pg, rid, run_id=run) is None
    row = _row(pg, rid)
    assert row.status == "failed" and "chunk task died" in row.last_error, row
    assert row.attempts == 1, row
    discovery.close_run(pg, run)


def _switched(s3) -> Store:
    """The store as the run's later tasks see it once the operator edits the bucket in the S3 connection."""
    store = Store(replace(s3.settings, bucket=SWITCHED_TO))
    if not store.client.bucket_exists(SWITCHED_TO):
        store.client.make_bucket(SWITCHED_TO)
    return store


@pytest.mark.parametrize("paid_by", ["report", "chunk retry"])
def test_a_refund_note_is_paid_from_the_bucket_the_run_listed_after_a_bucket_switch(stack, s3, pg, monkeypatch,
                                                                                     paid_by):
    day = date(2126, 3, 1) if paid_by == "report" else date(2126, 3, 2)
    run = f"review1-switched-{paid_by.replace(' ', '-')}"
    source = reporting.run_source(s3.bucket, "calls/")
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", source)
    rid = _claimed(s3, pg, day, run, attempts=MAX_ATTEMPTS - 1)  # its last attempt
    _outage_outlasting_the_refund(s3, pg, rid, run, monkeypatch)  # the note, in the listed bucket
    new = _switched(s3)
    if paid_by == "report":
        # The report task as the DAG runs it: the new bucket's store, the source its discover listed.
        reporting.report_run(pg, run, "transcribe_calls", day, "whisper-tiny", store=new, source=source)
        row = _row(pg, rid)
        assert row.status == "pending" and row.attempts == MAX_ATTEMPTS - 1 and row.chunking_since is None, row
    else:
        # The chunk task's retry, on the new bucket's store: the outage, not a death on the file.
        assert pipeline.chunk_one(new, pg, rid, run_id=run) is not None, _row(pg, rid)
        row = _row(pg, rid)
        assert row.status == "chunked" and row.attempts == MAX_ATTEMPTS, row
        discovery.release(pg, run)
    assert not s3.exists(discovery.refund_uri(s3, run, rid))


def test_a_run_whose_listed_bucket_is_gone_still_closes(stack, s3, pg, caplog):
    """The deployment moved to another store and the old bucket removed: its notes cannot be paid,
    which must not keep the report from closing the run (its leases) as before."""
    day, run = date(2126, 3, 3), "review1-listed-bucket-gone"
    source = reporting.run_source("calls-removed-since", "calls/")
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", source)
    assert not s3.client.bucket_exists("calls-removed-since")
    figures = reporting.report_run(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3, source=source)
    assert figures["recordings_found"] == 0
    assert "refund notes in bucket calls-removed-since cannot be read" in caplog.text


def test_an_outage_of_the_listed_bucket_fails_the_report_and_leaves_its_notes_owed(stack, s3, pg, monkeypatch):
    """The bucket the run listed answers its listing with a 5xx under an S3 code of the store's own
    (MinIO's read quorum lost, or its SlowDownRead): an outage, as that status says, not a bucket gone.
    The report must fail (its retry pays the note), not close the run with the attempt spent."""
    from types import SimpleNamespace

    from minio.error import S3Error

    from callscribe.storage import Store as RealStore

    day, run = date(2129, 3, 4), "review1-listed-bucket-down"
    source = reporting.run_source(s3.bucket, "calls/")
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", source)
    rid = _claimed(s3, pg, day, run, attempts=MAX_ATTEMPTS - 1)
    _outage_outlasting_the_refund(s3, pg, rid, run, monkeypatch)
    new, old = _switched(s3), s3.bucket
    real_list = RealStore.list

    def down(self, prefix, bucket=None):
        if (bucket or self.bucket) == old:
            raise S3Error(SimpleNamespace(status=503), "XMinioReadQuorum", "Multiple disk failures, unable to "
                          "reconstruct data.", prefix, "req", "host", old)
        return real_list(self, prefix, bucket)

    monkeypatch.setattr(RealStore, "list", down)
    with pytest.raises(S3Error):
        reporting.report_run(pg, run, "transcribe_calls", day, "whisper-tiny", store=new, source=source)
    assert s3.exists(discovery.refund_uri(s3, run, rid))
    # The store back: the report's retry pays it.
    monkeypatch.setattr(RealStore, "list", real_list)
    reporting.report_run(pg, run, "transcribe_calls", day, "whisper-tiny", store=new, source=source)
    row = _row(pg, rid)
    assert row.attempts == MAX_ATTEMPTS - 1 and row.chunking_since is None, row
