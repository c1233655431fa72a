"""A store that refuses a recording's speech pack for the recording's own sake (too large)
is not an outage: the recording fails with its reason, instead of the task failing and the attempt
being given back on every try of every run (a loop that never ends)."""

from __future__ import annotations

from datetime import date

import pytest
from minio.error import S3Error

from callscribe import discovery, pipeline
from tests.integration.test_chunk_outages import _one_call, _status

pytestmark = pytest.mark.integration


def test_a_pack_the_store_refuses_as_too_large_fails_its_recording(stack, s3, pg, monkeypatch):
    run = "review-g-too-large"
    rid = _one_call(s3, pg, date(2033, 5, 1), run)
    real = s3.put_bytes

    def put_bytes(uri, data, *args, **kw):
        if "/packs/" in uri or uri.endswith((".flac", ".wav", ".opus")):
            raise S3Error(None, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.",
                          uri, "req", "host")
        return real(uri, data, *args, **kw)

    monkeypatch.setattr(s3, "put_bytes", put_bytes)
    assert pipeline.chunk_one(s3, pg, rid, run_id=run) is None
    row = _status(pg, rid)
    assert row.status == "failed" and "EntityTooLarge" in row.last_error and row.attempts == 1, row
    discovery.release(pg, run)
