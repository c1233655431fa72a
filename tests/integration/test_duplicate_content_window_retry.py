"""A key that failed on its day (attempts left) while another day's key of the same
audio is transcribed meanwhile. The rerun of the failed day (the answer to its red run) must
not transcribe the call a second time."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery
from callscribe.discovery import day_prefix
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def _call(i: int) -> bytes:
    return cp.call_bytes(900 + i)

def _failed_once(pg, key: str) -> None:
    """The state a run whose chunk task failed on the recording leaves (attempts left)."""
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'failed', attempts = 1, lease_until = NULL, "
                          "last_error = 'the chunk task died while decoding' WHERE object_key = :k"), {"k": key})


def test_rerun_of_a_failed_day_does_not_transcribe_a_call_another_day_transcribed(stack, s3, pg, monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")
    day, later = date(2061, 1, 10), date(2061, 1, 15)  # 5 days apart: within the window, past lookback 3
    failed = cp.put(s3, day, "b.wav", _call(1))
    discovery.register(pg, list(s3.list(day_prefix("calls/", day))), day, "scheduled__xdw-1")
    _failed_once(pg, failed)  # the run of `day` failed on it: red, the call has no transcript yet
    # The export re-run drops the call into a later day's folder: that day's run transcribes it
    # (its original on another day is neither done nor taken, so it is a call of its own).
    cp.put(s3, later, "a.wav", _call(1))
    assert run_through(s3, pg, later, "scheduled__xdw-2", lookback_days=3).ok
    assert cp.transcribed_keys(pg, later) == ["a.wav"]
    # The operator answers the red run of `day` by running it again (the DAG's default lookback).
    verdict = run_through(s3, pg, day, "manual__xdw-3", lookback_days=3)
    both = cp.transcribed_keys(pg, day) + cp.transcribed_keys(pg, later)
    assert len(both) == 1, (both, verdict.problems(), cp.table(pg, day), cp.table(pg, later))
    assert verdict.ok, verdict.problems()
