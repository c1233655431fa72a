"""A chunk task that freed the copies of an unreadable key fails on an outage while it chunks
one of them, and Airflow retries it. The retry reads the unreadable key again, but its copies are no
longer `duplicate` (recording_copies_free.sql took them): nothing frees them again and the retry
never chunks them. The copy stays `pending` under the run's lease: the run is red, and a copy
under another prefix or on a day no run covers has no run to take it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from minio.error import S3Error

from callscribe import discovery, pipeline
from callscribe.audit import run_verdict
from tests.integration import copies as cp
from tests.integration.helpers import transcribe_and_close

pytestmark = pytest.mark.integration


def test_a_retried_chunk_task_still_transcribes_the_copies_its_first_try_freed(stack, s3, pg, monkeypatch):
    day = date(2071, 4, 5)
    data = cp.call_bytes(23101)
    bad = cp.put(s3, day, "a.wav", data)
    copy = cp.put(s3, day, "b.wav", data)
    real = s3.get_bytes
    outage = [1]

    def get_bytes(uri, *args, **kw):
        if uri == s3.uri(bad):  # a policy keeps this one key from the pipeline
            raise S3Error(None, "AccessDenied", "Access Denied", bad, "req", "host", s3.bucket, bad)
        if uri == s3.uri(copy) and outage:  # the store asks for a pause while the copy is read
            outage.pop()
            raise S3Error(None, "SlowDown", "Slow down", copy, "req", "host", s3.bucket, copy)
        return real(uri, *args, **kw)

    monkeypatch.setattr(s3, "get_bytes", get_bytes)
    run = "scheduled__rvz-fr-1"
    started = datetime.now(UTC)
    ids = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    assert ids == [cp.newest(pg, day)["a.wav"].id], cp.table(pg, day)
    with pytest.raises(S3Error):
        pipeline.chunk_group(s3, pg, ids, run, 0)  # the outage fails the task...
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)  # ...and Airflow retries it
    transcribe_and_close(s3, pg, [manifest], run)
    verdict = run_verdict(s3, pg, run, [day], "calls/", started, is_live=lambda r: False)
    assert cp.transcribed_keys(pg, day) == ["b.wav"], (cp.table(pg, day), verdict.problems())
    assert verdict.ok, verdict.problems()
