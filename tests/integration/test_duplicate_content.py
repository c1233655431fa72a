"""The same recording uploaded twice under two keys of one day (an export retried under a new
name, a call filed into two folders) is one call: transcribed once, the other key `duplicate`
with a reason and the recording it repeats, so analysts' counts and searches see it once.

A copy stands on its original's transcript: when that original leaves (deleted from the bucket,
replaced by new content), the copy is transcribed by the same run. When the original is erased
on request, the erasure names the copy, so the DPO can erase it too when it is the same call;
left alone, it is a call of its own again.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.audit import audit_day
from callscribe.discovery import day_prefix
from callscribe.erasure import erase
from callscribe.samples import sample_dir
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration

CALL = sample_dir() / "call-0003.wav"
OTHER = sample_dir() / "call-0002.mp3"


def _rows(pg, day: date) -> dict[str, sa.Row]:
    """object name -> its newest row, with its transcripts and the name of what it repeats."""
    with pg.connect() as c:
        rows = c.execute(sa.text(
            "SELECT r.id, r.object_key, r.status, r.last_error, r.duplicate_of, r.loads, o.object_key AS original, "
            "(SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts "
            "FROM recordings r LEFT JOIN recordings o ON o.id = r.duplicate_of "
            "WHERE r.call_date = :d ORDER BY r.id"), {"d": day}).all()
    return {r.object_key.rsplit("/", 1)[1]: r for r in rows}


def _put(s3, day: date, name: str, path) -> str:
    key = day_prefix("calls/", day) + name
    s3.put_bytes(s3.uri(key), path.read_bytes())
    return key


def test_the_same_audio_under_two_keys_is_transcribed_once(stack, s3, pg):
    day = date(2037, 3, 2)
    first = _put(s3, day, "a.wav", CALL)
    _put(s3, day, "b.wav", CALL)
    _put(s3, day, "c.mp3", OTHER)
    verdict = run_through(s3, pg, day, "scheduled__dup1")
    assert verdict.ok, verdict.problems()
    rows = _rows(pg, day)
    assert rows["a.wav"].status == "done" and rows["c.mp3"].status == "done"
    copy = rows["b.wav"]
    assert copy.status == "duplicate" and copy.duplicate_of == rows["a.wav"].id
    assert copy.transcripts == 0 and copy.loads == 0
    assert first in copy.last_error and "same content" in copy.last_error
    assert verdict.audits[0].states["duplicate"] == 1
    # A second run of the day changes nothing: the copy stays a copy, nothing is loaded twice.
    assert run_through(s3, pg, day, "manual__dup1-again").ok
    again = _rows(pg, day)
    assert again["b.wav"].status == "duplicate" and again["a.wav"].loads == 1
    assert audit_day(s3, pg, day).clean


def test_a_copy_is_transcribed_once_its_original_is_deleted(stack, s3, pg):
    day = date(2037, 3, 3)
    first = _put(s3, day, "a.wav", CALL)
    _put(s3, day, "b.wav", CALL)
    assert run_through(s3, pg, day, "scheduled__dup2").ok
    s3.purge(s3.uri(first))
    verdict = run_through(s3, pg, day, "manual__dup2-after-delete")
    assert verdict.ok, verdict.problems()
    rows = _rows(pg, day)
    assert rows["a.wav"].status == "deleted" and rows["a.wav"].transcripts == 0
    assert rows["b.wav"].status == "done" and rows["b.wav"].transcripts > 0 and rows["b.wav"].duplicate_of is None
    assert audit_day(s3, pg, day).clean


def test_a_copy_is_transcribed_once_its_original_gets_other_content(stack, s3, pg):
    day = date(2037, 3, 4)
    _put(s3, day, "a.wav", CALL)
    _put(s3, day, "b.wav", CALL)
    assert run_through(s3, pg, day, "scheduled__dup3").ok
    _put(s3, day, "a.wav", OTHER)  # the key now holds another call (a wrong export fixed)
    verdict = run_through(s3, pg, day, "manual__dup3-after-reupload")
    assert verdict.ok, verdict.problems()
    rows = _rows(pg, day)
    assert rows["a.wav"].status == "done"  # the new content's row
    assert rows["b.wav"].status == "done" and rows["b.wav"].transcripts > 0
    assert audit_day(s3, pg, day).clean


def test_erasing_the_original_names_its_copy_which_the_next_run_transcribes(stack, s3, pg):
    """The erasure names the other keys of the same audio, for the DPO to erase too when they are
    the same call; a copy left alone is a call of its own again, its reason no longer naming the
    erased key, and the next run transcribes it."""
    day = date(2037, 3, 5)
    first = _put(s3, day, "a.wav", CALL)
    second = _put(s3, day, "b.wav", CALL)
    assert run_through(s3, pg, day, "scheduled__dup4").ok
    done = erase(s3, pg, first, "dpo")
    assert done.copies == [second]
    assert second in done.summary()
    copy = _rows(pg, day)["b.wav"]
    assert (copy.status, copy.duplicate_of, copy.last_error, copy.transcripts) == ("pending", None, None, 0)
    verdict = run_through(s3, pg, day, "manual__dup4-after-erasure")
    assert verdict.ok, verdict.problems()
    assert _rows(pg, day)["b.wav"].status == "done"
    assert audit_day(s3, pg, day).clean


def test_the_same_audio_on_two_days_is_two_calls(stack, s3, pg):
    """Only copies within one day are matched: a day's run never waits on another day's rows."""
    days = [date(2037, 3, 6), date(2037, 3, 7)]
    for d in days:
        _put(s3, d, "a.wav", CALL)
        assert run_through(s3, pg, d, f"scheduled__dup5-{d}").ok
    assert [_rows(pg, d)["a.wav"].status for d in days] == ["done", "done"]


def test_a_key_uploaded_again_with_another_keys_call_then_restored(stack, s3, pg):
    """Key a, first holding call X, is overwritten with call Y that key b holds: a's X transcript
    leaves search (the bucket no longer holds it) and Y stays transcribed once, under b. Put back
    to X, a is transcribed again."""
    day = date(2037, 3, 9)
    _put(s3, day, "a.wav", CALL)
    _put(s3, day, "b.mp3", OTHER)
    assert run_through(s3, pg, day, "scheduled__dup6").ok
    _put(s3, day, "a.wav", OTHER)
    verdict = run_through(s3, pg, day, "manual__dup6-overwritten")
    assert verdict.ok, verdict.problems()
    with pg.connect() as c:
        versions = c.execute(sa.text(
            "SELECT r.status, (SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts "
            "FROM recordings r WHERE r.call_date = :d AND r.object_key LIKE '%/a.wav' ORDER BY r.id"),
            {"d": day}).all()
    assert [tuple(v) for v in versions] == [("superseded", 0), ("duplicate", 0)]
    assert audit_day(s3, pg, day).clean
    _put(s3, day, "a.wav", CALL)
    verdict = run_through(s3, pg, day, "manual__dup6-restored")
    assert verdict.ok, verdict.problems()
    rows = _rows(pg, day)
    assert rows["a.wav"].status == "done" and rows["a.wav"].transcripts > 0
    assert rows["b.mp3"].status == "done"
    assert audit_day(s3, pg, day).clean


def test_an_audit_names_a_copy_left_without_its_original(stack, s3, pg):
    day = date(2037, 3, 10)
    first = _put(s3, day, "a.wav", CALL)
    _put(s3, day, "b.wav", CALL)
    assert run_through(s3, pg, day, "scheduled__dup7").ok
    s3.purge(s3.uri(first))
    with pg.begin() as c:  # the original marked deleted as a discovery does, without the rest of one
        c.execute(sa.text("UPDATE recordings SET status = 'deleted' WHERE object_key = :k"), {"k": first})
    audit = audit_day(s3, pg, day)
    assert [u.split(": ")[0].rsplit("/", 1)[1] for u in audit.unfinished] == ["b.wav"]
    assert "copy whose original is deleted" in audit.unfinished[0]
    assert run_through(s3, pg, day, "manual__dup7").ok
    assert audit_day(s3, pg, day).clean
