"""A key that failed with attempts left is being chunked again (its status stays `failed`
until it is chunked) when a key holding the same bytes under another etag is read by another chunk
task. recording_bytes.sql only took `pending`/`chunked` rows under a live lease for "on its way",
so the second key was chunked too: the call was transcribed twice and the run's verdict red."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import audio, discovery, loading, pipeline
from callscribe.config import s3_settings
from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def test_a_failed_key_being_chunked_again_is_the_original_of_its_bytes(stack, s3, pg, monkeypatch):
    day = date(2071, 3, 5)
    data = cp.call_bytes(23001)
    cp.put(s3, day, "a.wav", data)
    assert run_through(s3, pg, day, "scheduled__rvz-f1-0", stop="listed") is None
    discovery.close_run(pg, "scheduled__rvz-f1-0")
    with pg.begin() as c:  # what a worker's failure leaves: failed, attempts left
        c.execute(sa.text("UPDATE recordings SET status = 'failed', attempts = 1, lease_until = NULL, "
                          "last_error = 'the worker failed on it' WHERE object_key LIKE '%/a.wav' "
                          "AND call_date = :d"), {"d": day})
    cp.put_in_parts(s3, day, "b.wav", data)  # the call delivered again, multipart: another etag
    run = "scheduled__rvz-f1-1"
    ids = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    rows = cp.newest(pg, day)
    a, b = rows["a.wav"].id, rows["b.wav"].id
    assert sorted(ids) == sorted([a, b]), cp.table(pg, day)
    real = audio.decode
    manifests: list[str] = []

    def decode(data_, name="<bytes>"):
        # a.wav's bytes are recorded; while it decodes, another chunk task (another group) reads b.wav.
        if name.endswith("/a.wav") and not manifests:
            manifests.append(pipeline.chunk_group(s3, pg, [b], run, 1))
        return real(data_, name)

    monkeypatch.setattr(pipeline, "decode", decode)
    manifests.append(pipeline.chunk_group(s3, pg, [a], run, 0))
    jobs = pipeline.plan_jobs(s3, manifests, run, "whisper-tiny")
    for job in jobs:
        pipeline.run_worker_local(job, s3_settings())
    loading.load_jobs(s3, pg, jobs, run)
    discovery.close_run(pg, run)
    assert len(cp.transcribed_keys(pg, day)) == 1, cp.table(pg, day)
