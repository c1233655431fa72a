"""Where callscribe finds its services: Airflow connections and environment variables.

Nothing here holds a secret. Inside Airflow the connections ``callscribe_s3`` and
``callscribe_postgres`` come from any secrets backend (``AIRFLOW_CONN_*`` variables in the
simplest case). The worker container has no Airflow: it reads ``CALLSCRIBE_S3_*`` and
``CALLSCRIBE_PG_*`` variables, which Kubernetes fills from secrets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

S3_CONN_ID = os.environ.get("CALLSCRIBE_S3_CONN_ID", "callscribe_s3")
PG_CONN_ID = os.environ.get("CALLSCRIBE_PG_CONN_ID", "callscribe_postgres")

DEFAULT_SPEAKERS = ("agent", "customer")


@dataclass(frozen=True)
class S3Settings:
    endpoint: str  # host:port, no scheme
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    bucket: str = "calls"
    secure: bool = False
    region: str | None = None

    def to_env(self) -> dict[str, str]:
        """Variables a worker process reads back with :func:`s3_from_env`."""
        env = {
            "CALLSCRIBE_S3_ENDPOINT": self.endpoint,
            "CALLSCRIBE_S3_ACCESS_KEY": self.access_key,
            "CALLSCRIBE_S3_SECRET_KEY": self.secret_key,
            "CALLSCRIBE_S3_BUCKET": self.bucket,
            "CALLSCRIBE_S3_SECURE": "true" if self.secure else "false",
        }
        if self.region:
            env["CALLSCRIBE_S3_REGION"] = self.region
        return env


@dataclass(frozen=True)
class PgSettings:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str = "callscribe"

    def sqlalchemy_url(self) -> str:
        return (
            f"postgresql+psycopg2://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{self.dbname}"
        )


def _split_endpoint(url: str) -> tuple[str, bool]:
    secure = url.startswith("https://")
    host = url.split("://", 1)[-1].rstrip("/")
    return host, secure


def s3_from_connection(conn: Any) -> S3Settings:
    extra = conn.extra_dejson or {}
    endpoint_url = extra.get("endpoint_url") or (f"http://{conn.host}:{conn.port}" if conn.host else None)
    if not endpoint_url:
        raise ValueError(f"connection {conn.conn_id!r} has no endpoint_url in its extra and no host")
    endpoint, secure = _split_endpoint(endpoint_url)
    return S3Settings(
        endpoint=endpoint,
        access_key=conn.login or "",
        secret_key=conn.password or "",
        bucket=extra.get("bucket", "calls"),
        secure=secure,
        region=extra.get("region_name"),
    )


def pg_from_connection(conn: Any) -> PgSettings:
    return PgSettings(
        host=conn.host or "127.0.0.1",
        port=int(conn.port or 5432),
        user=conn.login or "",
        password=conn.password or "",
        dbname=conn.schema or "callscribe",
    )


@dataclass(frozen=True)
class _JsonConnection:
    conn_id: str
    host: str | None = None
    port: int | None = None
    login: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra_dejson: dict = field(default_factory=dict)


def connection(conn_id: str) -> Any:
    """An Airflow connection by id.

    A JSON ``AIRFLOW_CONN_<ID>`` variable is read directly so the CLI and tests need not
    import Airflow; anything else (URI form, secrets backends) goes through Airflow.
    """
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}", "")
    if raw.lstrip().startswith("{"):
        d = json.loads(raw)
        extra = d.get("extra") or {}
        return _JsonConnection(
            conn_id=conn_id,
            host=d.get("host"),
            port=d.get("port"),
            login=d.get("login"),
            password=d.get("password"),
            schema=d.get("schema"),
            extra_dejson=json.loads(extra) if isinstance(extra, str) else extra,
        )
    from airflow.sdk import Connection

    return Connection.get(conn_id)


def s3_settings() -> S3Settings:
    if os.environ.get("CALLSCRIBE_S3_ENDPOINT"):
        return s3_from_env()
    return s3_from_connection(connection(S3_CONN_ID))


def s3_from_env() -> S3Settings:
    try:
        return S3Settings(
            endpoint=os.environ["CALLSCRIBE_S3_ENDPOINT"],
            access_key=os.environ["CALLSCRIBE_S3_ACCESS_KEY"],
            secret_key=os.environ["CALLSCRIBE_S3_SECRET_KEY"],
            bucket=os.environ.get("CALLSCRIBE_S3_BUCKET", "calls"),
            secure=os.environ.get("CALLSCRIBE_S3_SECURE", "false").lower() == "true",
            region=os.environ.get("CALLSCRIBE_S3_REGION"),
        )
    except KeyError as missing:
        raise RuntimeError(f"object store settings incomplete: {missing.args[0]} is not set") from None


def pg_settings() -> PgSettings:
    if os.environ.get("CALLSCRIBE_PG_HOST"):
        return PgSettings(
            host=os.environ["CALLSCRIBE_PG_HOST"],
            port=int(os.environ.get("CALLSCRIBE_PG_PORT", "5432")),
            user=os.environ["CALLSCRIBE_PG_USER"],
            password=os.environ.get("CALLSCRIBE_PG_PASSWORD", ""),
            dbname=os.environ.get("CALLSCRIBE_PG_DB", "callscribe"),
        )
    return pg_from_connection(connection(PG_CONN_ID))


def channel_speakers() -> tuple[str, ...]:
    """Speaker label per channel for multi-channel calls (CALLSCRIBE_CHANNEL_SPEAKERS=agent,customer)."""
    raw = os.environ.get("CALLSCRIBE_CHANNEL_SPEAKERS")
    return tuple(s.strip() for s in raw.split(",")) if raw else DEFAULT_SPEAKERS


def speaker_for(channel: int, n_channels: int, speakers: tuple[str, ...] | None = None) -> str:
    if n_channels == 1:
        return "mixed"
    names = speakers or channel_speakers()
    return names[channel] if channel < len(names) else f"channel{channel}"
