"""The original of a copy on an EARLIER day is deleted, and the deletion is noticed by a
scheduled run whose days (lookback_days) no longer cover the copy's day. The run that freed the
copy must take it, or no run does and the call is lost while every run is green."""

from __future__ import annotations

from datetime import date

import pytest

from callscribe.audit import audit_day
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def _call(i: int) -> bytes:
    return cp.call_bytes(920 + i)

def test_a_copy_freed_on_a_day_the_run_does_not_cover_is_not_left_untranscribed_by_a_green_run(
        stack, s3, pg, monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")
    day, original_day = date(2062, 2, 10), date(2062, 2, 12)
    # One call filed twice: under its own day (uploaded late) and two days later.
    copy_key = cp.put(s3, day, "c.wav", _call(1))
    original = cp.put(s3, original_day, "o.wav", _call(1))
    # The scheduled run of the later day (the DAG's default lookback 3) takes both days.
    assert run_through(s3, pg, original_day, "scheduled__xdl-1", lookback_days=3).ok
    assert cp.newest(pg, day)["c.wav"].status == "duplicate", cp.table(pg, day)
    assert cp.transcribed_keys(pg, original_day) == ["o.wav"]
    # The misfiled key is cleaned up later; the next scheduled run that lists its day notices.
    s3.purge(s3.uri(original))
    verdict = run_through(s3, pg, date(2062, 2, 14), "scheduled__xdl-2", lookback_days=3)
    assert cp.newest(pg, original_day)["o.wav"].status == "deleted"
    copy = cp.newest(pg, day)["c.wav"]
    # The call survives only under copy_key now. Either the run transcribed it, or its verdict says
    # it owes it; a green run with the call pending for ever on a day no later run lists is a loss.
    assert copy.status == "done" or not verdict.ok, (
        f"run green, {copy_key} is {copy.status}", cp.table(pg, day), audit_day(s3, pg, day).as_dict())
