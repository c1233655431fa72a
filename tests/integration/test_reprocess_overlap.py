"""A reprocess run beside another live run of its day.

Runs leave alone the recordings another live run holds, so no call is transcribed twice at
once. For a plain run that is the whole story: the holder owes those calls. A reprocess run
(a new engine, a fixed model, the operator's Trigger pressed twice) was asked to transcribe
the day again, and the calls it left to the holder keep the holder's transcript: it must not
end green as if it had done them.
"""

from __future__ import annotations

from datetime import date

import pytest

from callscribe import discovery, loading, pipeline, reporting
from callscribe.config import s3_settings
from callscribe.samples import sample_dir
from tests.integration.helpers import loads, run_through, upload_day

pytestmark = pytest.mark.integration

CALLS = [sample_dir() / "call-0001.wav", sample_dir() / "call-0003.wav"]
DAG = "transcribe_calls"


def _listed(pg, run: str, day: date) -> None:
    """What the DAG's `discover` does before it lists the bucket."""
    reporting.run_listed(pg, run, DAG, day, "whisper-tiny")


def _finish(s3, pg, run: str, ids: list[int]) -> None:
    """The rest of a run that has claimed ``ids``: chunk, transcribe, load, report."""
    jobs = pipeline.plan_jobs(s3, [pipeline.chunk_group(s3, pg, ids, run, 0)], run, "whisper-tiny")
    for job in jobs:
        pipeline.run_worker_local(job, s3_settings())
    loading.load_jobs(s3, pg, jobs, run)
    discovery.close_run(pg, run)


def test_a_reprocess_that_left_calls_to_a_live_run_is_red_until_it_has_reprocessed_them(stack, s3, pg):
    day = date(2037, 1, 5)
    upload_day(s3, day, files=CALLS)
    assert run_through(s3, pg, day, "scheduled__first").ok

    # A reprocess of the day has taken one call and is still working on it.
    holder = "manual__reprocess-first"
    _listed(pg, holder, day)
    held = discovery.discover(s3, pg, day, "calls/", holder, reprocess=True, max_recordings=1,
                              is_live=lambda r: False)
    assert len(held) == 1

    def live(r: str) -> bool:
        return r == holder

    # A plain run beside it owes nothing of what the holder holds.
    _listed(pg, "scheduled__plain", day)
    assert run_through(s3, pg, day, "scheduled__plain", is_live=live).ok

    # The operator triggers a reprocess of the day again: it can take only the other call.
    run = "manual__reprocess-again"
    _listed(pg, run, day)
    verdict = run_through(s3, pg, day, run, reprocess=True, is_live=live)
    assert not verdict.ok
    (audit,) = verdict.audits
    assert len(audit.not_reprocessed) == 1
    assert holder in audit.not_reprocessed[0]
    problems = " | ".join(verdict.problems())
    assert "1 not reprocessed" in problems and holder in problems
    assert sorted(loads(pg, day).values()) == [1, 2]  # the first run's load, and this run's of the other call

    # The verdict is read again (verify retried, or cleared alone): still red.
    from callscribe.audit import run_verdict
    assert not run_verdict(s3, pg, run, [day], "calls/", reporting.listed_at(pg, run), is_live=live).ok

    # The holder ends; the red run is cleared with its downstream (discover runs again under
    # the same run id) and now reprocesses every call of the day.
    _finish(s3, pg, holder, held)
    _listed(pg, run, day)
    verdict = run_through(s3, pg, day, run, reprocess=True, is_live=lambda r: False)
    assert verdict.ok, verdict.problems()
    assert verdict.audits[0].not_reprocessed == []
    assert sorted(loads(pg, day).values()) == [3, 3]


def test_a_run_listed_again_without_reprocess_forgets_what_an_earlier_reprocess_left(stack, s3, pg):
    """`callscribe run` again under a run id whose reprocess was red: the new run was not asked
    to reprocess, so what the old one could not reprocess is not held against it."""
    day = date(2037, 1, 6)
    upload_day(s3, day, files=CALLS[:1])
    assert run_through(s3, pg, day, "scheduled__first").ok
    holder = "manual__reprocess-holder"
    _listed(pg, holder, day)
    held = discovery.discover(s3, pg, day, "calls/", holder, reprocess=True, is_live=lambda r: False)
    assert len(held) == 1
    run = "manual__same-id"
    _listed(pg, run, day)
    assert not run_through(s3, pg, day, run, reprocess=True, is_live=lambda r: r == holder).ok
    _finish(s3, pg, holder, held)
    _listed(pg, run, day)
    assert run_through(s3, pg, day, run, is_live=lambda r: False).ok


def test_a_holder_marked_success_in_the_ui_does_not_keep_a_reprocess_run_red(stack, s3, pg):
    """The run holding the calls is marked success in the UI before it finished (no report: its
    leases stand). Cleared once that run is over, the red reprocess run closes it, takes the calls
    and ends green, each call loaded once more."""
    day = date(2037, 1, 7)
    upload_day(s3, day, files=CALLS[:1])
    assert run_through(s3, pg, day, "scheduled__first").ok
    holder = "manual__reprocess-marked-success"
    _listed(pg, holder, day)
    assert len(discovery.discover(s3, pg, day, "calls/", holder, reprocess=True, is_live=lambda r: False)) == 1
    run = "manual__reprocess-after-a-mark"
    _listed(pg, run, day)
    verdict = run_through(s3, pg, day, run, reprocess=True, is_live=lambda r: r == holder)
    assert not verdict.ok and holder in " | ".join(verdict.problems())
    # Marked success: over, never reported. The clear of the red run lists and claims again.
    _listed(pg, run, day)
    verdict = run_through(s3, pg, day, run, reprocess=True, is_live=lambda r: False)
    assert verdict.ok, verdict.problems()
    assert list(loads(pg, day).values()) == [2]
