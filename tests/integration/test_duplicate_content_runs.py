"""Copies of one call across runs: erasing the copy rather than the original, an original that
fails for good (and a reprocess after it), a key put back while another run holds its copy, a
pair of transcripts another run holds (live or over), erasure dry runs and repeats, and three
transcribed keys of one audio."""

from __future__ import annotations

import time
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery
from callscribe.audit import audit_day
from callscribe.erasure import erase
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration

# ------------------------------------------------------------------ erasing a copy


def test_erasing_the_copy_leaves_its_untaken_original_to_be_transcribed(stack, s3, pg):
    """a (original) and b (its copy) are registered; the run that claimed a ends before chunking
    it (a pending, attempts 0). The DPO erases b only, told a holds the same audio, and keeps a:
    the next run transcribes a."""
    day = date(2044, 2, 1)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    b = cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__z1-1", stop="listed") is None
    discovery.close_run(pg, "scheduled__z1-1")  # its chunk task never started; the report closed it
    before = cp.newest(pg, day)
    assert (before["a.wav"].status, before["a.wav"].attempts, before["b.wav"].status) == ("pending", 0, "duplicate")
    done = erase(s3, pg, b, "dpo")
    assert done.copies == [a]
    verdict = run_through(s3, pg, day, "manual__z1-2")
    after = cp.newest(pg, day)["a.wav"]
    assert after.status == "done" and after.transcripts > 0, (
        f"expected the kept original a transcribed; actual a is {after.status} ({after.last_error!r}), "
        f"verdict ok={verdict.ok}")


def test_an_original_kept_by_the_dpo_is_transcribed_again_once_restored(stack, s3, pg):
    """a transcribed, b its copy; the DPO erases b and keeps a. a, later deleted by mistake and
    restored from a backup (the same bytes), is transcribed again like any restored key."""
    day = date(2044, 2, 2)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    b = cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__z2-1").ok
    erase(s3, pg, b, "dpo")
    assert cp.transcribed_keys(pg, day) == ["a.wav"]
    s3.purge(s3.uri(a))
    assert run_through(s3, pg, day, "manual__z2-2").ok
    cp.put(s3, day, "a.wav", cp.CALL)
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    verdict = run_through(s3, pg, day, "manual__z2-3")
    after = cp.newest(pg, day)["a.wav"]
    assert cp.transcribed_keys(pg, day) == ["a.wav"], (
        f"expected a transcribed again; actual a is {after.status} ({after.last_error!r}), verdict ok={verdict.ok}")


# ------------------------------------------------------------------ an original that fails for good


def test_an_audit_names_the_copy_of_an_original_that_failed_for_good(stack, s3, pg):
    """a's run gives up on it (failed, 3 attempts) while b, its copy, is `duplicate`: the call has
    no transcript anywhere, so the audit names b as owed until a discovery of the day revives it
    (with lookback_days 0 no later run might otherwise)."""
    day = date(2044, 2, 3)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__z3-1", stop="listed") is None
    cp.give_up(pg, a)
    rows = cp.newest(pg, day)
    assert rows["b.wav"].status == "duplicate" and rows["b.wav"].duplicate_of == rows["a.wav"].id
    result = audit_day(s3, pg, day)
    assert cp.transcribed_keys(pg, day) == []
    assert not result.clean, (f"expected the copy b named unfinished (its original failed for good, the call has "
                              f"no transcript); actual audit clean: {result.as_dict()}")


def test_a_reprocess_after_a_failed_original_transcribes_its_call_once(stack, s3, pg):
    """a failed for good, so its copy b was transcribed on its own. A reprocess run of the day
    makes a b's copy instead of taking both: one transcript, green."""
    day = date(2044, 2, 4)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__z4-1", stop="listed") is None
    cp.give_up(pg, a)
    assert run_through(s3, pg, day, "manual__z4-2").ok
    assert cp.transcribed_keys(pg, day) == ["b.wav"]
    verdict = run_through(s3, pg, day, "manual__z4-3", reprocess=True)
    transcribed = cp.transcribed_keys(pg, day)
    assert verdict.ok and len(transcribed) == 1, (
        f"expected one transcript and a green reprocess; actual transcribed={transcribed}, "
        f"problems={verdict.problems()}")


# ------------------------------------------------------------------ a key back while its copy is claimed


def test_a_key_put_back_while_another_run_holds_its_copy_is_the_copy(stack, s3, pg):
    """b transcribed, deleted, and the same call exported as a (no copy: b is gone). Run R claims a
    but has not chunked it when b is put back; run S sees b pending again with a lower id than a:
    a row another run has taken is the original, so b is a's copy and the call is transcribed
    once."""
    day = date(2044, 2, 5)
    b = cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__z5-1").ok
    s3.purge(s3.uri(b))
    cp.put(s3, day, "a.wav", cp.CALL)
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    seen = {}

    def restore_and_run_s():
        cp.put(s3, day, "b.wav", cp.CALL)
        time.sleep(1.1)  # object times are whole seconds: later than the upload's second
        seen["s"] = run_through(s3, pg, day, "manual__z5-S", is_live=lambda r: r == "manual__z5-R")
        seen["rows"] = cp.table(pg, day)

    verdict_r = run_through(s3, pg, day, "manual__z5-R", before_chunk=restore_and_run_s)
    transcribed = cp.transcribed_keys(pg, day)
    result = audit_day(s3, pg, day)
    assert len(transcribed) == 1, (
        f"expected the call transcribed once; actual transcribed under {transcribed}; after S: {seen['rows']}; "
        f"S ok={seen['s'].ok}, R ok={verdict_r.ok}; audit: {result.duplicated}")


# ------------------------------------------------------------------ verdict: a pair in another run's hands


def test_a_pair_of_transcripts_another_live_run_holds_is_in_progress(stack, s3, pg):
    """a held X (done); a overwritten with Y, taken by live run X; b exported with X (no copy: a's X
    row has a newer upload) is transcribed; a live reprocess run R takes b; a is put back to X.
    Run S's discovery leaves b to R (discover_copy_retire.sql), and S's verdict counts the pair
    in progress, R's to answer for, not doubled."""
    day = date(2044, 2, 6)
    live = {"manual__z6-X", "manual__z6-R"}
    cp.put(s3, day, "a.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__z6-1").ok
    cp.put(s3, day, "a.wav", cp.OTHER)
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    assert run_through(s3, pg, day, "manual__z6-X", stop="listed") is None
    cp.put(s3, day, "b.wav", cp.CALL)
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    run_through(s3, pg, day, "manual__z6-2", is_live=lambda r: r in live)
    assert "b.wav" in cp.transcribed_keys(pg, day), cp.table(pg, day)
    assert run_through(s3, pg, day, "manual__z6-R", reprocess=True, stop="listed", is_live=lambda r: r in live) is None
    cp.put(s3, day, "a.wav", cp.CALL)  # put back
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    verdict = run_through(s3, pg, day, "manual__z6-S", is_live=lambda r: r in live)
    table = cp.table(pg, day)
    assert verdict.ok, (f"expected S green (b is in live reprocess run R's hands); actual red: "
                        f"{verdict.problems()}; rows: {table}")


# ------------------------------------------------------------------ more


def test_erasure_dry_run_changes_nothing_and_twice_leaves_no_name(stack, s3, pg):
    day = date(2044, 2, 7)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    b = cp.put(s3, day, "b.wav", cp.CALL)
    c = cp.put(s3, day, "c.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__zp1-1").ok

    def snapshot():
        with pg.connect() as conn:
            return (conn.execute(sa.text("SELECT r::text FROM recordings r WHERE call_date = :d ORDER BY id"),
                                 {"d": day}).scalars().all(),
                    conn.execute(sa.text("SELECT e::text FROM erasures e ORDER BY 1")).scalars().all(),
                    conn.execute(sa.text("SELECT count(*) FROM access_log")).scalar_one())

    before = snapshot()
    dry = erase(s3, pg, a, "dpo", dry_run=True)
    assert dry.copies == [b, c] and snapshot() == before
    erase(s3, pg, a, "dpo")
    again = erase(s3, pg, a, "dpo")
    assert again.finished_earlier
    with pg.connect() as conn:
        hits = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM recordings r WHERE position(:k in r::text) > 0)"
            " + (SELECT count(*) FROM access_log l WHERE position(:k in l::text) > 0)"
            " + (SELECT count(*) FROM pipeline_runs p WHERE position(:k in p::text) > 0)"
            " + (SELECT count(*) FROM erasures e WHERE position(:k in e::text) > 0)"), {"k": a}).scalar_one()
    assert hits == 0
    assert run_through(s3, pg, day, "manual__zp1-2").ok
    assert [r.status for r in cp.rows(pg, day)] == ["done", "duplicate"]  # b, then c its copy


def test_three_done_keys_of_one_content_keep_the_oldest_once(stack, s3, pg):
    """Three keys transcribed on their own (as before migration 0021: made here by un-marking the
    copies and running them without the bytes the chunker records since 0024), then a discovery:
    one transcript left, the other two its copies."""
    day = date(2044, 2, 8)
    for n in ("a.wav", "b.wav", "c.wav"):
        cp.put(s3, day, n, cp.CALL)
    assert run_through(s3, pg, day, "scheduled__zp2-1").ok
    with pg.begin() as conn:  # as days transcribed before copies were matched: each on its own
        conn.execute(sa.text("UPDATE recordings SET status = 'pending', duplicate_of = NULL, last_error = NULL, "
                             "last_run_id = NULL WHERE call_date = :d AND status = 'duplicate'"), {"d": day})
        ids = conn.execute(sa.text("SELECT id FROM recordings WHERE call_date = :d AND status = 'pending' "
                                   "ORDER BY id"), {"d": day}).scalars().all()
    from callscribe import loading, pipeline
    from callscribe.config import s3_settings
    with pg.begin() as conn:
        conn.execute(sa.text("UPDATE recordings SET last_run_id = 'legacy__zp2', "
                             "lease_until = now() + interval '1 hour' WHERE id = ANY(:ids)"), {"ids": list(ids)})
    manifests = []
    for i, rid in enumerate(ids):  # bytes read before migration 0024 were not recorded
        with pg.begin() as conn:
            conn.execute(sa.text("UPDATE recordings SET content_sha256 = NULL WHERE call_date = :d"), {"d": day})
        manifests.append(pipeline.chunk_group(s3, pg, [rid], "legacy__zp2", i))
    jobs = pipeline.plan_jobs(s3, manifests, "legacy__zp2", "whisper-tiny")
    for job in jobs:
        pipeline.run_worker_local(job, s3_settings())
    loading.load_jobs(s3, pg, jobs, "legacy__zp2")
    discovery.close_run(pg, "legacy__zp2")
    assert cp.transcribed_keys(pg, day) == ["a.wav", "b.wav", "c.wav"]
    assert not audit_day(s3, pg, day).clean
    verdict = run_through(s3, pg, day, "manual__zp2-2")
    assert verdict.ok, verdict.problems()
    rows = cp.newest(pg, day)
    assert cp.transcribed_keys(pg, day) == ["a.wav"]
    assert rows["b.wav"].duplicate_of == rows["a.wav"].id == rows["c.wav"].duplicate_of
    assert audit_day(s3, pg, day).clean


def test_a_pair_of_transcripts_a_dead_run_held_is_settled_once_that_run_is_closed(stack, s3, pg):
    """As above, but the reprocess run R holding b is over (its lease not run out). S's discovery
    closes R, then settles the copies again: one transcript, green."""
    day = date(2044, 2, 9)
    live = {"manual__z7-X"}
    cp.put(s3, day, "a.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__z7-1").ok
    cp.put(s3, day, "a.wav", cp.OTHER)
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    assert run_through(s3, pg, day, "manual__z7-X", stop="listed") is None
    cp.put(s3, day, "b.wav", cp.CALL)
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    run_through(s3, pg, day, "manual__z7-2", is_live=lambda r: r in live)
    assert run_through(s3, pg, day, "manual__z7-R", reprocess=True, stop="listed", is_live=lambda r: r in live) is None
    cp.put(s3, day, "a.wav", cp.CALL)  # put back
    time.sleep(1.1)  # object times are whole seconds: later than the upload's second
    verdict = run_through(s3, pg, day, "manual__z7-S", is_live=lambda r: r in live)  # R is over
    transcribed = cp.transcribed_keys(pg, day)
    assert verdict.ok and len(transcribed) == 1, (
        f"expected S green with one transcript; actual transcribed={transcribed}, problems={verdict.problems()}; "
        f"rows: {cp.table(pg, day)}")


def test_a_reprocess_of_a_red_run_whose_original_failed_for_good_transcribes_the_call_once(stack, s3, pg):
    """a fails for good while b is its copy: the run is red (b owed). The operator's answer, a
    reprocess of the day, revives b and makes a b's copy in the same discovery: it transcribes the
    call once and is green, instead of transcribing both and going red "doubled"."""
    day = date(2044, 2, 10)
    a = cp.put(s3, day, "a.wav", cp.CALL)
    cp.put(s3, day, "b.wav", cp.CALL)
    assert run_through(s3, pg, day, "scheduled__z8-1", stop="listed") is None
    cp.give_up(pg, a)
    assert not audit_day(s3, pg, day).clean
    verdict = run_through(s3, pg, day, "manual__z8-2", reprocess=True)
    assert verdict.ok, verdict.problems()
    rows = cp.newest(pg, day)
    assert cp.transcribed_keys(pg, day) == ["b.wav"]
    assert (rows["a.wav"].status, rows["a.wav"].duplicate_of) == ("duplicate", rows["b.wav"].id)
