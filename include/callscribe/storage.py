"""The object store, through the plain S3 API (minio SDK): MinIO, SeaweedFS or AWS S3 alike."""

from __future__ import annotations

import email.errors
import email.header
import io
import logging
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import certifi
import urllib3
from minio import Minio
from minio.credentials import Credentials
from minio.credentials.providers import (
    AWSConfigProvider,
    EnvAWSProvider,
    IamAwsProvider,
    Provider,
    StaticProvider,
)
from minio.error import S3Error, ServerError

from callscribe.config import S3Settings, s3_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    etag: str
    size: int
    last_modified: datetime | None = None


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str | None  # None on a bucket without versioning
    latest: bool


def _version(version_id: str | None) -> str | None:
    return version_id if version_id not in (None, "", "null") else None


def _latest(flag: object) -> bool:
    """A listing's IsLatest: minio gives the XML's text, and 'false' is a true string. A listing
    without it (no versioning) has only current objects."""
    return flag is None or flag is True or str(flag).lower() == "true"


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


def header_text(value: str) -> str:
    """A metadata value as text: S3 carries user metadata in US-ASCII headers, and AWS hands back a
    non-ASCII value as RFC 2047 encoded words ("=?UTF-8?B?...?="); those are decoded, anything else
    (or what does not decode to printable text) is returned as it is."""
    if "=?" not in value:
        return value
    try:
        text = str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return value
    # Not control characters a header could not carry (a NUL, which no Postgres text or jsonb holds).
    return value if any(ord(c) < 32 or ord(c) == 127 for c in text) else text


# Objects up to this size go up in one PUT (S3 takes up to 5 GiB); larger ones in parts of it.
PUT_PART_BYTES = 64 * 1024 * 1024
# How long a bucket that refused to list its versions, and said it keeps none, is taken at its word.
UNVERSIONED_TTL_S = 300.0
# What a conditional read (If-Match) answers when the object's content is no longer that one.
CHANGED = "PreconditionFailed"


# ---------------------------------------------------------------- credentials and trust


class VersionsRefused(PermissionError):
    """The store will not list the versions of a bucket that keeps them (s3:ListBucketVersions)."""


class CredentialsUnavailable(ConnectionError):
    """No credentials could be had: not an object's fault, so :func:`unavailable` says retry."""


# A web identity token travels in the STS request's query, which minio's errors quote.
_TOKEN_IN_URL = re.compile(r"(WebIdentityToken|Token)=[^&\s]+")


class _IamProvider(IamAwsProvider):
    """minio's IAM provider (web identity / IRSA, ECS and EKS Pod Identity container
    credentials, EC2 instance metadata), with a network failure turned into the ValueError
    that lets a chain go on, and the identity token kept out of error messages."""

    def retrieve(self) -> Credentials:
        try:
            return super().retrieve()
        except urllib3.exceptions.HTTPError as exc:
            raise ValueError(f"IAM credentials endpoint not reachable ({type(exc).__name__})") from None
        except ValueError as exc:
            raise ValueError(_TOKEN_IN_URL.sub(r"\1=***", str(exc))) from None


class DefaultCredentialChain(Provider):
    """AWS's default credential chain as far as the minio SDK walks it, in boto3's order:
    AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/AWS_SESSION_TOKEN), the shared credentials file
    (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE), then IAM: web identity (AWS_ROLE_ARN +
    AWS_WEB_IDENTITY_TOKEN_FILE; STS at AWS_ENDPOINT_URL_STS when set), container
    credentials (ECS, EKS Pod Identity), EC2 instance metadata. The provider that answered
    is asked first next time; it renews temporary credentials before they expire.
    """

    def __init__(self, region: str | None = None, sts_endpoint: str | None = None):
        # Metadata endpoints answer in milliseconds when present: short timeouts keep a
        # machine without them from hanging (botocore waits 1 s for instance metadata).
        iam_http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2, read=10),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        sts = sts_endpoint or os.environ.get("AWS_ENDPOINT_URL_STS")
        # minio uses a custom endpoint for every IAM source; it is meant for STS only.
        web_identity = bool(os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"))
        iam = _IamProvider(http_client=iam_http, region=region, custom_endpoint=sts if web_identity else None)
        self.providers: list[tuple[str, Provider]] = [
            ("environment", EnvAWSProvider()), ("shared credentials file", AWSConfigProvider()), ("IAM", iam)]
        self._current: Provider | None = None

    def retrieve(self) -> Credentials:
        if self._current is not None:
            try:
                return self._current.retrieve()
            except ValueError:
                self._current = None  # gone (a role detached, a file removed): walk the chain again
        reasons = []
        for name, provider in self.providers:
            try:
                creds = provider.retrieve()
            except ValueError as exc:
                reasons.append(f"{name}: {exc}")
                continue
            self._current = provider
            return creds
        raise CredentialsUnavailable(
            "no object-store credentials: the connection has no keys and the default AWS chain found none ("
            + "; ".join(reasons) + ")")


def credentials_provider(settings: S3Settings) -> Provider:
    """The connection's keys, or the default chain when it has none (as the Amazon provider does)."""
    if settings.access_key:
        return StaticProvider(settings.access_key, settings.secret_key, settings.session_token or None)
    return DefaultCredentialChain(region=settings.region, sts_endpoint=settings.sts_endpoint)


def ca_certs(settings: S3Settings) -> str:
    """The CA bundle the client trusts: the connection's (``verify`` path, AWS_CA_BUNDLE),
    else SSL_CERT_FILE, else certifi's, as the minio client does by default."""
    return settings.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where()


def http_client(settings: S3Settings) -> urllib3.PoolManager:
    """The client's connection pool: minio's defaults, with the trust store chosen above."""
    if not settings.verify:
        log.warning("object store %s: TLS certificates are not checked (verify=false)", settings.endpoint)
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=300, read=300),
        maxsize=10,
        cert_reqs="CERT_REQUIRED" if settings.verify else "CERT_NONE",
        ca_certs=ca_certs(settings) if settings.verify else None,
        retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


def minio_client(settings: S3Settings, endpoint: str | None = None, secure: bool | None = None) -> Minio:
    """A minio client for these settings; ``endpoint``/``secure`` override the address only
    (a public endpoint for presigned URLs)."""
    return Minio(
        endpoint or settings.endpoint,
        secure=settings.secure if secure is None else secure,
        region=settings.region,
        credentials=credentials_provider(settings),
        http_client=http_client(settings),
    )


# ---------------------------------------------------------------- the store


class Store:
    """A thin, typed wrapper over one bucket-aware S3 client."""

    def __init__(self, settings: S3Settings):
        self.settings = settings
        self.bucket = settings.bucket
        self.client = minio_client(settings)
        self._unversioned: dict[str, float] = {}  # bucket -> when it would not list versions, and kept none
        self._versioning_unknown: dict[str, float] = {}  # ... and would not say whether it kept any

    def list(self, prefix: str, bucket: str | None = None) -> Iterator[ObjectInfo]:
        b = bucket or self.bucket
        for obj in self.client.list_objects(b, prefix=prefix, recursive=True):
            if obj.is_dir:
                continue
            yield ObjectInfo(b, obj.object_name, (obj.etag or "").strip('"'), obj.size or 0, obj.last_modified)

    def _version_listing(self, bucket: str, prefix: str, recursive: bool = True,
                         unknown_unversioned: bool = False) -> Iterator[object]:
        """ListObjectVersions under ``prefix``. AWS S3 (and MinIO with policies) allow it only with
        s3:ListBucketVersions, an action s3:ListBucket does not give. Refused, a bucket whose
        versioning was never turned on is answered by its plain listing (each object its only
        version, no delete markers); one with versioning raises :class:`VersionsRefused` naming
        what to grant (its older versions keep bytes). A bucket that will not say whether it keeps
        versions either (s3:GetBucketVersioning) raises too, unless ``unknown_unversioned``: the
        work-area sweep takes its current objects with a warning; an erasure must not claim a
        call's bytes gone while older versions may hold them."""
        try:
            listed = self.client.list_objects(bucket, prefix=prefix, recursive=recursive, include_version=True)
            first = next(listed, None)
        except S3Error as exc:
            if exc.code not in REFUSED_CODES:
                raise
            self._versions_refused(bucket, exc, unknown_unversioned)
            yield from self.client.list_objects(bucket, prefix=prefix, recursive=recursive)
            return
        if first is not None:
            yield first
            yield from listed

    def _versions_refused(self, bucket: str, exc: S3Error, unknown_unversioned: bool) -> None:
        def recent(seen: dict[str, float]) -> bool:
            return time.monotonic() - seen.get(bucket, -UNVERSIONED_TTL_S) < UNVERSIONED_TTL_S

        # The bucket said a moment ago that it keeps no versions, or (for the sweep) would not say and
        # was warned of: the sweep lists key by key.
        if recent(self._unversioned) or (unknown_unversioned and recent(self._versioning_unknown)):
            return
        try:
            status = self.client.get_bucket_versioning(bucket).status  # None: versioning never turned on
        except S3Error as refused:
            if refused.code not in REFUSED_CODES:
                raise
            status = "unknown"
        grant = "grant s3:ListBucketVersions, s3:GetBucketVersioning and s3:DeleteObjectVersion (docs/connections.md)"
        if status in ("Enabled", "Suspended"):
            raise VersionsRefused(
                f"the object store refuses to list the versions in bucket {bucket} ({exc.code}), which keeps "
                f"versions (versioning {status}): {grant}; without them older versions keep their bytes") from exc
        if status == "unknown":
            if not unknown_unversioned:
                raise VersionsRefused(
                    f"the object store refuses to list the versions in bucket {bucket} ({exc.code}) and to say "
                    f"whether it keeps any: {grant}; older versions may keep the bytes") from exc
            log.warning("the object store refuses to list the versions in bucket %s (%s) and will not say "
                        "whether it keeps any: only current objects are seen; %s", bucket, exc.code, grant)
            self._versioning_unknown[bucket] = time.monotonic()
            return
        self._unversioned[bucket] = time.monotonic()

    def versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Every version of the objects under ``prefix``, delete markers left out: on a versioned
        bucket a deleted or overwritten object keeps its bytes in them (one version each, the
        latest, on a bucket without versioning)."""
        for obj in self._version_listing(self.bucket, prefix):
            if obj.is_dir or obj.is_delete_marker:
                continue
            yield ObjectVersion(obj.object_name, _version(obj.version_id), _latest(obj.is_latest))

    def hidden(self, prefix: str) -> Iterator[ObjectInfo]:
        """The keys under ``prefix`` whose current version is a delete marker (a deleted object on a
        versioned bucket: its older versions keep their bytes), dated by that marker; a listing of
        current objects (``list``) leaves them out. None on a bucket without versioning."""
        for obj in self._version_listing(self.bucket, prefix, unknown_unversioned=True):
            if obj.is_delete_marker and _latest(obj.is_latest):
                yield ObjectInfo(self.bucket, obj.object_name, "", 0, obj.last_modified)

    def get_bytes(self, uri: str, version_id: str | None = None, etag: str | None = None) -> bytes:
        """The object's bytes; with ``etag``, only if it still has that content (one conditional
        request: a newer content is an S3Error with the code :data:`CHANGED`, not its bytes)."""
        bucket, key = parse_uri(uri)
        headers = {"If-Match": f'"{etag}"'} if etag else None
        resp = self.client.get_object(bucket, key, version_id=version_id, request_headers=headers)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream",
                  metadata: dict[str, str] | None = None) -> str:
        bucket, key = parse_uri(uri)
        # One request up to PUT_PART_BYTES (a speech pack, a shard): the client's default
        # 5 MiB multipart costs a request, a signature and a hash per part.
        self.client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type,
                               metadata=metadata, part_size=PUT_PART_BYTES)
        return uri

    def clock(self, key: str) -> datetime:
        """The store's own time now: ``key`` written empty, its Last-Modified read back from a
        listing, the way the calls' times are read (whole seconds on some stores)."""
        self.put_bytes(self.uri(key), b"")
        at = next((o.last_modified for o in self.list(key) if o.key == key), None)
        if at is None:  # a listing that lags its writes: the object's own HEAD (whole seconds)
            at = self.client.stat_object(self.bucket, key).last_modified
        if at is None:
            raise RuntimeError(f"the store gave no Last-Modified for {key}, just written: its clock could not be read")
        return at

    def uploads_in_flight(self, prefix: str, page_size: int | None = None) -> list[tuple[str, datetime]] | None:
        """The multipart uploads begun under ``prefix`` and not yet finished or aborted: (key, when
        it began). None when the store will not say (no s3:ListBucketMultipartUploads permission, or
        no such call): the caller goes on without it. Abandoned uploads stay listed until a
        lifecycle rule aborts them."""
        found: list[tuple[str, datetime]] = []
        query = {"uploads": "", "prefix": prefix}
        if page_size:
            query["max-uploads"] = str(page_size)
        while True:
            try:
                # minio's own call asks for URL-encoded keys, which some stores (SeaweedFS) claim and
                # do not do, and it does not parse NextUploadIdMarker: plain XML-escaped keys instead.
                body = self.client._execute("GET", self.bucket, query_params=query).data
            except S3Error as exc:
                if exc.code in REFUSED_CODES or exc.code in UNSUPPORTED_CODES:
                    log.warning("the object store will not list the uploads under way under %s (%s)", prefix, exc.code)
                    return None
                raise
            try:
                page = ET.fromstring(body)
                for upload in page.iterfind("{*}Upload"):
                    began = upload.findtext("{*}Initiated")
                    if began:
                        at = datetime.fromisoformat(began)  # S3's times are UTC, a zone written or not
                        found.append((upload.findtext("{*}Key") or "",
                                      at if at.tzinfo else at.replace(tzinfo=UTC)))
            except (ET.ParseError, ValueError) as exc:  # no answer the run can use: strict, not stopped
                log.warning("the object store's list of the uploads under way under %s could not be read (%s)",
                            prefix, type(exc).__name__)
                return None
            markers = {"key-marker": page.findtext("{*}NextKeyMarker") or "",
                       "upload-id-marker": page.findtext("{*}NextUploadIdMarker") or ""}
            if (page.findtext("{*}IsTruncated") or "").lower() != "true" or not markers["key-marker"] or all(
                    query.get(k) == v for k, v in markers.items()):
                return found
            query.update(markers)

    def stat(self, bucket: str, key: str) -> tuple[str, dict[str, str]]:
        """An object's etag and user metadata (x-amz-meta-*, keys lower-cased without the prefix)."""
        st = self.client.stat_object(bucket, key)
        meta = {}
        for k, v in (st.metadata or {}).items():
            lk = k.lower()
            if lk.startswith("x-amz-meta-"):
                meta[lk[len("x-amz-meta-"):]] = header_text(v)
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

    def purge(self, uri: str, keep_latest: bool = False) -> int:
        """Delete every version of an object (on a versioned bucket a plain delete only hides
        it behind a marker), or with ``keep_latest`` every version but the current one;
        returns how many were removed."""
        bucket, key = parse_uri(uri)
        removed = 0
        for obj in list(self._version_listing(bucket, key, recursive=False)):
            if obj.object_name != key or (keep_latest and _latest(obj.is_latest)):
                continue
            self.client.remove_object(bucket, key, version_id=_version(obj.version_id))
            removed += 1
        return removed

    def purge_older(self, uri: str, before: datetime) -> int:
        """Delete the versions of an object last written before ``before``, and only those: one
        written since it was listed (a run that took the object up again) stays. Returns how
        many were removed."""
        bucket, key = parse_uri(uri)
        removed = 0
        for obj in list(self._version_listing(bucket, key, recursive=False, unknown_unversioned=True)):
            if obj.object_name != key or obj.last_modified is None or obj.last_modified >= before:
                continue
            self.client.remove_object(bucket, key, version_id=_version(obj.version_id))
            removed += 1
        return removed

    def delete_version(self, uri: str, version_id: str | None) -> None:
        """Delete one version of an object for good (the object itself without versioning)."""
        bucket, key = parse_uri(uri)
        self.client.remove_object(bucket, key, version_id=version_id)

    def uri(self, key: str) -> str:
        return make_uri(self.bucket, key)


# S3 error codes that say "try again later", not "this object is bad".
TRANSIENT_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})
# S3 error codes about this client or the bucket, never about one object: credentials expired, rotated
# or refused, a clock the store will not sign with, the bucket gone. Every object would fail alike.
CLIENT_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                          "InvalidToken", "TokenRefreshRequired", "RequestTimeTooSkewed", "AccountProblem",
                          "AllAccessDisabled", "InvalidSecurity", "NoSuchBucket"})
# What a refusal of one object may look like (a HEAD has no body: minio reports any 403 as
# AccessDenied, and a 400 as BadRequest): the object's own policy or storage, or the client's
# credentials; only a second request tells which (:func:`refuses_client`).
REFUSED_CODES = frozenset({"AccessDenied", "BadRequest", "Forbidden"})
# A call this store does not have (a minimal S3 gateway).
UNSUPPORTED_CODES = frozenset({"NotImplemented", "MethodNotAllowed"})


def store_down(exc: S3Error) -> bool:
    """True when the store answered that it is in trouble: a transient code, or any 5xx whatever it
    names it (MinIO's XMinioReadQuorum, SlowDownRead, XMinioStorageFull: codes of its own), but for
    a call it does not have (501 NotImplemented)."""
    status = getattr(exc.response, "status", None) or 0
    return exc.code in TRANSIENT_CODES or (status >= 500 and exc.code not in UNSUPPORTED_CODES)


def unavailable(exc: BaseException) -> bool:
    """True when the store could not be reached, is down or asked us to back off (:func:`store_down`),
    or refuses this client whatever the object (CLIENT_CODES): an outage, worth a retry of the whole
    task, never a reason to fail or quarantine a recording."""
    if isinstance(exc, S3Error):
        return store_down(exc) or exc.code in CLIENT_CODES
    return isinstance(exc, (urllib3.exceptions.HTTPError, ServerError, ConnectionError, TimeoutError))


def refuses_client(store: Store, exc: BaseException, probe_key: str) -> bool:
    """After ``exc`` on one object: whether the store refuses this client everything rather than that
    object (expired or rotated credentials, whose 403 a HEAD reports as AccessDenied; a bucket policy or
    the bucket's KMS key grant withdrawn): a small object written at ``probe_key`` (in the work area) and
    read back. True when that is refused too, or the store is down."""
    if unavailable(exc):
        return True
    if not isinstance(exc, S3Error) or exc.code not in REFUSED_CODES:
        return False
    uri = store.uri(probe_key)
    try:
        store.put_bytes(uri, b"callscribe: can this client read what it writes?", "text/plain")
        store.get_bytes(uri)
    except Exception as probe:
        if isinstance(probe, S3Error) or unavailable(probe):
            log.error("the object store refuses this client, not one object (%s; a probe in the work area: %s)",
                      exc.code, getattr(probe, "code", type(probe).__name__))
            return True
        raise
    try:
        store.delete(uri)
    except Exception:  # the sweep removes it
        log.warning("probe %s left in the work area", uri)
    return False


@lru_cache(maxsize=4)
def _store_for(settings: S3Settings) -> Store:
    return Store(settings)


def store(settings: S3Settings | None = None) -> Store:
    return _store_for(settings or s3_settings())
