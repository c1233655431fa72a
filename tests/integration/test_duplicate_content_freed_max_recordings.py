"""A run limited by max_recordings frees a copy under another prefix (its original left) and
stops claiming before it takes it. The copy is `pending`, untaken (last_run_id emptied), so the run's
verdict (days_taken) does not answer for it: the run is green, and no run of that prefix comes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from callscribe import discovery, pipeline
from callscribe.audit import run_verdict
from callscribe.discovery import day_prefix
from tests.integration.copies import call_bytes
from tests.integration.helpers import transcribe_and_close
from tests.integration.test_duplicate_content_prefixes import row, run_prefix

pytestmark = pytest.mark.integration

DAY = date(2071, 5, 3)


def test_a_run_limited_by_max_recordings_answers_for_a_copy_it_freed_under_another_prefix(stack, pg, s3):
    data = call_bytes(23201)
    original = day_prefix("calls/", DAY) + "a.wav"
    copy = day_prefix("imports/", DAY) + "b.wav"
    s3.put_bytes(s3.uri(original), data)
    assert run_prefix(s3, pg, DAY, "calls/", "rvz-mr-1").ok
    s3.put_bytes(s3.uri(copy), data)
    assert run_prefix(s3, pg, DAY, "imports/", "rvz-mr-2").ok
    assert row(pg, copy).status == "duplicate"
    s3.delete(s3.uri(original))
    s3.put_bytes(s3.uri(day_prefix("calls/", DAY) + "x.wav"), call_bytes(23202))  # a new call of the day
    run = "rvz-mr-3"
    started = datetime.now(UTC)
    ids = discovery.discover(s3, pg, DAY, "calls/", run, max_recordings=1, is_live=lambda r: False)
    transcribe_and_close(s3, pg, [pipeline.chunk_group(s3, pg, ids, run, 0)] if ids else [], run)
    verdict = run_verdict(s3, pg, run, [DAY], "calls/", started, is_live=lambda r: False, only_claimed=True)
    b = row(pg, copy)
    assert b.status == "done" or not verdict.ok, (
        f"run {run} is green, the call's only key {copy} is {b.status} (last run {b.last_run_id}): "
        f"no run of imports/ will take it")
