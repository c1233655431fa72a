"""discovery.refresh_metadata: a HEAD one key's storage refuses with a 400 (an SSE-C object read
without its key; a HEAD has no body, so minio reports any 400 as BadRequest) is that key's matter,
held off on a back-off, not a failure of every discovery of its day. Day 2085-06-02."""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, datetime

from minio.error import S3Error

from callscribe import discovery

Row = namedtuple("Row", "id bucket object_key etag last_modified")


class _OneKeyRefused:
    """A store whose HEAD of one key answers ``code``; everything else (the probe) works."""

    def __init__(self, code: str):
        self.code, self.written = code, {}

    def uri(self, key: str) -> str:
        return f"s3://b/{key}"

    def stat(self, bucket: str, key: str):
        raise S3Error(None, self.code, "refused", key, "req", "host", bucket, key)

    def put_bytes(self, uri: str, data: bytes, *args, **kw):
        self.written[uri] = data
        return uri

    def get_bytes(self, uri: str, *args, **kw):
        return self.written[uri]

    def delete(self, uri: str):
        self.written.pop(uri, None)


def _refresh(monkeypatch, code: str) -> list:
    held = []
    monkeypatch.setattr(discovery, "_refused", lambda engine, r, c: held.append((r.id, c)))
    row = Row(7, "b", "calls/2085/06/02/sse-c.wav", "e", datetime(2085, 6, 2, 9, tzinfo=UTC))
    assert discovery.refresh_metadata(_OneKeyRefused(code), None, [row], datetime(2085, 6, 2, 10, tzinfo=UTC),
                                      "scheduled__2085-06-02") == 0
    return held


def test_a_key_refused_with_403_is_held_off(monkeypatch):
    assert _refresh(monkeypatch, "AccessDenied") == [(7, "AccessDenied")]


def test_a_key_refused_with_400_is_held_off_not_failing_every_discovery(monkeypatch):
    assert _refresh(monkeypatch, "BadRequest") == [(7, "BadRequest")]
