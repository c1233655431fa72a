"""Where callscribe finds its services: Airflow connections and environment variables.

Nothing here holds a secret. Inside Airflow the connections ``callscribe_s3`` (type ``aws``)
and ``callscribe_postgres`` (type ``postgres``) come from any secrets backend; an
``AIRFLOW_CONN_*`` variable (JSON or URI form) is read here directly, so the CLI needs no
Airflow. A connection's extras mean what they mean to the Amazon and Postgres providers
(docs/connections.md). The worker container has no Airflow: it reads ``CALLSCRIBE_S3_*``
variables, which Kubernetes fills from a secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

S3_CONN_ID = os.environ.get("CALLSCRIBE_S3_CONN_ID", "callscribe_s3")
PG_CONN_ID = os.environ.get("CALLSCRIBE_PG_CONN_ID", "callscribe_postgres")

DEFAULT_SPEAKERS = ("agent", "customer")
# The pipeline's own area of the bucket (packs, manifests, shards, notes).
WORK_PREFIX = "_callscribe"
# Where each erasure leaves a note of itself (the key's hash, never the key): outside the work
# area, so neither the sweep nor a lifecycle rule on `_callscribe/` removes it. The bucket is not
# restored with the database, so these notes outlive a restore that takes erasures back.
ERASURE_NOTES_PREFIX = "_callscribe_erasures"


def key_hash(key: str) -> str:
    """How erasures name an object: the SHA-256 of its key, so the key itself is not kept. Here, not in
    audit, so that erasure (which discovery calls) needs nothing that imports discovery."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def run_key(run_id: str) -> str:
    """A run id made safe for object keys."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


def run_area(run_id: str) -> str:
    """The key prefix of a run's files in the work area (packs, manifests, shards, notes)."""
    return f"{WORK_PREFIX}/runs/{run_key(run_id)}/"


def day_zone() -> ZoneInfo:
    """The time zone the bucket's day folders (``YYYY/MM/DD``) are named in: the DAG's runs
    start at its midnight and every stage reads a run's day in it. ``CALLSCRIBE_TIMEZONE``
    (an IANA name such as ``America/New_York``), UTC unless set. The scheduler and every
    worker must have the same value: the scheduler fixes the runs' logical dates with it and
    the tasks read the days from them."""
    name = os.environ.get("CALLSCRIBE_TIMEZONE", "").strip() or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # ValueError: a path-like name
        raise ValueError(f"CALLSCRIBE_TIMEZONE={name!r} is not an IANA time zone name "
                         "(such as Europe/Berlin or America/New_York)") from exc

COPY_WINDOW_DAYS = 7


def copy_window_days() -> int:
    """How many days apart two keys of one content may be and still be one call
    (``CALLSCRIBE_COPY_WINDOW_DAYS``, default 7; 0 matches copies on the same day only). An export
    re-run that drops yesterday's calls into today's folder repeats them a day or two later; the
    same bytes months apart are more likely a deliberate re-upload, and a bound keeps identical
    short files (the same silence, an IVR prompt) from folding a season of calls into one."""
    raw = os.environ.get("CALLSCRIBE_COPY_WINDOW_DAYS", "").strip()
    if not raw:
        return COPY_WINDOW_DAYS
    try:
        days = int(raw)
    except ValueError:
        days = -1
    if not 0 <= days <= 366:
        raise ValueError(f"CALLSCRIBE_COPY_WINDOW_DAYS={raw!r} must be a whole number of days from 0 to 366")
    return days


# ---------------------------------------------------------------- object store


@dataclass(frozen=True)
class S3Settings:
    """One bucket on one S3 endpoint, and how to authenticate and trust it.

    No keys means the default AWS credential chain (environment, shared credentials file,
    web identity / IRSA, container credentials, EC2 instance profile), as the Amazon
    provider does for a connection without login and password.
    """

    endpoint: str  # host:port, no scheme
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    bucket: str = "calls"
    secure: bool = False
    region: str | None = None
    session_token: str = field(default="", repr=False)
    ca_bundle: str | None = None  # PEM file of the CAs to trust; None: SSL_CERT_FILE, else certifi
    verify: bool = True  # False only for a test endpoint: TLS without certificate checks
    sts_endpoint: str | None = None  # web identity's STS, when not AWS's (MinIO's own STS, a VPC endpoint)

    def __post_init__(self):
        # Half a key pair would silently fall back to another identity: refuse it.
        if bool(self.access_key) != bool(self.secret_key):
            missing = "secret key" if self.access_key else "access key"
            raise ValueError(f"object store settings have a key pair without its {missing}")

    @property
    def uses_default_chain(self) -> bool:
        return not self.access_key

    def to_env(self) -> dict[str, str]:
        """Variables a worker process reads back with :func:`s3_from_env`."""
        env = {
            "CALLSCRIBE_S3_ENDPOINT": self.endpoint,
            "CALLSCRIBE_S3_BUCKET": self.bucket,
            "CALLSCRIBE_S3_SECURE": "true" if self.secure else "false",
        }
        if self.access_key:
            env["CALLSCRIBE_S3_ACCESS_KEY"] = self.access_key
            env["CALLSCRIBE_S3_SECRET_KEY"] = self.secret_key
        if self.session_token:
            env["CALLSCRIBE_S3_SESSION_TOKEN"] = self.session_token
        if self.region:
            env["CALLSCRIBE_S3_REGION"] = self.region
        if self.ca_bundle:
            env["CALLSCRIBE_S3_CA_BUNDLE"] = self.ca_bundle
        if not self.verify:
            env["CALLSCRIBE_S3_VERIFY"] = "false"
        if self.sts_endpoint:
            env["CALLSCRIBE_S3_STS_ENDPOINT"] = self.sts_endpoint
        return env


# The endpoint boto3 uses when a connection names none: AWS S3 itself.
AWS_S3_ENDPOINT = "s3.amazonaws.com"

# aws connection extras that choose another identity than the keys or the default chain;
# the minio client cannot do what the Amazon provider does with them.
_S3_UNSUPPORTED = ("role_arn", "profile_name", "assume_role_method", "assume_role_kwargs")

_FALSE = ("false", "0", "no", "off")
_TRUE = ("true", "1", "yes", "on")


def _split_endpoint(url: str) -> tuple[str, bool]:
    """'https://host:9000/' -> ('host:9000', True); a bare 'host:port' is plain HTTP."""
    secure = url.startswith("https://")
    host = url.split("://", 1)[-1].rstrip("/")
    if not host or "/" in host:
        raise ValueError(f"endpoint_url must be scheme://host[:port] without a path: {url!r}")
    return host, secure


def _host_url(host: str, port: int | None) -> str:
    """The connection's host and port as an endpoint URL: plain HTTP unless the host names its
    scheme (the URI form ``aws://https%3A%2F%2Fhost`` gives one); no port, none added."""
    url = host if "://" in host else f"http://{host}"
    return f"{url}:{port}" if port else url


def _verify_extra(value: Any) -> tuple[bool, str | None]:
    """The Amazon provider's ``verify`` extra: a boolean, or the path of a CA bundle.

    The URI form carries it as text, so 'false'/'true' are read as booleans.
    """
    if value is None or value is True:
        return True, None
    if value is False:
        return False, None
    text = str(value).strip()
    if text.lower() in _FALSE:
        return False, None
    if text.lower() in _TRUE or not text:
        return True, None
    return True, text


def _refuse(conn: Any, extra: dict, keys, why: str) -> None:
    """Extras we cannot honour fail loudly rather than fall back to another identity."""
    found = [k for k in keys if extra.get(k)]
    if found:
        raise ValueError(f"connection {conn.conn_id!r}: extra {', '.join(found)} {why}")


def s3_from_connection(conn: Any) -> S3Settings:
    """S3 settings from an ``aws`` connection (Airflow's object or :class:`ConnectionInfo`)."""
    extra = dict(conn.extra_dejson or {})
    _refuse(conn, extra, _S3_UNSUPPORTED, "is not supported; give the worker its role through the default chain "
            "instead (IRSA's AWS_ROLE_ARN, an instance profile; docs/connections.md)")
    services = extra.get("service_config") or {}
    s3_service, sts_service = services.get("s3") or {}, services.get("sts") or {}
    endpoint_url = (s3_service.get("endpoint_url") or extra.get("endpoint_url")
                    or (_host_url(conn.host, conn.port) if conn.host else None))
    endpoint, secure = _split_endpoint(endpoint_url) if endpoint_url else (AWS_S3_ENDPOINT, True)
    # Keys from login/password, else from the extra (the provider's order); none: the chain.
    if conn.login or conn.password:
        access_key, secret_key = conn.login or "", conn.password or ""
    else:
        access_key = extra.get("aws_access_key_id") or ""
        secret_key = extra.get("aws_secret_access_key") or ""
    verify, ca_bundle = _verify_extra(extra.get("verify"))
    try:
        return S3Settings(
            endpoint=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            bucket=extra.get("bucket", "calls"),
            secure=secure,
            region=extra.get("region_name") or None,
            session_token=extra.get("aws_session_token") or "",
            # Without a CA in the connection, botocore's variable applies, as it does for the provider.
            ca_bundle=ca_bundle or (os.environ.get("AWS_CA_BUNDLE") if verify else None) or None,
            verify=verify,
            sts_endpoint=sts_service.get("endpoint_url") or None,
        )
    except ValueError as exc:
        raise ValueError(f"connection {conn.conn_id!r}: {exc}") from None


# ---------------------------------------------------------------- database


# libpq parameters whose values are secrets: never shown by a repr.
_PG_SECRET_ARGS = frozenset({"password", "sslpassword"})
# Extras the Postgres provider keeps for its own features and never hands to the driver.
_PG_PROVIDER_ONLY = frozenset({"cursor", "sqlalchemy_scheme", "cluster-identifier", "workgroup-name", "aws_conn_id"})
# Extras that make the provider fetch a login token from a cloud; we have no such step.
_PG_TOKEN_AUTH = ("iam", "redshift", "redshift-serverless", "azure_conn_id")


@dataclass(frozen=True)
class PgSettings:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str = "callscribe"
    # libpq connection parameters (sslmode, sslrootcert, connect_timeout, ...), sorted pairs
    # so the settings stay hashable; they go to the driver, never into the URL.
    options: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _PG_SECRET_ARGS else v) for k, v in self.options}
        return (f"PgSettings(host={self.host!r}, port={self.port!r}, user={self.user!r}, "
                f"dbname={self.dbname!r}, options={shown!r})")

    def sqlalchemy_url(self) -> str:
        return (
            f"postgresql+psycopg2://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{self.dbname}"
        )

    def connect_args(self) -> dict[str, str]:
        """Keyword arguments for ``psycopg2.connect`` beyond host, port, user, password, dbname."""
        return dict(self.options)


def _libpq_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"  # libpq's integer switches (keepalives, ...)
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"extra {key!r} must be a string or a number for the driver, not {type(value).__name__}")


def pg_from_connection(conn: Any) -> PgSettings:
    """Postgres settings from a ``postgres`` connection, extras as the Postgres provider reads them.

    Every extra except the provider's own switches is a libpq connection parameter
    (``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``, ``connect_timeout``, ``options``,
    ...); ``sqlalchemy_query`` adds more of them, as it does on the provider's engine.
    """
    extra = dict(conn.extra_dejson or {})
    _refuse(conn, extra, _PG_TOKEN_AUTH, "(cloud token login) is not supported; use a password, or client "
            "certificates (sslcert/sslkey)")
    query = extra.pop("sqlalchemy_query", None) or {}
    if not isinstance(query, dict):
        raise ValueError(f"connection {conn.conn_id!r}: extra sqlalchemy_query must be an object")
    args = {}
    for key, value in {**extra, **query}.items():
        if key in _PG_PROVIDER_ONLY or key in _PG_TOKEN_AUTH:
            continue
        try:
            args[key] = _libpq_value(key, value)
        except ValueError as exc:
            raise ValueError(f"connection {conn.conn_id!r}: {exc}") from None
    return PgSettings(
        host=conn.host or "127.0.0.1",
        port=int(conn.port or 5432),
        user=conn.login or "",
        password=conn.password or "",
        dbname=conn.schema or "callscribe",
        options=tuple(sorted(args.items())),
    )


# ---------------------------------------------------------------- connections


@dataclass(frozen=True)
class ConnectionInfo:
    """The fields of an Airflow connection that callscribe reads, without Airflow."""

    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    port: int | None = None
    login: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    # Extras may hold secrets too (aws_secret_access_key, sslpassword).
    extra_dejson: dict = field(default_factory=dict, repr=False)


def _normalize_conn_type(conn_type: str | None) -> str | None:
    # Airflow's own rule: 'postgresql' is 'postgres', hyphens become underscores.
    if not conn_type:
        return conn_type
    return "postgres" if conn_type == "postgresql" else conn_type.replace("-", "_")


def _extra_dict(value: Any) -> dict:
    if not value:
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


def connection_from_json(conn_id: str, raw: str) -> ConnectionInfo:
    d = json.loads(raw)
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=_normalize_conn_type(d.get("conn_type")),
        host=d.get("host"),
        port=int(d["port"]) if d.get("port") else None,
        login=d.get("login"),
        password=d.get("password"),
        schema=d.get("schema"),
        extra_dejson=_extra_dict(d.get("extra")),
    )


def connection_from_uri(conn_id: str, uri: str) -> ConnectionInfo:
    """An Airflow connection URI: ``type://login:password@host:port/schema?extra``.

    Query parameters are the extras (all text), or one ``__extra__`` parameter holding
    them as JSON; login, password and schema are percent-decoded, as Airflow does.
    """
    conn_type, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"connection {conn_id!r} is neither JSON nor a URI")
    protocol = None
    if "://" in rest:  # a host with its own scheme, as in aws://https%3A%2F%2F... written out
        protocol, _, rest = rest.partition("://")
    parts = urlsplit("//" + rest)
    host = unquote(parts.hostname or "") or None
    if host and protocol:
        host = f"{protocol}://{host}"
    extra: dict = {}
    if parts.query:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = json.loads(query["__extra__"]) if "__extra__" in query else query
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=_normalize_conn_type(conn_type),
        host=host,
        port=parts.port,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=unquote(parts.path[1:]) or None,
        extra_dejson=extra,
    )


def connection(conn_id: str) -> Any:
    """An Airflow connection by id.

    An ``AIRFLOW_CONN_<ID>`` variable (JSON or URI) is read here, so the CLI and tests
    need not import Airflow; any other source (a secrets backend) goes through Airflow.
    """
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}", "").strip()
    if raw.startswith("{"):
        return connection_from_json(conn_id, raw)
    if raw:
        return connection_from_uri(conn_id, raw)
    from airflow.sdk import Connection

    return Connection.get(conn_id)


# ---------------------------------------------------------------- settings from the environment


def s3_settings() -> S3Settings:
    if os.environ.get("CALLSCRIBE_S3_ENDPOINT"):
        return s3_from_env()
    return s3_from_connection(connection(S3_CONN_ID))


def s3_from_env() -> S3Settings:
    """The worker's settings: what :meth:`S3Settings.to_env` wrote, or a Kubernetes secret.

    No keys means the default AWS credential chain (IRSA, instance profile, ...).
    """
    env = os.environ
    if not env.get("CALLSCRIBE_S3_ENDPOINT"):
        raise RuntimeError("object store settings incomplete: CALLSCRIBE_S3_ENDPOINT is not set")
    access_key = env.get("CALLSCRIBE_S3_ACCESS_KEY", "")
    secret_key = env.get("CALLSCRIBE_S3_SECRET_KEY", "")
    if bool(access_key) != bool(secret_key):
        missing = "CALLSCRIBE_S3_SECRET_KEY" if access_key else "CALLSCRIBE_S3_ACCESS_KEY"
        raise RuntimeError(f"object store settings incomplete: {missing} is not set "
                           "(set both keys, or neither to use the default AWS credential chain)")
    verify = env.get("CALLSCRIBE_S3_VERIFY", "true").strip().lower() not in _FALSE
    return S3Settings(
        endpoint=env["CALLSCRIBE_S3_ENDPOINT"],
        access_key=access_key,
        secret_key=secret_key,
        bucket=env.get("CALLSCRIBE_S3_BUCKET", "calls"),
        secure=env.get("CALLSCRIBE_S3_SECURE", "false").lower() == "true",
        region=env.get("CALLSCRIBE_S3_REGION") or None,
        session_token=env.get("CALLSCRIBE_S3_SESSION_TOKEN", ""),
        ca_bundle=(env.get("CALLSCRIBE_S3_CA_BUNDLE") or (env.get("AWS_CA_BUNDLE") if verify else None)) or None,
        verify=verify,
        sts_endpoint=env.get("CALLSCRIBE_S3_STS_ENDPOINT") or None,
    )


def pg_settings() -> PgSettings:
    """The database settings; TLS and other libpq options come from the connection's extras
    (or, with the CALLSCRIBE_PG_* form, from libpq's own PGSSLMODE, PGSSLROOTCERT, ...)."""
    if os.environ.get("CALLSCRIBE_PG_HOST"):
        if not os.environ.get("CALLSCRIBE_PG_USER"):
            raise RuntimeError("database settings incomplete: CALLSCRIBE_PG_HOST is set, CALLSCRIBE_PG_USER is not")
        return PgSettings(
            host=os.environ["CALLSCRIBE_PG_HOST"],
            port=int(os.environ.get("CALLSCRIBE_PG_PORT", "5432")),
            user=os.environ["CALLSCRIBE_PG_USER"],
            password=os.environ.get("CALLSCRIBE_PG_PASSWORD", ""),
            dbname=os.environ.get("CALLSCRIBE_PG_DB", "callscribe"),
        )
    return pg_from_connection(connection(PG_CONN_ID))


ANALYST_CONN_ID = "callscribe_analyst"


def analyst_pg_settings() -> PgSettings:
    """The search page's database login: a ``postgres`` connection (``callscribe_analyst``, or the id
    in CALLSCRIBE_ANALYST_CONN_ID) whose login is a member of the read-only role callscribe_analyst.

    There is no fallback to the pipeline owner's connection: without it the page serves nothing.
    """
    return pg_from_connection(connection(os.environ.get("CALLSCRIBE_ANALYST_CONN_ID", ANALYST_CONN_ID)))


# ---------------------------------------------------------------- speakers


def channel_speakers() -> tuple[str, ...]:
    """Speaker label per channel for multi-channel calls (CALLSCRIBE_CHANNEL_SPEAKERS=agent,customer)."""
    raw = os.environ.get("CALLSCRIBE_CHANNEL_SPEAKERS")
    return tuple(s.strip() for s in raw.split(",")) if raw else DEFAULT_SPEAKERS


def speaker_for(channel: int, n_channels: int, speakers: tuple[str, ...] | None = None) -> str:
    if n_channels == 1:
        return "mixed"
    names = speakers or channel_speakers()
    return names[channel] if channel < len(names) else f"channel{channel}"


# Mono recordings: who speaks when is found by callscribe.diarization when CALLSCRIBE_DIARIZE
# is on (DIARIZE_DEFAULT otherwise; off: mono calls are "mixed"). Speakers are speaker_1, speaker_2, ... in
# the order they first speak; a two-party call whose upload metadata says who speaks first
# (x-amz-meta-first-speaker: agent or customer) gets agent/customer instead.
FIRST_SPEAKER_KEYS = ("first-speaker", "first_speaker")
# What the chunker adds to a recording's metadata of its own, kept when the upload's is fixed.
CHUNKER_METADATA = ("decode_warning",)
SPEAKERS_KEYS = ("speakers",)  # x-amz-meta-speakers: how many voices to look for (default 2)
DEFAULT_MONO_SPEAKERS = 2
DIARIZE_DEFAULT = True


def diarize_mono() -> bool:
    """Whether mono recordings are diarized (CALLSCRIBE_DIARIZE=1/0; DIARIZE_DEFAULT when unset)."""
    raw = os.environ.get("CALLSCRIBE_DIARIZE", "").strip().lower()
    return raw in _TRUE if raw else DIARIZE_DEFAULT


def _meta_value(meta: dict | None, keys: tuple[str, ...]) -> str:
    for k in keys:
        if meta and meta.get(k):
            return str(meta[k]).strip().lower()
    return ""


# An agent-id longer than this is not an agent's id (a token or a blob an exporter put there): the
# agent is indexed, and a B-tree entry holds 2,704 bytes at most, so Postgres would refuse the call.
AGENT_ID_MAX_CHARS = 256


def agent_id(meta: dict | None) -> str | None:
    """The call's agent: the upload's ``agent-id`` metadata, unless too long to be one (None then;
    the metadata keeps it as it came)."""
    value = (meta or {}).get("agent-id")
    if value is not None and len(value) > AGENT_ID_MAX_CHARS:
        log.warning("agent-id metadata of %d characters is not taken as the call's agent (at most %d)",
                    len(value), AGENT_ID_MAX_CHARS)
        return None
    return value


def speakers_hint(meta: dict | None = None) -> int:
    """How many voices to look for on a mono call: the upload's ``speakers`` metadata (1-8), else 2."""
    raw = _meta_value(meta, SPEAKERS_KEYS)
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 8 else DEFAULT_MONO_SPEAKERS


def first_speaker(meta: dict | None = None) -> str:
    """Who the upload's metadata says speaks first on a mono call ("agent", "customer"), or ""."""
    return _meta_value(meta, FIRST_SPEAKER_KEYS)


def diarized_speaker(speaker: int, n_speakers: int, meta: dict | None = None,
                     hint: int = DEFAULT_MONO_SPEAKERS) -> str:
    """The label of a mono call's ``speaker`` (0 speaks first) among ``n_speakers`` found.

    Neutral (speaker_1, speaker_2, ...) unless the call has exactly two speakers, as a call
    has, and its metadata names the first: ``first-speaker`` = agent or customer. One voice
    found where ``hint`` voices were looked for is ``mixed``, as before diarization: two
    similar voices look like one, so the label must not claim a single speaker.
    """
    if n_speakers == 1 and hint > 1:
        return "mixed"
    first = first_speaker(meta)
    if n_speakers == 2 and first in DEFAULT_SPEAKERS:
        other = next(s for s in DEFAULT_SPEAKERS if s != first)
        return (first, other)[speaker]
    return f"speaker_{speaker + 1}"


# How long the work area's intermediates live (callscribe.retention, the maintenance DAG).
DEFAULT_RETENTION_DAYS = float(os.environ.get("CALLSCRIBE_WORK_RETENTION_DAYS", 14))
# The transcription DAG's run timeout: a shorter retention would leave a just-finished run
# nothing to clear a task against.
MIN_RETENTION_DAYS = 0.5


def load_parallel() -> int:
    """How many shards a load task loads at once, each in its own transaction and session
    (CALLSCRIBE_LOAD_PARALLEL, 1-4, within the engine's pool; default 2): the database works on one shard's search
    vectors and indexes while the loader redacts the next."""
    raw = os.environ.get("CALLSCRIBE_LOAD_PARALLEL", "").strip()
    return min(max(int(raw), 1), 4) if raw.isdigit() else 2


def pack_format(requested: str | None = None) -> str:
    """The speech packs' format: ``requested``, else CALLSCRIBE_PACK_FORMAT (wav, the default, or
    flac; see audio.PACK_FORMATS). A value it does not know is refused rather than guessed at."""
    from callscribe.audio import PACK_FORMATS

    raw = (requested or os.environ.get("CALLSCRIBE_PACK_FORMAT", "")).strip().lower() or PACK_FORMATS[0]
    if raw not in PACK_FORMATS:
        raise ValueError(f"CALLSCRIBE_PACK_FORMAT={raw!r}: use one of {', '.join(PACK_FORMATS)}")
    return raw
