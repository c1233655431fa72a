"""A call whose key failed with attempts left on one day, dropped again into the next day's folder.
The next day's run transcribes the new key (the failed one is no run's now); a later run of the
first day must not retry the failed key too, or the call is transcribed twice: it becomes the
copy. Also within one run that takes both days under a max_recordings limit."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery
from callscribe.audit import audit_day
from callscribe.discovery import day_prefix
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


@pytest.fixture
def window(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")


def _call(i: int) -> bytes:
    return cp.call_bytes(4200 + i)

def test_a_retried_failure_whose_copy_was_transcribed_on_the_next_day_is_not_transcribed_again(
        stack, s3, pg, window):
    day, next_day = date(2061, 5, 10), date(2061, 5, 11)
    cp.put(s3, day, "a.wav", _call(1))
    discovery.register(pg, list(s3.list(day_prefix("calls/", day))), day, "scheduled__xdr1-1")
    with pg.begin() as c:  # the day's run failed on it once (a worker lost), attempts left
        c.execute(sa.text("UPDATE recordings SET status = 'failed', attempts = 1, lease_until = NULL, "
                          "last_run_id = 'scheduled__xdr1-1', last_error = 'worker lost' "
                          "WHERE call_date = :d"), {"d": day})
    # The export re-run drops the call into the next day's folder; that day's run transcribes it.
    cp.put(s3, next_day, "a-again.wav", _call(1))
    assert run_through(s3, pg, next_day, "scheduled__xdr1-2").ok
    assert cp.transcribed_keys(pg, next_day) == ["a-again.wav"]
    # The first day is run again (the answer to its red run): its failed key is the same call,
    # already transcribed on the next day.
    verdict = run_through(s3, pg, day, "manual__xdr1-3")
    both = cp.transcribed_keys(pg, day) + cp.transcribed_keys(pg, next_day)
    assert len(both) == 1, (both, cp.table(pg, day), cp.table(pg, next_day))
    assert verdict.ok, verdict.problems()
    assert audit_day(s3, pg, day).clean and audit_day(s3, pg, next_day).clean


def test_one_run_with_lookback_and_max_recordings_does_not_take_both_keys_of_a_call(stack, s3, pg, window):
    """The same in one run: the run's own day's new key is claimed first (the earlier day's failed
    key is not "taken"), then the looked-back day's failed key is claimed too. Without a limit the
    second claim pass marks the first key a copy; with max_recordings that pass is cut off."""
    day, next_day = date(2062, 6, 20), date(2062, 6, 21)
    cp.put(s3, day, "a.wav", _call(2))
    discovery.register(pg, list(s3.list(day_prefix("calls/", day))), day, "scheduled__xdr2-1")
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'failed', attempts = 1, lease_until = NULL, "
                          "last_run_id = 'scheduled__xdr2-1', last_error = 'worker lost' "
                          "WHERE call_date = :d"), {"d": day})
    cp.put(s3, next_day, "a-again.wav", _call(2))
    ids = discovery.discover(s3, pg, next_day, "calls/", "scheduled__xdr2-2", max_recordings=2, lookback_days=1,
                             is_live=lambda r: False)
    with pg.connect() as c:
        to_do = c.execute(sa.text("SELECT object_key FROM recordings WHERE id = ANY(:ids) AND status <> 'duplicate'"),
                          {"ids": ids}).scalars().all()
    assert len(to_do) == 1, (to_do, cp.table(pg, day), cp.table(pg, next_day))
    discovery.close_run(pg, "scheduled__xdr2-2")
