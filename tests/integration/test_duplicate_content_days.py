"""One call in two days' folders (an export re-run that drops yesterday's calls into today's
folder, two exporters that date a call in different zones) is one call: the copy of a recording
of another day within `CALLSCRIBE_COPY_WINDOW_DAYS` is `duplicate`, as a copy on the same day is.

The suite runs with the window at 0 (tests/conftest.py: its tests reuse the same sample bytes
on neighbouring days); these tests set it.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from callscribe import discovery
from callscribe.audit import audit_day
from callscribe.discovery import day_prefix
from callscribe.erasure import erase
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


@pytest.fixture
def window(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")


def _done(pg, day: date) -> list[str]:
    return cp.transcribed_keys(pg, day)


def _call(i: int, mp3: bool = False) -> bytes:
    return cp.call_bytes(20 + i, mp3)

def test_yesterdays_calls_dropped_again_into_todays_folder_are_not_transcribed_again(stack, s3, pg, window):
    day, next_day = date(2046, 3, 2), date(2046, 3, 3)
    cp.put(s3, day, "a.wav", _call(1))
    cp.put(s3, day, "c.mp3", _call(1, mp3=True))
    assert run_through(s3, pg, day, "scheduled__xd1-1").ok
    # The export re-run: yesterday's two calls again (one renamed), and one new call.
    cp.put(s3, next_day, "a-again.wav", _call(1))
    cp.put(s3, next_day, "c.mp3", _call(1, mp3=True))
    cp.put(s3, next_day, "n.wav", _call(51))
    verdict = run_through(s3, pg, next_day, "scheduled__xd1-2")
    assert verdict.ok, verdict.problems()
    first, second = cp.newest(pg, day), cp.newest(pg, next_day)
    assert _done(pg, next_day) == ["n.wav"], cp.table(pg, next_day)
    assert second["a-again.wav"].status == "duplicate" and second["a-again.wav"].duplicate_of == first["a.wav"].id
    assert second["c.mp3"].status == "duplicate" and second["c.mp3"].duplicate_of == first["c.mp3"].id
    assert str(day.year) in second["a-again.wav"].last_error and "a.wav" in second["a-again.wav"].last_error
    assert [first["a.wav"].loads, first["c.mp3"].loads] == [1, 1]
    assert audit_day(s3, pg, day).clean and audit_day(s3, pg, next_day).clean


def test_one_call_in_two_day_folders_found_by_one_run_is_transcribed_once(stack, s3, pg, window):
    day, before = date(2046, 3, 6), date(2046, 3, 5)
    cp.put(s3, before, "late.mp3", _call(2, mp3=True))
    cp.put(s3, day, "on-time.mp3", _call(2, mp3=True))
    verdict = run_through(s3, pg, day, "scheduled__xd2", lookback_days=1)
    assert verdict.ok, verdict.problems()
    assert len(_done(pg, day) + _done(pg, before)) == 1, (cp.table(pg, day), cp.table(pg, before))
    assert [r.status for r in cp.rows(pg, before)] == ["duplicate"]


def test_a_copy_on_a_later_day_is_transcribed_when_its_original_is_deleted(stack, s3, pg, window):
    """The run of the copy's day, looking back at the original's, finds the original gone after
    it claimed its own day: the copy is transcribed by that same run all the same."""
    day, next_day = date(2046, 3, 9), date(2046, 3, 10)
    original = cp.transcribed_with_copy(s3, pg, day, next_day, _call(3), "scheduled__xd3")
    s3.purge(s3.uri(original))
    verdict = run_through(s3, pg, next_day, "scheduled__xd3-3", lookback_days=1)
    assert verdict.ok, verdict.problems()
    assert cp.newest(pg, day)["a.wav"].status == "deleted"
    copy = cp.newest(pg, next_day)["b.wav"]
    assert copy.status == "done" and copy.transcripts > 0 and copy.duplicate_of is None, cp.table(pg, next_day)


def test_copies_further_apart_than_the_window_are_two_calls(stack, s3, pg, window):
    day, later = date(2046, 3, 12), date(2046, 3, 12) + timedelta(days=8)
    cp.put(s3, day, "a.wav", _call(4))
    assert run_through(s3, pg, day, "scheduled__xd4-1").ok
    cp.put(s3, later, "a.wav", _call(4))
    assert run_through(s3, pg, later, "scheduled__xd4-2").ok
    assert _done(pg, day) == ["a.wav"] and _done(pg, later) == ["a.wav"]


def test_a_claim_after_another_days_run_took_the_call_leaves_the_copy(stack, s3, pg, window):
    """Two runs of neighbouring days at once: run 1 registers its day (the copy looks like a call of
    its own: nothing else holds the audio yet), run 2 registers and claims the other day's key,
    then run 1 claims. Run 1 must not take the copy, or the call is transcribed twice."""
    day, next_day = date(2046, 3, 24), date(2046, 3, 25)
    cp.put(s3, next_day, "b.wav", _call(5))
    discovery.register(pg, list(s3.list(day_prefix("calls/", next_day))), next_day, "scheduled__xd5-1")
    cp.put(s3, day, "a.wav", _call(5))
    assert run_through(s3, pg, day, "scheduled__xd5-2", stop="listed") is None
    taken = discovery.claim(pg, s3.bucket, day_prefix("calls/", next_day), next_day, "scheduled__xd5-1")
    copy = cp.newest(pg, next_day)["b.wav"]
    assert taken == [] and copy.status == "duplicate", cp.table(pg, next_day)
    assert copy.duplicate_of == cp.newest(pg, day)["a.wav"].id
    # Until the other day's key is transcribed, the call has no transcript: the copy's day is not
    # clean (in progress for run 1 while run 2 is live; owed once run 2 died without a transcript).
    mine = audit_day(s3, pg, next_day, run_id="scheduled__xd5-1", is_live=lambda r: r == "scheduled__xd5-2")
    assert any("a.wav" in p for p in mine.in_progress) and mine.clean, mine.as_dict()
    discovery.close_run(pg, "scheduled__xd5-2")
    owed = audit_day(s3, pg, next_day)
    assert any("a.wav" in p for p in owed.unfinished), owed.as_dict()
    assert run_through(s3, pg, day, "manual__xd5-3").ok
    assert audit_day(s3, pg, next_day).clean and cp.newest(pg, next_day)["b.wav"].status == "duplicate"


def test_two_transcripts_of_one_call_on_two_days_are_settled_by_the_next_discovery(stack, s3, pg, monkeypatch):
    """Days transcribed before copies were matched across days (or with the window at 0): the
    audit counts the call as doubled, and the next discovery of either day keeps the older."""
    day, next_day = date(2046, 3, 27), date(2046, 3, 28)
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "0")
    cp.put(s3, day, "a.wav", _call(6))
    cp.put(s3, next_day, "b.wav", _call(6))
    assert run_through(s3, pg, day, "scheduled__xd6-1").ok
    assert run_through(s3, pg, next_day, "scheduled__xd6-2").ok
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")
    audit = audit_day(s3, pg, next_day)
    assert any("a.wav" in d and "b.wav" in d for d in audit.duplicated), audit.as_dict()
    assert not audit_day(s3, pg, day).clean
    # A run of the older day (the original's) settles it: the later key's transcript goes.
    verdict = run_through(s3, pg, day, "manual__xd6-3")
    assert verdict.ok, verdict.problems()
    copy = cp.newest(pg, next_day)["b.wav"]
    assert copy.status == "duplicate" and copy.transcripts == 0 and copy.duplicate_of == cp.newest(pg, day)["a.wav"].id
    assert audit_day(s3, pg, day).clean and audit_day(s3, pg, next_day).clean


def test_erasing_a_call_names_its_copy_on_another_day(stack, s3, pg, window):
    day, next_day = date(2046, 4, 2), date(2046, 4, 3)
    original = cp.transcribed_with_copy(s3, pg, day, next_day, _call(7), "scheduled__xd7")
    copy = day_prefix("calls/", next_day) + "b.wav"
    done = erase(s3, pg, original, "dpo")
    assert done.copies == [copy]
    # Left alone, the copy is a call of its own again: its day's next run transcribes it.
    assert run_through(s3, pg, next_day, "scheduled__xd7-3").ok
    assert _done(pg, next_day) == ["b.wav"]


def test_the_copy_of_a_key_that_became_another_days_copy_follows_it_to_the_transcript(stack, s3, pg, window):
    """Two keys of one call on a day: a run takes the first and dies after chunking it (the second is
    marked its copy), and its lease runs out. The day before gets the same call, and its run transcribes
    it there. The next run of the day makes the first key a copy of the day before's (a run died on it):
    the second, its copy, stands on the call's transcript too (before, it stood on the first key for good,
    its reason "one call, transcribed there" naming a key that holds no transcript)."""
    import sqlalchemy as sa

    before, day = date(2119, 5, 10), date(2119, 5, 11)
    data = cp.call_bytes(49921)
    cp.put(s3, day, "a.wav", data)
    cp.put(s3, day, "b.wav", data)
    died = "scheduled__rev1-chain-1"
    run_through(s3, pg, day, died, close=False, stop="chunked")
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET lease_until = now() - interval '1 hour' "
                          "WHERE last_run_id = :r AND lease_until IS NOT NULL"), {"r": died})
    assert cp.newest(pg, day)["b.wav"].status == "duplicate", cp.table(pg, day)
    cp.put(s3, before, "c.wav", data)
    assert run_through(s3, pg, before, "scheduled__rev1-chain-2").ok
    verdict = run_through(s3, pg, day, "scheduled__rev1-chain-3")
    assert verdict.ok, verdict.problems()
    original, rows = cp.newest(pg, before)["c.wav"], cp.newest(pg, day)
    assert (original.status, original.transcripts, original.loads) == ("done", 1, 1), cp.table(pg, before)
    assert [(rows[n].status, rows[n].duplicate_of) for n in ("a.wav", "b.wav")] == [("duplicate", original.id)] * 2, \
        cp.table(pg, day)
    assert "c.wav" in rows["b.wav"].last_error, rows["b.wav"].last_error
    assert audit_day(s3, pg, before).clean and audit_day(s3, pg, day).clean


def test_a_copy_left_standing_on_a_copy_is_settled_onto_the_transcript_by_the_next_discovery(stack, s3, pg, window):
    """A copy whose original is a copy itself (as the chunker left it before it moved a key's copies along,
    or one further than the window from the call) is freed by the next discovery of its day and marked
    again, onto the key that holds the transcript."""
    import sqlalchemy as sa

    before, day = date(2119, 5, 20), date(2119, 5, 21)
    data = cp.call_bytes(49931)
    cp.put(s3, before, "c.wav", data)
    assert run_through(s3, pg, before, "scheduled__rev1-chained-1").ok
    cp.put(s3, day, "a.wav", data)
    cp.put(s3, day, "b.wav", data)
    assert run_through(s3, pg, day, "scheduled__rev1-chained-2").ok
    original, rows = cp.newest(pg, before)["c.wav"], cp.newest(pg, day)
    assert {rows[n].duplicate_of for n in ("a.wav", "b.wav")} == {original.id}, cp.table(pg, day)
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET duplicate_of = :a WHERE id = :b"),
                  {"a": rows["a.wav"].id, "b": rows["b.wav"].id})
    assert run_through(s3, pg, day, "scheduled__rev1-chained-3").ok
    rows = cp.newest(pg, day)
    assert [(rows[n].status, rows[n].duplicate_of, rows[n].loads) for n in ("a.wav", "b.wav")] == [
        ("duplicate", original.id, 0)] * 2, cp.table(pg, day)
    assert original.loads == 1 and cp.newest(pg, before)["c.wav"].loads == 1
