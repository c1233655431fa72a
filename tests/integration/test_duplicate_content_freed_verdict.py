"""The run that frees a copy on a day it does not cover takes it (test_duplicate_content_freed.py);
its verdict must then answer for it too. A backfill of an old day whose chunk task for the
freed copy never ran (marked success in the UI) left the copy pending on a day no later run
lists, and every run was green."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from callscribe import discovery, loading, pipeline
from callscribe.audit import run_verdict
from tests.integration import copies as cp
from tests.integration.helpers import run_through, s3_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def window(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_COPY_WINDOW_DAYS", "7")


def test_a_freed_copy_the_run_took_and_left_unfinished_makes_the_run_red(stack, s3, pg, window):
    day, next_day, today = date(2064, 9, 1), date(2064, 9, 2), date(2064, 9, 9)
    cp.transcribed_with_copy(s3, pg, day, next_day, cp.call_bytes(4501), "scheduled__xfv1")
    cp.put(s3, day, "a.wav", cp.call_bytes(4502, mp3=True))  # the original overwritten with another call
    run = "backfill__xfv1-3"
    started = datetime.now(UTC)
    ids = discovery.discover(s3, pg, day, "calls/", run, lookback_days=3, is_live=lambda r: False)
    copy = cp.newest(pg, next_day)["b.wav"]
    assert copy.id in ids and copy.last_run_id == run, cp.table(pg, next_day)
    # The chunk task of the copy's group is marked success in the UI: only the rest is transcribed.
    manifest = pipeline.chunk_group(s3, pg, [i for i in ids if i != copy.id], run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    for job in jobs:
        pipeline.run_worker_local(job, s3_settings())
    loading.load_jobs(s3, pg, jobs, run)
    discovery.close_run(pg, run)
    verdict = run_verdict(s3, pg, run, discovery.run_days(day, 3), "calls/", started, is_live=lambda r: False)
    assert cp.newest(pg, day)["a.wav"].status == "done", cp.table(pg, day)
    assert cp.newest(pg, next_day)["b.wav"].status == "pending", cp.table(pg, next_day)
    assert not verdict.ok, verdict.as_dict()
    assert any(str(next_day) in p and "b.wav" in p for p in verdict.problems()), verdict.problems()
    # Nor is it left for good: today's run does not reach it, a run of its own day transcribes it.
    assert run_through(s3, pg, today, "scheduled__xfv1-4", lookback_days=3).ok
    assert run_through(s3, pg, next_day, "scheduled__xfv1-5").ok
    assert cp.newest(pg, next_day)["b.wav"].status == "done", cp.table(pg, next_day)
