"""Copies of one call, the harder cases: an original back in the bucket after its copy was
transcribed, a copy's key overwritten, erasures of either key (also before any run registered
the copy), an original that failed for good, three copies, another run's lease, a reprocess, and
migration 0021 down and up with copies in the table.
"""

from __future__ import annotations

import time
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.audit import audit_day
from callscribe.erasure import erase
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration

# ------------------------------------------------------------------ an original back again


def test_an_original_put_back_after_its_copy_was_transcribed_becomes_the_copy(stack, s3, pg):
    """a and b hold the same call; b is the copy. a is deleted, so b is transcribed. a put back
    (its row pending again, with an id lower than b's) is compared with the transcribed b too,
    not only with older rows: the call stays transcribed once."""
    day = date(2043, 1, 5)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rv1-1").ok
    s3.purge(s3.uri(a))
    assert run_through(s3, pg, day, "manual__rv1-2").ok
    assert cp.transcribed_keys(pg, day) == ["b.wav"]
    cp.put(s3, day, "a.wav", cp.CALL)  # restored from a backup: the very same bytes
    verdict = run_through(s3, pg, day, "manual__rv1-3")
    assert verdict.ok, verdict.problems()
    rows = cp.newest(pg, day)
    # Expected: one of the two keys is `duplicate` of the other; the call transcribed once.
    assert cp.transcribed_keys(pg, day) in (["a.wav"], ["b.wav"]), (
        f"same content transcribed twice: a={rows['a.wav'].status}/{rows['a.wav'].transcripts} "
        f"b={rows['b.wav'].status}/{rows['b.wav'].transcripts}")


def test_a_key_put_back_to_a_call_another_key_got_meanwhile_keeps_one_transcript(stack, s3, pg):
    """a holds X (done). a is overwritten with Y and X is exported again as b, which is no copy
    (a's X row has a newer upload), so b is transcribed. Before Y is chunked, a is put back to X:
    a's old X row is current and done again beside b's. The next discovery keeps one transcript
    (discover_copy_retire.sql; without it, the audit calls the day "doubled")."""
    day = date(2043, 1, 6)
    cp.put(s3, day, "a.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rv2-1").ok
    cp.put(s3, day, "a.wav", cp.OTHER)
    cp.put(s3, day, "b.wav", cp.CALL)
    run_through(s3, pg, day, "manual__rv2-2", before_chunk=lambda: cp.put(s3, day, "a.wav", cp.CALL))
    verdict = run_through(s3, pg, day, "manual__rv2-3")
    assert verdict.ok, verdict.problems()
    assert cp.transcribed_keys(pg, day) in (["a.wav"], ["b.wav"]), [
        (cp.name(r), r.etag[:8], r.status, r.transcripts) for r in cp.rows(pg, day)]


# ------------------------------------------------------------------ a copy's key overwritten


def test_a_copys_key_overwritten_is_no_copy_any_more(stack, s3, pg):
    """b was a copy of a, then overwritten with bytes that are not audio (quarantined). b's copy
    row is superseded at once, so erasing a does not tell the DPO "the same audio is also under
    b", which holds something else now (erased on that advice, it would be another call)."""
    day = date(2043, 1, 7)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rv3-1").ok
    cp.put(s3, day, "b.wav", b"this is not audio at all " * 200)
    assert run_through(s3, pg, day, "manual__rv3-2").ok
    b_rows = [(r.status, r.duplicate_of is not None) for r in cp.rows(pg, day) if cp.name(r) == "b.wav"]
    done = erase(s3, pg, a, "dpo", dry_run=True)
    assert done.copies == [], f"erasure names {done.copies} as holding a's audio; b's rows: {b_rows}"
    assert [s for s, _ in b_rows] == ["superseded", "quarantined"], b_rows


def test_a_copys_key_overwritten_then_put_back_is_transcribed_when_the_original_goes(stack, s3, pg):
    """b (a copy of a) is overwritten with bytes that are not audio, then put back to the call,
    and a is deleted: the run that notices transcribes b, green (not red twice over an old copy
    row that no run would claim)."""
    day = date(2043, 1, 10)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rv6-1").ok
    cp.put(s3, day, "b.wav", b"this is not audio at all " * 200)
    assert run_through(s3, pg, day, "manual__rv6-2").ok
    cp.put(s3, day, "b.wav", cp.CALL)  # the wrong export fixed: b holds the call again
    assert run_through(s3, pg, day, "manual__rv6-3").ok
    time.sleep(1.1)  # runs are a day apart: no upload of this test reads as racing the next run's listing
    s3.purge(s3.uri(a))
    verdict = run_through(s3, pg, day, "manual__rv6-4")
    b_rows = [(r.status, r.transcripts) for r in cp.rows(pg, day) if cp.name(r) == "b.wav"]
    transcribed = cp.transcribed_keys(pg, day)
    # What the next two runs make of it (for the report): red, then red again, then healed.
    later = [run_through(s3, pg, day, f"manual__rv6-{n}").problems() for n in (5, 6)]
    assert transcribed == ["b.wav"] and verdict.ok, (b_rows, verdict.problems(), later)


# ------------------------------------------------------------------ duplicate_of only while a copy


def test_a_former_copy_transcribed_on_its_own_names_no_original(stack, s3, pg):
    """b was a copy of a, then deleted; a is deleted and b put back, so b is transcribed on its
    own. analytics.calls shows no duplicate_of for it, and erasing a leaves its reason alone (no
    "not transcribed" on a transcribed call)."""
    day = date(2043, 1, 8)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    b = cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rv4-1").ok
    s3.purge(s3.uri(b))
    assert run_through(s3, pg, day, "manual__rv4-2").ok
    s3.purge(s3.uri(a))
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "manual__rv4-3").ok
    with pg.connect() as c:
        view = c.execute(sa.text("SELECT status, duplicate_of FROM analytics.calls WHERE object_key = :k"),
                         {"k": b}).one()
    erase(s3, pg, a, "dpo")
    after = cp.newest(pg, day)["b.wav"]
    assert view.status == "done" and after.status == "done" and after.transcripts > 0
    assert (view.duplicate_of, after.last_error) == (None, None), (
        f"a transcribed call shows duplicate_of={view.duplicate_of}; after erasing a its reason reads "
        f"{after.last_error!r}")


# ------------------------------------------------------------------ erasure and copies no run has registered


def test_an_erasure_names_a_copy_no_run_has_registered(stack, s3, pg):
    """a is transcribed; the same call lands under b before the next run. Erasing a names b (it
    lists the day's folder, not only the rows), so the DPO can erase it too before the next run
    transcribes it as a call of its own."""
    day = date(2043, 1, 9)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rv5-1").ok
    b = cp.put(s3, day, "b.wav", cp.CALL)
    done = erase(s3, pg, a, "dpo")
    assert run_through(s3, pg, day, "manual__rv5-2").ok
    status = cp.newest(pg, day)["b.wav"].status
    assert done.copies == [b]
    assert status == "done"


# ------------------------------------------------------------------ an original that failed for good


def test_a_copy_of_a_recording_that_failed_for_good_is_tried_on_its_own(stack, s3, pg):
    """a ended `failed` out of attempts (the chunk task died three times: it may have been the
    machine). The same call arriving as b is no copy of a failure: it is transcribed."""
    day = date(2043, 1, 11)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    run_through(s3, pg, day, "scheduled__rv7-1", stop="listed")
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'failed', attempts = 3, lease_until = NULL, "
                          "last_error = 'gave up after 3 attempts: the chunk task died while decoding' "
                          "WHERE object_key = :k"), {"k": a})
    cp.put(s3, day, "b.wav", cp.CALL)
    verdict = run_through(s3, pg, day, "manual__rv7-2")
    b = cp.newest(pg, day)["b.wav"]
    assert verdict.ok, verdict.problems()
    assert (b.status, b.duplicate_of) == ("done", None), (b.status, b.last_error)


def test_a_copy_of_a_recording_that_cannot_be_decoded_says_so(stack, s3, pg):
    """a and b hold the same bytes, which are no audio: a is quarantined when chunked, and b, its
    copy (the same bytes cannot decode under another name), said it was "transcribed there". It
    now says its original was quarantined, and why."""
    day = date(2043, 4, 2)
    junk = b"RIFF....WAVEjunk" + bytes(range(256)) * 40
    cp.put(s3, day, "a.wav", junk)
    cp.put(s3, day, "b.wav", junk)
    verdict = run_through(s3, pg, day, "scheduled__rv7-3")
    assert verdict.ok, verdict.problems()
    rows = cp.newest(pg, day)
    assert rows["a.wav"].status == "quarantined", cp.table(pg, day)
    b = rows["b.wav"]
    assert b.status == "duplicate" and b.duplicate_of == rows["a.wav"].id, cp.table(pg, day)
    assert "transcribed there" not in b.last_error and "quarantined" in b.last_error, b.last_error
    assert rows["a.wav"].last_error in b.last_error, b.last_error


# ------------------------------------------------------------------ sound already


def test_three_copies_original_deleted_then_the_next_is_transcribed_once(stack, s3, pg):
    day = date(2043, 1, 12)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    cp.put(s3, day, "c.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rvp1-1").ok
    assert [r.status for r in cp.rows(pg, day)] == ["done", "duplicate", "duplicate"]
    s3.purge(s3.uri(a))
    verdict = run_through(s3, pg, day, "manual__rvp1-2")
    assert verdict.ok, verdict.problems()
    rows = cp.newest(pg, day)
    assert cp.transcribed_keys(pg, day) == ["b.wav"]
    assert rows["c.wav"].status == "duplicate" and rows["c.wav"].duplicate_of == rows["b.wav"].id
    assert audit_day(s3, pg, day).clean


def test_erasing_the_original_leaves_its_name_nowhere_and_one_copy_is_transcribed(stack, s3, pg):
    day = date(2043, 1, 13)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    b = cp.put(s3, day, "b.wav", cp.CALL)
    c = cp.put(s3, day, "c.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rvp2-1").ok
    done = erase(s3, pg, a, "dpo")
    assert done.copies == [b, c]
    with pg.connect() as conn:
        hits = conn.execute(sa.text(
            "SELECT count(*) FROM recordings WHERE position(:k in COALESCE(last_error, '')) > 0"),
            {"k": a}).scalar_one()
        logged = conn.execute(sa.text("SELECT count(*) FROM access_log WHERE position(:k in COALESCE(detail, '')) > 0"),
                              {"k": a}).scalar_one()
    assert hits == 0 and logged == 0
    assert run_through(s3, pg, day, "manual__rvp2-2").ok
    assert [r.status for r in cp.rows(pg, day)] == ["done", "duplicate"]  # b, then c its copy
    assert audit_day(s3, pg, day).clean


def test_a_copy_of_a_recording_in_another_live_runs_lease(stack, s3, pg):
    """Original claimed by a daily run still live; its copy arrives and a backfill of the day marks
    it; the daily run dies; the next run finishes the original; the copy stays one call."""
    day = date(2043, 1, 16)
    cp.put(s3, day, "a.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rvp4-1", stop="listed") is None  # holds a's lease
    time.sleep(1.1)  # object times are whole seconds: b's upload in a later second than that listing
    cp.put(s3, day, "b.wav", cp.CALL)
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    verdict = run_through(s3, pg, day, "backfill__rvp4-2", is_live=lambda r: r == "scheduled__rvp4-1")
    assert verdict.ok, verdict.problems()
    rows = cp.newest(pg, day)
    assert rows["b.wav"].status == "duplicate" and rows["a.wav"].status == "pending"
    verdict = run_through(s3, pg, day, "manual__rvp4-3")
    assert verdict.ok, verdict.problems()
    assert cp.transcribed_keys(pg, day) == ["a.wav"] and cp.newest(pg, day)["b.wav"].status == "duplicate"
    assert audit_day(s3, pg, day).clean


def test_erasing_the_copy_leaves_the_original_transcribed(stack, s3, pg):
    day = date(2043, 1, 17)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    b = cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rvp5-1").ok
    done = erase(s3, pg, b, "dpo")
    assert done.copies == [a]
    assert run_through(s3, pg, day, "manual__rvp5-2").ok
    assert cp.transcribed_keys(pg, day) == ["a.wav"] and [r.status for r in cp.rows(pg, day)] == ["done"]
    assert audit_day(s3, pg, day).clean


def test_a_reprocess_run_leaves_copies_alone_and_is_green(stack, s3, pg):
    day = date(2043, 1, 18)
    cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rvp6-1").ok
    verdict = run_through(s3, pg, day, "manual__rvp6-2", reprocess=True)
    assert verdict.ok, verdict.problems()
    rows = cp.newest(pg, day)
    assert rows["a.wav"].status == "done" and rows["a.wav"].loads == 2 and rows["b.wav"].status == "duplicate"


def test_migration_0021_goes_down_and_up_with_copies_in_the_table(stack, s3, pg):
    """Last in the file: the schema goes down to 0020 and back up."""
    from callscribe import db
    from tests.integration.helpers import downgrade

    day = date(2043, 1, 15)
    cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__rvp3-1").ok
    downgrade(pg, "0020")
    try:
        with pg.connect() as c:
            states = c.execute(sa.text("SELECT status FROM recordings WHERE call_date = :d ORDER BY id"),
                               {"d": day}).scalars().all()
            cols = c.execute(sa.text("SELECT column_name FROM information_schema.columns "
                                     "WHERE table_schema = 'analytics' AND table_name = 'calls'")).scalars().all()
        assert states == ["done", "pending"] and "duplicate_of" not in cols
    finally:
        db.migrate(pg)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM analytics.calls WHERE call_date = :d AND duplicate_of IS NULL"),
                         {"d": day}).scalar_one() == 2
    verdict = run_through(s3, pg, day, "manual__rvp3-2")
    assert verdict.ok, verdict.problems()
