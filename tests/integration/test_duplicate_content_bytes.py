"""Copies by their bytes: one file uploaded twice with other etags (a multipart upload, a
server-side copy of one) is one call. Discovery sees only etags; the chunker reads the bytes and
takes a key whose bytes another key of the window holds, transcribed or on its way, for that
key's copy."""

from __future__ import annotations

import threading
from datetime import date

import pytest

from callscribe import discovery, pipeline
from callscribe.audit import audit_day
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def _call(i: int) -> bytes:
    return cp.call_bytes(4700 + i)


@pytest.fixture
def window(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")


def _each_day_run(s3, pg, day: date, later: date, data: bytes, run: str) -> None:
    """a.wav of ``day`` uploaded plainly and transcribed, then b.wav of ``later`` (the same bytes in
    a multipart upload) and a run of its day (``run``-1, ``run``-2)."""
    cp.put(s3, day, "a.wav", data)
    assert run_through(s3, pg, day, f"{run}-1").ok
    cp.put_in_parts(s3, later, "b.wav", data)
    assert run_through(s3, pg, later, f"{run}-2").ok


def test_the_same_bytes_under_another_etag_on_one_day_are_transcribed_once(stack, s3, pg):
    day = date(2065, 1, 5)
    cp.put(s3, day, "a.wav", _call(1))
    cp.put_in_parts(s3, day, "b.wav", _call(1))
    assert run_through(s3, pg, day, "scheduled__xcb1").ok
    rows = cp.newest(pg, day)
    assert rows["a.wav"].etag != rows["b.wav"].etag, "the store gave a multipart upload a plain etag"
    assert cp.transcribed_keys(pg, day) == ["a.wav"], cp.table(pg, day)
    copy = rows["b.wav"]
    assert copy.status == "duplicate" and copy.duplicate_of == rows["a.wav"].id, cp.table(pg, day)
    assert "a.wav" in copy.last_error and str(day) in copy.last_error, copy.last_error
    audit = audit_day(s3, pg, day)
    assert audit.clean, (audit.lost, audit.unfinished, audit.duplicated)


def test_the_same_bytes_on_a_neighbouring_day_are_its_copy_and_freed_when_the_original_leaves(stack, s3, pg, window):
    day, next_day = date(2065, 2, 5), date(2065, 2, 6)
    _each_day_run(s3, pg, day, next_day, _call(2), "scheduled__xcb2")
    copy = cp.newest(pg, next_day)["b.wav"]
    assert copy.status == "duplicate" and copy.duplicate_of == cp.newest(pg, day)["a.wav"].id, \
        cp.table(pg, next_day)
    # The original is deleted from the bucket: the next discovery of its day frees the copy,
    # and that run transcribes it.
    s3.delete(s3.uri(day_key(day, "a.wav")))
    assert run_through(s3, pg, day, "scheduled__xcb2-3").ok
    assert cp.transcribed_keys(pg, next_day) == ["b.wav"], cp.table(pg, next_day)


def day_key(day: date, name: str) -> str:
    return discovery.day_prefix("calls/", day) + name


def test_two_chunk_tasks_reading_the_same_bytes_at_once_chunk_one(stack, s3, pg):
    day = date(2065, 3, 5)
    cp.put(s3, day, "a.wav", _call(3))
    cp.put_in_parts(s3, day, "b.wav", _call(3))
    run = "scheduled__xcb3"
    ids = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    assert len(ids) == 2
    out: dict[int, str] = {}
    start = threading.Barrier(2)

    def group(i: int, rid: int) -> None:
        start.wait()
        out[rid] = pipeline.chunk_group(s3, pg, [rid], run, i)

    threads = [threading.Thread(target=group, args=(i, rid)) for i, rid in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    states = sorted(r.status for r in cp.rows(pg, day))
    assert states == ["chunked", "duplicate"], cp.table(pg, day)


def test_two_transcripts_of_the_same_bytes_keep_one_and_the_audit_counts_them_meanwhile(stack, s3, pg, monkeypatch):
    day, later = date(2065, 4, 5), date(2065, 4, 7)
    # Transcribed under a window of 0: two days apart, the bytes are not compared.
    _each_day_run(s3, pg, day, later, _call(4), "scheduled__xcb4")
    assert cp.transcribed_keys(pg, later) == ["b.wav"], cp.table(pg, later)
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")
    audit = audit_day(s3, pg, later)
    assert any("a.wav" in d and "b.wav" in d for d in audit.duplicated), audit.duplicated
    assert run_through(s3, pg, later, "scheduled__xcb4-3").ok
    copy = cp.newest(pg, later)["b.wav"]
    assert copy.status == "duplicate" and copy.transcripts == 0, cp.table(pg, later)
    assert cp.transcribed_keys(pg, day) == ["a.wav"], cp.table(pg, day)
    assert audit_day(s3, pg, later).clean


def test_an_erasure_names_a_copy_with_other_bytes_etag(stack, s3, pg):
    from callscribe import erasure

    day = date(2065, 5, 5)
    original = cp.put(s3, day, "a.wav", _call(5))
    copy = cp.put_in_parts(s3, day, "b.wav", _call(5))
    assert run_through(s3, pg, day, "scheduled__xcb5").ok
    assert erasure.erase(s3, pg, original, "test", dry_run=True).copies == [copy], cp.table(pg, day)


def test_an_erasure_names_a_copy_no_run_has_listed_under_another_etag(stack, s3, pg):
    """A copy uploaded since the day's last run, in parts (or under SSE-KMS): no row, and an etag that
    is not the erased call's. Matched on etag and size only, the erasure did not name it, and the
    audio it holds stayed with no word of it."""
    from callscribe import erasure

    day = date(2065, 5, 9)
    original = cp.put(s3, day, "a.wav", _call(9))
    cp.put(s3, day, "c.wav", _call(10))  # another call: not named
    assert run_through(s3, pg, day, "scheduled__xcb9").ok
    copy = cp.put_in_parts(s3, day, "b.wav", _call(9))
    assert erasure.erase(s3, pg, original, "test", dry_run=True).copies == [copy], cp.table(pg, day)
