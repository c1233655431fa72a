"""two runs claiming the same day at the same moment, one of them a reprocess run.

The reprocess claim records what it was to take and did not (``held_back``) with the run that
held it. Under SKIP LOCKED a claim also skips the rows another claim has locked but not yet
committed; the held-back rows are then read before that claim commits, so they name whichever
run had the row before (or nobody, for a call no run has taken yet), not the run that took it.
"""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, reporting
from callscribe.audit import run_verdict
from callscribe.discovery import day_prefix
from callscribe.samples import sample_dir
from tests.integration.helpers import run_through, upload_day

pytestmark = pytest.mark.integration

CALLS = [sample_dir() / "call-0001.wav", sample_dir() / "call-0003.wav"]
DAG = "transcribe_calls"
PAUSED = "review-claim-paused"


def _claims_at_once(pg, s3, day: date, first: str, second: str) -> tuple[list[int], object]:
    """``first`` claims the day (reprocess) and stops inside its transaction, its rows locked and
    not committed; ``second`` (reprocess) claims meanwhile; then ``first`` commits. Returns what
    ``first`` took and what ``second``'s claim returned (its ids, or the exception it raised)."""
    prefix = day_prefix("calls/", day)
    locked, go = threading.Event(), threading.Event()

    def pause(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name == PAUSED and "lease_until = now() + make_interval" in statement:
            locked.set()
            go.wait(30)

    sa.event.listen(pg, "after_cursor_execute", pause)
    out: dict[str, object] = {}

    def claim(run: str) -> None:
        try:
            out[run] = discovery.claim(pg, s3.bucket, prefix, day, run, reprocess=True)
        except Exception as exc:  # what the task would fail with
            out[run] = exc

    try:
        a = threading.Thread(target=claim, args=(first,), name=PAUSED)
        a.start()
        assert locked.wait(30)
        b = threading.Thread(target=claim, args=(second,))
        b.start()
        b.join(3)  # it either ends on its own (skipping what is locked) or waits for the first claim
        go.set()
        a.join(30)
        b.join(30)
    finally:
        go.set()
        sa.event.remove(pg, "after_cursor_execute", pause)
    return out[first], out[second]


def test_a_reprocess_claiming_beside_another_claim_of_new_calls_does_not_crash(stack, s3, pg):
    """Two reprocess runs of a day whose calls no run has taken yet (new uploads), triggered
    together: the one that claims second must not fail its discover."""
    day = date(2037, 2, 3)
    upload_day(s3, day, files=CALLS)
    prefix = day_prefix("calls/", day)
    discovery.register(pg, list(s3.list(prefix)), day, "scheduled__registered")
    time.sleep(1.1)  # object times are whole seconds: the runs list after the upload
    first, second = "manual__reprocess-one", "manual__reprocess-two"
    for run in (first, second):
        reporting.run_listed(pg, run, DAG, day, "whisper-tiny")
    took, got = _claims_at_once(pg, s3, day, first, second)
    assert len(took) == 2
    assert not isinstance(got, Exception), repr(got)
    assert got == []
    verdict = run_verdict(s3, pg, second, [day], "calls/", reporting.listed_at(pg, second),
                          is_live=lambda r: r == first)
    problems = " | ".join(verdict.problems())
    assert "2 not reprocessed" in problems and f"left to run {first}," in problems, problems


def test_a_reprocess_claiming_beside_another_names_the_run_that_took_the_calls(stack, s3, pg):
    """Two reprocess runs of a day done long ago, triggered together: the second is red for the
    calls the first took, and says so; it must not name the day's old run, over for days, as the
    one to wait for."""
    day = date(2037, 2, 4)
    upload_day(s3, day, files=CALLS)
    assert run_through(s3, pg, day, "scheduled__long-over").ok
    first, second = "manual__race-reprocess-first", "manual__race-reprocess-second"
    for run in (first, second):
        reporting.run_listed(pg, run, DAG, day, "whisper-tiny")
    took, got = _claims_at_once(pg, s3, day, first, second)
    assert len(took) == 2 and got == []
    verdict = run_verdict(s3, pg, second, [day], "calls/", reporting.listed_at(pg, second),
                          is_live=lambda r: r == first)
    problems = " | ".join(verdict.problems())
    assert "2 not reprocessed" in problems, problems
    assert "scheduled__long-over" not in problems, problems
    assert f"left to run {first}," in problems, problems
