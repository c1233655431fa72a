"""The object store, through the plain S3 API (minio SDK): MinIO, SeaweedFS or AWS S3 alike."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import urllib3
from minio import Minio
from minio.error import S3Error, ServerError

from callscribe.config import S3Settings, s3_settings


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    etag: str
    size: int
    last_modified: datetime | None = None


def parse_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/key' -> ('bucket', 'some/key')."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"an s3:// URI needs a bucket and a key: {uri!r}")
    return bucket, key


def make_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


class Store:
    """A thin, typed wrapper over one bucket-aware S3 client."""

    def __init__(self, settings: S3Settings):
        self.settings = settings
        self.bucket = settings.bucket
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
        )

    def list(self, prefix: str, bucket: str | None = None) -> Iterator[ObjectInfo]:
        b = bucket or self.bucket
        for obj in self.client.list_objects(b, prefix=prefix, recursive=True):
            if obj.is_dir:
                continue
            yield ObjectInfo(b, obj.object_name, (obj.etag or "").strip('"'), obj.size or 0, obj.last_modified)

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = parse_uri(uri)
        resp = self.client.get_object(bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream",
                  metadata: dict[str, str] | None = None) -> str:
        bucket, key = parse_uri(uri)
        self.client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type,
                               metadata=metadata)
        return uri

    def stat(self, bucket: str, key: str) -> tuple[str, dict[str, str]]:
        """An object's etag and user metadata (x-amz-meta-*, keys lower-cased without the prefix)."""
        st = self.client.stat_object(bucket, key)
        meta = {}
        for k, v in (st.metadata or {}).items():
            lk = k.lower()
            if lk.startswith("x-amz-meta-"):
                meta[lk[len("x-amz-meta-"):]] = v
        return (st.etag or "").strip('"'), meta

    def exists(self, uri: str) -> bool:
        bucket, key = parse_uri(uri)
        try:
            self.client.stat_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NotFound", "ResourceNotFound"):
                return False
            raise
        return True

    def delete(self, uri: str) -> None:
        bucket, key = parse_uri(uri)
        self.client.remove_object(bucket, key)

    def uri(self, key: str) -> str:
        return make_uri(self.bucket, key)


# S3 error codes that say "try again later", not "this object is bad".
TRANSIENT_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})


def unavailable(exc: BaseException) -> bool:
    """True when the store could not be reached or asked us to back off: an outage, worth a
    retry of the whole task, never a reason to fail or quarantine a recording."""
    if isinstance(exc, S3Error):
        return exc.code in TRANSIENT_CODES
    return isinstance(exc, (urllib3.exceptions.HTTPError, ServerError, ConnectionError, TimeoutError))


@lru_cache(maxsize=4)
def _store_for(settings: S3Settings) -> Store:
    return Store(settings)


def store(settings: S3Settings | None = None) -> Store:
    return _store_for(settings or s3_settings())
