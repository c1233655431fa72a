"""A backfill of an old day sees its original overwritten and frees the copy on the next day,
which no later scheduled run lists (lookback_days looks back, not forward): the backfill must
transcribe the copy itself, or the call is left without a transcript while every run is green."""

from __future__ import annotations

from datetime import date

import pytest

from callscribe.samples import distinct_copy
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


@pytest.fixture
def window(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")


def _call(i: int, mp3: bool = False) -> bytes:
    path = cp.OTHER if mp3 else cp.CALL
    return distinct_copy(path.read_bytes(), path.suffix, 4400 + i)


def test_a_copy_freed_by_a_backfill_of_its_originals_earlier_day_is_not_left_behind_green(stack, s3, pg, window):
    day, next_day, today = date(2064, 8, 1), date(2064, 8, 2), date(2064, 8, 9)
    cp.put(s3, day, "a.wav", _call(1))
    assert run_through(s3, pg, day, "scheduled__xdf4-1", lookback_days=3).ok
    cp.put(s3, next_day, "b.wav", _call(1))
    assert run_through(s3, pg, next_day, "scheduled__xdf4-2", lookback_days=3).ok
    assert cp.newest(pg, next_day)["b.wav"].status == "duplicate"
    # Days later the first day's a.wav is overwritten with other audio (an export fixing a
    # mis-filed call), and that day is backfilled.
    cp.put(s3, day, "a.wav", _call(2, mp3=True))
    backfill = run_through(s3, pg, day, "backfill__xdf4-3", lookback_days=3)
    scheduled = run_through(s3, pg, today, "scheduled__xdf4-4", lookback_days=3)
    copy = cp.newest(pg, next_day)["b.wav"]
    # Either the call is transcribed again (under b.wav), or some run says it is owed.
    assert copy.status == "done" or not (backfill.ok and scheduled.ok), (
        backfill.problems(), scheduled.problems(), cp.table(pg, day), cp.table(pg, next_day))
