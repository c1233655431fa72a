"""A call a reprocess run left to another live run, which found it is not audio.

A reprocess run never takes a quarantined call (it is kept, never retried): once the holder has
quarantined it there is nothing of it to reprocess, and a later pass under the run's id does
not take it either. The run must not be red for it ("not reprocessed"), nor tell the operator
to reprocess the day again for it.
"""

from __future__ import annotations

import time
from datetime import date

import pytest

from callscribe import discovery, pipeline, reporting
from callscribe.audit import run_verdict
from callscribe.discovery import day_prefix
from callscribe.samples import sample_dir
from tests.integration.helpers import run_through, upload_day

pytestmark = pytest.mark.integration

DAG = "transcribe_calls"


def test_a_call_the_holder_quarantined_is_not_held_against_a_reprocess_run(stack, s3, pg):
    day = date(2037, 2, 9)
    upload_day(s3, day, files=[sample_dir() / "call-0001.wav"])
    assert run_through(s3, pg, day, "scheduled__first").ok
    # A late upload that is not audio at all, taken by the next run of the day (its lookback).
    s3.put_bytes(s3.uri(day_prefix("calls/", day) + "not-audio.wav"), b"Dear customer, your invoice." * 50)
    holder = "scheduled__next"
    reporting.run_listed(pg, holder, DAG, day, "whisper-tiny")
    held = discovery.discover(s3, pg, day, "calls/", holder, is_live=lambda r: False)
    assert len(held) == 1
    time.sleep(1.1)  # object times are whole seconds: the reprocess run lists after the upload

    def holder_ends() -> None:  # while the reprocess run works, the holder chunks the file and ends
        pipeline.chunk_group(s3, pg, held, holder, 0)
        discovery.close_run(pg, holder)

    run = "manual__reprocess"
    reporting.run_listed(pg, run, DAG, day, "whisper-tiny")
    verdict = run_through(s3, pg, day, run, reprocess=True, before_chunk=holder_ends,
                          is_live=lambda r: r == holder)
    assert verdict.audits[0].states["quarantined"] == 1
    assert verdict.ok, verdict.problems()
    # Read again (verify retried): the same.
    assert run_verdict(s3, pg, run, [day], "calls/", reporting.listed_at(pg, run), is_live=lambda r: False).ok
