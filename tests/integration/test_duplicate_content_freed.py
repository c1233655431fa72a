"""A backfill of an old day sees its original overwritten and frees the copy on the next day,
which no later scheduled run lists (lookback_days looks back, not forward): the backfill must
transcribe the copy itself, or the call is left without a transcript while every run is green."""

from __future__ import annotations

from datetime import date

import pytest

from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


@pytest.fixture
def window(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")


def _call(i: int, mp3: bool = False) -> bytes:
    return cp.call_bytes(4400 + i, mp3)

def test_a_copy_freed_by_a_backfill_of_its_originals_earlier_day_is_not_left_behind_green(stack, s3, pg, window):
    day, next_day, today = date(2064, 8, 1), date(2064, 8, 2), date(2064, 8, 9)
    cp.transcribed_with_copy(s3, pg, day, next_day, _call(1), "scheduled__xdf4")
    # Days later the first day's a.wav is overwritten with other audio (an export fixing a
    # mis-filed call), and that day is backfilled.
    cp.put(s3, day, "a.wav", _call(2, mp3=True))
    backfill = run_through(s3, pg, day, "backfill__xdf4-3", lookback_days=3)
    scheduled = run_through(s3, pg, today, "scheduled__xdf4-4", lookback_days=3)
    copy = cp.newest(pg, next_day)["b.wav"]
    # Either the call is transcribed again (under b.wav), or some run says it is owed.
    assert copy.status == "done" or not (backfill.ok and scheduled.ok), (
        backfill.problems(), scheduled.problems(), cp.table(pg, day), cp.table(pg, next_day))
