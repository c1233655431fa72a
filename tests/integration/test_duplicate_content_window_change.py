"""CALLSCRIBE_COPY_WINDOW_DAYS made smaller between runs, while copies marked under the
wider window still stand on their originals."""

from __future__ import annotations

from datetime import date

import pytest

from callscribe.erasure import erase
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def _call(i: int) -> bytes:
    return cp.call_bytes(940 + i)

def test_erasure_names_every_copy_it_frees_after_the_window_shrank(stack, s3, pg, monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")
    day, later = date(2063, 3, 1), date(2063, 3, 6)
    original = cp.put(s3, day, "a.wav", _call(1))
    assert run_through(s3, pg, day, "scheduled__xdc-1").ok
    copy = cp.put(s3, later, "b.wav", _call(1))
    assert run_through(s3, pg, later, "scheduled__xdc-2").ok
    assert cp.newest(pg, later)["b.wav"].status == "duplicate"
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "2")
    done = erase(s3, pg, original, "dpo")
    # The erasure made the copy a call of its own again (the next run transcribes the erased
    # call's audio under it): the DPO must be told, or the erased speech is back in search.
    assert cp.newest(pg, later)["b.wav"].status == "pending"
    assert copy in done.copies, done.copies


def test_a_copy_freed_by_a_lookback_day_is_taken_by_the_same_run_after_the_window_went_to_0(
        stack, s3, pg, monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")
    day, next_day = date(2063, 4, 1), date(2063, 4, 2)
    original = cp.transcribed_with_copy(s3, pg, day, next_day, _call(2), "scheduled__xdc-3")
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "0")  # copies on the same day only, from now on
    s3.purge(s3.uri(original))
    verdict = run_through(s3, pg, next_day, "scheduled__xdc-5", lookback_days=1)
    copy = cp.newest(pg, next_day)["b.wav"]
    assert copy.status == "done", cp.table(pg, next_day)
    assert verdict.ok, verdict.problems()
