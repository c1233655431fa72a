"""Runs of one day under two prefixes of one bucket (the `prefix` Param: "calls/" nightly, an
engineer's run of "imports/" for calls delivered into another folder). Copies are matched on content
across every key of the bucket, prefixes included ("one call filed into two folders"), but a run
claims and judges only its own prefix. A copy under one prefix whose original (under the other)
leaves must end transcribed, or the run that freed it must say it did not take it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from callscribe import discovery, pipeline
from callscribe.audit import run_verdict
from callscribe.discovery import day_prefix
from tests.integration.copies import call_bytes
from tests.integration.helpers import transcribe_and_close

pytestmark = pytest.mark.integration


def run_prefix(s3, pg, day: date, prefix: str, run: str, lookback_days: int = 0):
    """One run of ``day`` under ``prefix`` through the pipeline's functions (as helpers.run_through,
    which is for "calls/" only); returns its verdict."""
    started = datetime.now(UTC)
    ids = discovery.discover(s3, pg, day, prefix, run, is_live=lambda r: False, lookback_days=lookback_days)
    transcribe_and_close(s3, pg, [pipeline.chunk_group(s3, pg, ids, run, 0)] if ids else [], run)
    return run_verdict(s3, pg, run, discovery.run_days(day, lookback_days), prefix, started,
                       is_live=lambda r: False)


def row(pg, key: str):
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT id, status, attempts, last_error, last_run_id, duplicate_of, "
            "(SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts "
            "FROM recordings r WHERE object_key = :k ORDER BY id DESC LIMIT 1"), {"k": key}).one()


DAY = date(2031, 5, 3)


def filed_twice(s3, pg, day: date, data: bytes, run: str) -> tuple[str, str]:
    """calls/…/a.wav transcribed by a run of "calls/" (``run``-1), then the same call delivered into
    imports/…/b.wav and an engineer's run of that prefix (``run``-2) marking it a copy; returns both keys."""
    original = day_prefix("calls/", day) + "a.wav"
    copy = day_prefix("imports/", day) + "b.wav"
    s3.put_bytes(s3.uri(original), data)
    assert run_prefix(s3, pg, day, "calls/", f"{run}-1").ok
    assert row(pg, original).status == "done"
    s3.put_bytes(s3.uri(copy), data)
    assert run_prefix(s3, pg, day, "imports/", f"{run}-2").ok
    assert row(pg, copy).status == "duplicate", row(pg, copy)
    return original, copy


def test_a_copy_under_another_prefix_freed_by_this_prefix_run_is_not_left_untaken(stack, pg, s3):
    original, copy = filed_twice(s3, pg, DAY, call_bytes(901), "rv2-pfx")
    # The original leaves the bucket; the next run of "calls/" for the day (a rerun, or the next
    # days' runs through lookback_days) sees it gone: its transcript leaves search, and the copy
    # is a call to transcribe in its own right again.
    s3.delete(s3.uri(original))
    verdict = run_prefix(s3, pg, DAY, "calls/", "rv2-pfx-3")
    assert row(pg, original).status == "deleted"
    b = row(pg, copy)
    # The call is still in the bucket (under imports/): the run that freed it transcribes it. Nothing
    # else would: "imports/" was a one-off run, and no scheduled run lists its folders.
    assert b.status == "done" and b.transcripts > 0 and verdict.ok, (
        f"the call's only key {copy} is {b.status} with {b.transcripts} transcripts (last run {b.last_run_id}); "
        f"{verdict.problems()}")


DAY2 = date(2031, 5, 7)


def test_a_copy_of_an_untaken_key_under_another_prefix_is_not_green_without_a_transcript(stack, pg, s3):
    """The same day, the original under "calls/" registered but not taken (a run of "calls/" with
    max_recordings left it pending): the "imports/" run marks its key a copy of it and is green,
    though the call has no transcript and no run of "imports/" will take it."""
    data = call_bytes(902)
    first = day_prefix("calls/", DAY2) + "a0.wav"
    original = day_prefix("calls/", DAY2) + "a1.wav"
    copy = day_prefix("imports/", DAY2) + "b.wav"
    s3.put_bytes(s3.uri(first), call_bytes(903))
    s3.put_bytes(s3.uri(original), data)
    ids = discovery.discover(s3, pg, DAY2, "calls/", "rv2-pfx-4", max_recordings=1, is_live=lambda r: False)
    assert len(ids) == 1
    discovery.close_run(pg, "rv2-pfx-4")  # a1 stays pending: the next "calls/" run's
    assert row(pg, original).status == "pending"
    s3.put_bytes(s3.uri(copy), data)
    verdict = run_prefix(s3, pg, DAY2, "imports/", "rv2-pfx-5")
    b = row(pg, copy)
    assert b.status == "done" or not verdict.ok, (
        f"run rv2-pfx-5 of imports/ is green, its call {copy} is {b.status} ({b.last_error}) of a key no run "
        f"has taken")


DAY3 = date(2031, 5, 11)


def test_a_freed_copy_under_another_prefix_the_run_took_and_left_unfinished_makes_it_red(stack, pg, s3):
    """As the first test, but the freeing run's chunk task for the copy never ran (marked success in
    the UI): its verdict must answer for the copy it took under the other prefix."""
    original, copy = filed_twice(s3, pg, DAY3, call_bytes(904), "rv2-pfx-6")
    s3.delete(s3.uri(original))
    run = "rv2-pfx-8"
    started = datetime.now(UTC)
    ids = discovery.discover(s3, pg, DAY3, "calls/", run, is_live=lambda r: False)
    assert ids == [row(pg, copy).id], (ids, row(pg, copy))
    discovery.close_run(pg, run)
    verdict = run_verdict(s3, pg, run, [DAY3], "calls/", started, is_live=lambda r: False)
    assert row(pg, copy).status == "pending"
    assert not verdict.ok and any("imports/" in p for p in verdict.problems()), verdict.problems()
