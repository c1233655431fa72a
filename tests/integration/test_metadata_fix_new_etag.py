"""A metadata fix (the object copied onto itself, x-amz-meta-* replaced) keeps the ETag only where the
ETag is the MD5 of the bytes. On AWS S3 the copy of an object made by a multipart upload gets another
ETag (CopyObject's reference: the source's and the copy's ETags are identical for a *non-multipart*
object), and an SSE-KMS or SSE-C object's ETag is not the MD5 of its bytes at all: a new one at each
copy. SeaweedFS, the test store, keeps the ETag through the copy, so test_metadata_fixes never sees it.

Reproduced with real bytes: the long call is uploaded in parts (ETag "<...>-1"), and the fix leaves what
AWS's copy leaves, the same bytes under their MD5 ETag, with the new metadata and a later LastModified.
"""

from __future__ import annotations

import time
from datetime import date

import pytest
import sqlalchemy as sa
from minio.datatypes import Part

from callscribe import reporting
from callscribe.audit import audit_day
from callscribe.discovery import day_prefix
from tests.integration.copies import call_bytes, table
from tests.integration.helpers import run_through
from tests.integration.test_metadata_fixes import _mono_call

pytestmark = pytest.mark.integration


def _put_in_parts(s3, key: str, data: bytes, meta: dict[str, str]) -> str:
    client = s3.client
    headers = {"Content-Type": "audio/wav", **{f"x-amz-meta-{k}": v for k, v in meta.items()}}
    upload = client._create_multipart_upload(s3.bucket, key, headers)
    etag = client._upload_part(s3.bucket, key, data, None, upload, 1)
    client._complete_multipart_upload(s3.bucket, key, upload, [Part(1, etag)])
    return next(o.etag for o in s3.list(key) if o.key == key)


def _done_in_parts(s3, pg, day: date, name: str, seed: int, run_id: str) -> tuple[str, bytes, str]:
    """A call uploaded in parts (agent A-17) and transcribed by run ``run_id``: its key, bytes and etag."""
    key = day_prefix("calls/", day) + name
    data = call_bytes(seed)
    etag = _put_in_parts(s3, key, data, {"agent-id": "A-17"})
    assert run_through(s3, pg, day, run_id).ok
    return key, data, etag


def _fix_metadata_as_aws_does(s3, key: str, data: bytes, meta: dict[str, str]) -> str:
    """AWS's copy of a multipart object onto itself: the same bytes, a new (MD5) ETag, new metadata."""
    time.sleep(1.1)
    s3.put_bytes(s3.uri(key), data, "audio/wav", metadata=meta)
    return next(o.etag for o in s3.list(key) if o.key == key)


def _rows(pg, key: str) -> list[sa.Row]:
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT r.id, r.status, r.etag, r.agent_id, r.loads, r.last_run_id, "
            "(SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts "
            "FROM recordings r WHERE r.object_key = :k ORDER BY r.id"), {"k": key}).all()


def test_a_metadata_fix_of_a_call_uploaded_in_parts_is_not_a_new_call_to_transcribe(stack, s3, pg):
    day = date(2094, 3, 10)
    key = day_prefix("calls/", day) + "long.wav"
    data = call_bytes(49410)
    first = _put_in_parts(s3, key, data, {"agent-id": "A-17"})
    assert first.endswith("-1")
    assert run_through(s3, pg, day, "scheduled__rv3-meta-parts-1").ok
    [before] = _rows(pg, key)
    assert (before.status, before.agent_id, before.loads) == ("done", "A-17", 1), before

    fixed = _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-42"})
    assert fixed != first  # what AWS S3 answers after the copy
    verdict = run_through(s3, pg, day, "scheduled__rv3-meta-parts-2")
    assert verdict.ok, verdict.problems()
    rows = _rows(pg, key)
    done = [r for r in rows if r.status == "done"]
    assert len(done) == 1 and done[0].agent_id == "A-42", table(pg, day)
    # The fix names the agent; the words are the same: not transcribed (nor loaded) a second time.
    assert done[0].id == before.id and done[0].loads == 1, rows


def test_the_call_that_took_the_new_etag_stays_as_it_is_at_the_next_runs(stack, s3, pg):
    """After the fix the done row answers for the bucket's upload (its etag, the new agent on its
    lines); the new version's row is superseded under an etag no listing matches: later runs
    register nothing, transcribe nothing, and the day audits clean."""
    day = date(2096, 5, 3)
    key, data, first = _done_in_parts(s3, pg, day, "parts.wav", 49411, "scheduled__rv5-meta-parts-1")
    fixed = _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-42"})
    assert fixed != first
    verdict = run_through(s3, pg, day, "scheduled__rv5-meta-parts-2")
    assert verdict.ok, verdict.problems()
    [done, new] = _rows(pg, key)
    assert (done.status, done.etag, done.agent_id, done.loads, done.transcripts) == ("done", fixed, "A-42", 1, 1), done
    assert done.last_run_id == "scheduled__rv5-meta-parts-2"  # the run that took the upload answers for it
    assert (new.status, new.etag, new.transcripts) == ("superseded", f"{fixed}#{new.id}", 0), new
    with pg.connect() as c:
        agents = c.execute(sa.text("SELECT DISTINCT agent_id FROM segments WHERE recording_id = :i"),
                           {"i": done.id}).scalars().all()
        err = c.execute(sa.text("SELECT last_error FROM recordings WHERE id = :i"), {"i": new.id}).scalar_one()
    assert agents == ["A-42"], agents
    assert f"recording {done.id}" in err, err
    for n in (3, 4):
        verdict = run_through(s3, pg, day, f"scheduled__rv5-meta-parts-{n}")
        assert verdict.ok, verdict.problems()
        assert [(r.id, r.status, r.etag, r.agent_id, r.loads, r.transcripts) for r in _rows(pg, key)] == [
            (done.id, "done", fixed, "A-42", 1, 1), (new.id, "superseded", new.etag, new.agent_id, 0, 0)]
    assert audit_day(s3, pg, day).clean


def test_a_new_etag_fix_that_renames_a_mono_calls_speakers_has_it_transcribed_again(stack, s3, pg):
    """Who speaks first names every line of a mono call: that fix is no mere tag, so the new upload is
    transcribed as a new version (in the same run), and its transcript replaces the old one."""
    day = date(2096, 5, 5)
    key = day_prefix("calls/", day) + "mono.wav"
    data = _mono_call()
    first = _put_in_parts(s3, key, data, {"agent-id": "A-5", "first-speaker": "agent"})
    assert run_through(s3, pg, day, "scheduled__rv5-meta-mono-1").ok
    fixed = _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-5", "first-speaker": "customer"})
    assert fixed != first
    verdict = run_through(s3, pg, day, "scheduled__rv5-meta-mono-2")
    assert verdict.ok, verdict.problems()
    [old, new] = _rows(pg, key)
    assert (old.status, old.transcripts) == ("superseded", 0), old
    assert (new.status, new.etag, new.loads) == ("done", fixed, 1), new
    with pg.connect() as c:
        first_speaker = c.execute(sa.text("SELECT speaker FROM segments WHERE recording_id = :i ORDER BY start_s "
                                          "LIMIT 1"), {"i": new.id}).scalar_one()
    assert first_speaker == "customer"


# What comes after a take-over: a restore, a reprocess, the report, an erasure (call days in 2097).
def test_restore_of_the_old_multipart_version_after_the_take(stack, s3, pg):
    day = date(2097, 1, 3)
    key, data, first = _done_in_parts(s3, pg, day, "restore.wav", 49511, "scheduled__rv6-restore-1")
    fixed = _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-42"})
    assert fixed != first and run_through(s3, pg, day, "scheduled__rv6-restore-2").ok
    time.sleep(1.1)
    again = _put_in_parts(s3, key, data, {"agent-id": "A-17"})
    assert again == first
    verdict = run_through(s3, pg, day, "scheduled__rv6-restore-3")
    assert verdict.ok, verdict.problems()
    rows = _rows(pg, key)
    done = [r for r in rows if r.status == "done"]
    assert len(done) == 1 and done[0].etag == first and done[0].agent_id == "A-17" and done[0].loads == 1, rows
    assert sum(r.transcripts for r in rows) == 1, rows
    assert audit_day(s3, pg, day).clean


def test_reprocess_run_over_the_new_etag_reprocesses_the_call(stack, s3, pg):
    day = date(2097, 1, 5)
    key, data, _ = _done_in_parts(s3, pg, day, "reproc.wav", 49611, "scheduled__rv6-reproc-1")
    _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-42"})
    reporting.run_listed(pg, "manual__rv6-reproc-2", "transcribe_calls", day, "whisper-tiny")  # as discover does
    verdict = run_through(s3, pg, day, "manual__rv6-reproc-2", reprocess=True)
    rows = _rows(pg, key)
    with pg.connect() as c:
        loaded = c.execute(sa.text("SELECT id, loaded_run_id, loads FROM recordings WHERE object_key = :k "
                                   "AND status = 'done'"), {"k": key}).all()
    # A reprocess run transcribes the day's done calls again: this one too (before, it handed the new
    # version to the done row untranscribed, and was red for it: "not reprocessed").
    assert verdict.ok, (verdict.problems(), rows, loaded)
    assert [r.loaded_run_id for r in loaded] == ["manual__rv6-reproc-2"], (rows, loaded)


def test_report_counts_of_the_take_run(stack, s3, pg):
    day = date(2097, 1, 7)
    key, data, _ = _done_in_parts(s3, pg, day, "counts.wav", 49711, "scheduled__rv6-counts-1")
    from callscribe import db
    with pg.connect() as c:
        first = c.execute(db.q("report_run"), {"run_id": "scheduled__rv6-counts-1"}).one()
    _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-42"})
    assert run_through(s3, pg, day, "scheduled__rv6-counts-2").ok
    with pg.connect() as c:
        rep = c.execute(db.q("report_run"), {"run_id": "scheduled__rv6-counts-2"}).one()
    assert rep.recordings_found == (rep.recordings_done + rep.recordings_failed + rep.recordings_quarantined
                                    + rep.recordings_duplicate + rep.recordings_unfinished), rep
    # One call, found and done (the new etag's row is not a call of its own); run 2 transcribed
    # nothing: no segments or audio are its.
    assert (rep.recordings_found, rep.recordings_done) == (1, 1), rep
    assert rep.segments == 0 and rep.audio_s == 0, rep
    # As run 1 closed, the call's audio and segments were its (the figures above are not zero for nothing).
    assert first.segments > 0 and first.audio_s > 0 and first.recordings_found == 1, first


def test_erasure_after_the_take_removes_both_rows(stack, s3, pg):
    from callscribe.erasure import erase
    day = date(2097, 1, 9)
    key, data, _ = _done_in_parts(s3, pg, day, "erase.wav", 49811, "scheduled__rv6-erase-1")
    _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-42"})
    assert run_through(s3, pg, day, "scheduled__rv6-erase-2").ok
    erase(s3, pg, key, "reviewer", delete_audio=True)
    assert _rows(pg, key) == []
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM segments WHERE call_date = :d"), {"d": day}).scalar_one() == 0
    verdict = run_through(s3, pg, day, "scheduled__rv6-erase-3")
    assert verdict.ok, verdict.problems()
    assert _rows(pg, key) == []


def test_a_copy_listed_with_the_fix_stands_on_the_call_that_takes_the_new_etag(stack, s3, pg):
    """The fix (the same bytes under a new etag) and a copy of the call under another key are listed by one
    run: discovery marks the copy a duplicate of the new version's row (the same etag, first by key), and
    the chunker then hands that row's etag to the transcribed version and supersedes it. The copy follows
    to the call (before, it stood on the superseded row, and the run was red for a call it had accounted
    for: "a copy whose original is superseded")."""
    day = date(2118, 3, 1)
    key, data, first = _done_in_parts(s3, pg, day, "a.wav", 49911, "scheduled__rev1-take-copy-1")
    fixed = _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-42"})
    copy = day_prefix("calls/", day) + "b.wav"  # after a.wav by name: its row is newer than the fix's
    s3.put_bytes(s3.uri(copy), data, "audio/wav", metadata={"agent-id": "A-43"})
    verdict = run_through(s3, pg, day, "scheduled__rev1-take-copy-2")
    assert verdict.ok, (verdict.problems(), table(pg, day))
    [done, new] = _rows(pg, key)
    assert (done.status, done.etag, done.loads, done.transcripts) == ("done", fixed, 1, 1), done
    assert new.status == "superseded", new
    with pg.connect() as c:
        dup = c.execute(sa.text("SELECT status, duplicate_of, last_error, loads FROM recordings WHERE object_key = :k"),
                        {"k": copy}).one()
    assert (dup.status, dup.duplicate_of, dup.loads) == ("duplicate", done.id, 0), dup
    assert f"(recording {done.id})" in dup.last_error and key in dup.last_error, dup
    assert run_through(s3, pg, day, "scheduled__rev1-take-copy-3").ok
    assert audit_day(s3, pg, day).clean


def test_a_copy_named_before_the_fixed_key_stands_on_the_call_already_transcribed(stack, s3, pg):
    """As above, with the copy first by name: its row is chunked before the fix's, while the transcribed
    version is no longer its key's newest row. README ("Copies are one call"): one already transcribed
    stays the original; the GPU does not hear the call twice."""
    day = date(2118, 3, 3)
    key, data, _ = _done_in_parts(s3, pg, day, "b.wav", 49913, "scheduled__rev1-take-copy-first-1")
    [before] = _rows(pg, key)
    _fix_metadata_as_aws_does(s3, key, data, {"agent-id": "A-42"})
    copy = day_prefix("calls/", day) + "a.wav"
    s3.put_bytes(s3.uri(copy), data, "audio/wav", metadata={"agent-id": "A-43"})
    verdict = run_through(s3, pg, day, "scheduled__rev1-take-copy-first-2")
    assert verdict.ok, (verdict.problems(), table(pg, day))
    with pg.connect() as c:
        dup = c.execute(sa.text("SELECT status, duplicate_of, loads FROM recordings WHERE object_key = :k"),
                        {"k": copy}).one()
    done = [r for r in _rows(pg, key) if r.status == "done"]
    assert [(r.id, r.loads, r.transcripts) for r in done] == [(before.id, 1, 1)], table(pg, day)
    assert (dup.status, dup.duplicate_of, dup.loads) == ("duplicate", before.id, 0), table(pg, day)
