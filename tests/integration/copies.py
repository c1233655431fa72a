"""Shared by the tests of copies (one call uploaded under several keys of a day)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from callscribe.discovery import day_prefix
from callscribe.samples import distinct_copy, sample_dir
from tests.integration.helpers import run_through

CALL = sample_dir() / "call-0003.wav"
OTHER = sample_dir() / "call-0002.mp3"


def rows(pg, day: date) -> list[sa.Row]:
    """Every row of the day, oldest first, with how many transcripts each holds."""
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT r.id, r.object_key, r.etag, r.status, r.attempts, r.last_error, r.duplicate_of, r.loads, "
            "r.last_run_id, (SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts "
            "FROM recordings r WHERE r.call_date = :d ORDER BY r.id"), {"d": day}).all()


def name(r) -> str:
    return r.object_key.rsplit("/", 1)[1]


def newest(pg, day: date) -> dict[str, sa.Row]:
    """object name -> its newest row."""
    return {name(r): r for r in rows(pg, day)}


def put(s3, day: date, object_name: str, data) -> str:
    key = day_prefix("calls/", day) + object_name
    s3.put_bytes(s3.uri(key), data if isinstance(data, bytes) else data.read_bytes())
    return key


def transcribed_keys(pg, day: date) -> list[str]:
    """Names whose row holds transcripts (what analysts count as calls)."""
    return sorted(name(r) for r in rows(pg, day) if r.status == "done" and r.transcripts > 0)


def table(pg, day: date) -> list[tuple]:
    """The day's rows in short, for assertion messages."""
    return [(name(r), r.id, r.status, r.attempts, r.duplicate_of, r.transcripts) for r in rows(pg, day)]


def give_up(pg, key: str) -> None:
    """The state a recording's third failed run leaves."""
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'failed', attempts = 3, lease_until = NULL, "
                          "last_error = 'gave up after 3 attempts: the chunk task died while decoding' "
                          "WHERE object_key = :k"), {"k": key})


def call_bytes(i: int, mp3: bool = False) -> bytes:
    """Copy ``i`` of a sample as a call of its own: the tests of copies across days sit within one
    window of each other, so each needs audio no other test uploads (its own range of ``i``)."""
    path = OTHER if mp3 else CALL
    return distinct_copy(path.read_bytes(), path.suffix, i)


def transcribed_with_copy(s3, pg, day: date, copy_day: date, data: bytes, run: str) -> str:
    """a.wav of ``day`` transcribed, then b.wav of ``copy_day`` (the same audio) marked its copy,
    each by a run of its day (``run``-1, ``run``-2); returns a.wav's key."""
    original = put(s3, day, "a.wav", data)
    assert run_through(s3, pg, day, f"{run}-1").ok
    put(s3, copy_day, "b.wav", data)
    assert run_through(s3, pg, copy_day, f"{run}-2").ok
    assert newest(pg, copy_day)["b.wav"].status == "duplicate", table(pg, copy_day)
    return original


def put_in_parts(s3, day: date, object_name: str, data: bytes, parts: int = 1) -> str:
    """``data`` uploaded as a multipart upload of ``parts`` parts: the same bytes as a plain
    upload under another etag ("<md5 of the parts' md5s>-N"), as large exports and server-side
    copies of them get. One part by default: stores refuse parts under 5 MiB but the last."""
    from minio.datatypes import Part

    key = day_prefix("calls/", day) + object_name
    bucket, client = s3.bucket, s3.client
    upload = client._create_multipart_upload(bucket, key, {"Content-Type": "audio/wav"})
    step = -(-len(data) // parts)
    etags = [client._upload_part(bucket, key, data[i * step:(i + 1) * step], None, upload, i + 1)
             for i in range(parts)]
    client._complete_multipart_upload(bucket, key, upload, [Part(n + 1, e) for n, e in enumerate(etags)])
    return key


def deny(s3, monkeypatch, key: str, code: str = "AccessDenied") -> None:
    """GET of ``key`` refused, as a bucket policy (or an archive tier: InvalidObjectState) refuses it."""
    from minio.error import S3Error

    real = s3.get_bytes

    def get_bytes(uri, *args, **kw):
        if uri == s3.uri(key):
            raise S3Error(None, code, "Access Denied", key, "req", "host", s3.bucket, key)
        return real(uri, *args, **kw)

    monkeypatch.setattr(s3, "get_bytes", get_bytes)


def locked(s3, monkeypatch, uri: str) -> None:
    """DELETE of the object at ``uri`` refused, as S3 Object Lock refuses a version under retention
    (403 AccessDenied; SeaweedFS has no Object Lock). ``monkeypatch.undo()`` lifts it."""
    from minio.error import S3Error

    real = s3.client.remove_object

    def remove_object(bucket, name, *a, **kw):
        if s3.uri(name) == uri:
            raise S3Error(None, "AccessDenied", "Access Denied because object protected by object lock.",
                          f"/{bucket}/{name}", "req", "host", bucket, name)
        return real(bucket, name, *a, **kw)

    monkeypatch.setattr(s3.client, "remove_object", remove_object)
