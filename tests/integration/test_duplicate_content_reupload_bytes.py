"""The same bytes written again under a key with another etag (a multipart upload, an
in-place CopyObject that fixes metadata on AWS, any rewrite under SSE-KMS) are not new content."""

from __future__ import annotations

from datetime import date

import pytest
from minio.datatypes import Part

from callscribe.audit import audit_day
from tests.integration.copies import call_bytes, newest, put, table, transcribed_keys
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def put_multipart(s3, key: str, data: bytes, metadata: dict[str, str] | None = None) -> str:
    """``data`` under ``key`` through a multipart upload of one part (as a recorder's SDK or `aws s3 cp`
    above its threshold writes it): the same bytes, etag '<md5 of md5>-1' instead of '<md5>'."""
    c = s3.client
    headers = {f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()}
    upload = c._create_multipart_upload(s3.bucket, key, headers)
    etag = c._upload_part(s3.bucket, key, data, None, upload, 1)
    c._complete_multipart_upload(s3.bucket, key, upload, [Part(1, etag)])
    return s3.stat(s3.bucket, key)[0]


def test_the_originals_bytes_written_again_with_another_etag_do_not_double_its_copy(stack, s3, pg):
    """a.wav is transcribed and b.wav (the same audio) is its copy. a.wav's bytes are then written
    again unchanged through a multipart upload (a metadata fix, a re-export of the same file): its etag
    changes, its content does not. The call must still be one transcript, not a.wav's and b.wav's."""
    day = date(2037, 9, 2)
    data = call_bytes(9201)
    first = put(s3, day, "a.wav", data)
    put(s3, day, "b.wav", data)
    assert run_through(s3, pg, day, "scheduled__rv-etag-1").ok
    assert newest(pg, day)["b.wav"].status == "duplicate", table(pg, day)
    old = newest(pg, day)["a.wav"].etag
    new = put_multipart(s3, first, data, {"agent-id": "fixed"})
    assert new != old and new.endswith("-1")  # the store's doing: same bytes, another etag
    verdict = run_through(s3, pg, day, "manual__rv-etag-1b")
    assert verdict.ok, verdict.problems()
    assert audit_day(s3, pg, day).clean
    # One call, one transcript: analysts must not count it twice.
    assert len(transcribed_keys(pg, day)) == 1, table(pg, day)


def test_the_copys_bytes_written_again_with_another_etag_stay_a_copy(stack, s3, pg):
    day = date(2037, 9, 3)
    data = call_bytes(9202)
    put(s3, day, "a.wav", data)
    second = put(s3, day, "b.wav", data)
    assert run_through(s3, pg, day, "scheduled__rv-etag-2").ok
    put_multipart(s3, second, data)
    verdict = run_through(s3, pg, day, "manual__rv-etag-2b")
    assert verdict.ok, verdict.problems()
    assert len(transcribed_keys(pg, day)) == 1, table(pg, day)
