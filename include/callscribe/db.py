"""Postgres access: engines, migrations (Alembic), named SQL files and COPY."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from callscribe.config import PgSettings, analyst_pg_settings, pg_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "callscribe_alembic_version"
MIGRATE_HOW = ("`callscribe migrate` (or python -c \"from callscribe import db; db.migrate(db.engine_from_env())\"), "
               "as a user allowed to create roles and extensions")
# Serialises concurrent `migrate` calls (several tasks may start at once).
_MIGRATION_LOCK_ID = 0x63616C6C
# How long a migration waits for a lock before it gives up, the whole upgrade rolled back
# (migrations/env.py sets it): a table a running load, or an analyst's open transaction, holds would
# otherwise be waited for as long as that takes, with every later query on the table (the analysts'
# search too) queued behind the migration's lock.
MIGRATION_LOCK_TIMEOUT = "15s"
# The sessions named when a migration gives up: enough to find the culprit, not a page of them.
_HOLDERS_NAMED = 10
log = logging.getLogger(__name__)


def unavailable(exc: BaseException) -> bool:
    """True when the database could not be reached or dropped the connection (a restart, a
    failover): an outage, worth a retry of the task, never a recording's fault. Not a limit the
    data exceeds (SQLSTATE class 54, which psycopg2 also raises as an OperationalError: an index
    row too large), which would refuse the same row on every retry."""
    if isinstance(exc, sa.exc.DBAPIError) and str(getattr(exc.orig, "pgcode", None) or "").startswith("54"):
        return False
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)


# Engines kept, most recently used last. One pushed out is disposed: its pool's idle connections
# would otherwise stay open on the server until the garbage collector freed the engine (never,
# while a caller still held it). functools.lru_cache gives no hook on eviction.
ENGINE_CACHE_SIZE = 8
_EngineKey = tuple[str, tuple[tuple[str, str], ...]]
_engines: OrderedDict[_EngineKey, Engine] = OrderedDict()
_engines_lock = threading.Lock()


def engine_for(url: str, connect_args: tuple[tuple[str, str], ...] = ()) -> Engine:
    """One pooled engine per URL and driver options (libpq parameters such as sslmode and
    sslrootcert: passed to psycopg2.connect, kept out of the URL so none is ever rendered)."""
    key = (url, connect_args)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is not None:
            _engines.move_to_end(key)
            return engine
        engine = sa.create_engine(url, connect_args=dict(connect_args), pool_pre_ping=True, pool_size=2,
                                  max_overflow=4, future=True)
        _engines[key] = engine
        evicted = [_engines.popitem(last=False)[1] for _ in range(len(_engines) - ENGINE_CACHE_SIZE)]
    for old in evicted:
        _dispose_evicted(old)
    return engine


def _dispose_evicted(engine: Engine) -> None:
    """Close an evicted engine's idle connections now (what a holder has checked out stays open until
    returned and its old pool is collected); a caller that keeps using the engine gets a fresh pool."""
    try:
        engine.dispose()
    except Exception as exc:  # closing is a courtesy to the server: never the caller's failure
        log.warning("an engine pushed out of the cache could not be disposed: %s", type(exc).__name__)


def engine_from_settings(pg: PgSettings) -> Engine:
    return engine_for(pg.sqlalchemy_url(), pg.options)


def engine_from_env() -> Engine:
    return engine_from_settings(pg_settings())


def analyst_engine() -> Engine:
    """An engine on the analysts' login (connection ``callscribe_analyst``): what the search page
    queries with, so it sees only the ``analytics`` schema, as analysts do."""
    return engine_from_settings(analyst_pg_settings())


@cache
def sql(name: str) -> str:
    """The text of include/callscribe/sql/<name>.sql."""
    return resources.files("callscribe").joinpath("sql", f"{name}.sql").read_text()


def q(name: str) -> sa.TextClause:
    return sa.text(sql(name))


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


class SchemaBehind(RuntimeError):
    """The database's schema lacks migrations this code needs: deployed before they were run."""


@cache
def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


def head_revision() -> str:
    """The newest migration this code ships (and needs)."""
    return _scripts().get_current_head()


def previous_revision(revision: str) -> str | None:
    return _scripts().get_revision(revision).down_revision


def schema_revision(engine: Engine) -> str | None:
    """The migration the database was last brought to; None when it never was (alembic reads
    the version table and answers None when there is none)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def analyst_revision(engine: Engine) -> str | None:
    """:func:`schema_revision` through the analysts' login, which may read the version table since
    0019: a login refused it reads a schema from before that (SchemaBehind)."""
    try:
        with engine.connect() as conn:
            # Qualified: a DBA may give the analysts' login a search_path without public (`analytics`,
            # so that BI users write FROM calls), and the bare name then read as "never migrated".
            return conn.execute(sa.text(f"SELECT version_num FROM public.{VERSION_TABLE}")).scalar()
    except sa.exc.ProgrammingError as exc:
        code = getattr(exc.orig, "pgcode", None)
        if code == "42P01":  # undefined_table: never migrated
            return None
        if code == "42501":  # insufficient_privilege
            # Or the grant 0019 gives was revoked since: the message names both.
            raise SchemaBehind(f"the analysts' login may not read {VERSION_TABLE}: the database's callscribe "
                               f"schema is from before 0019 (this code needs {head_revision()}; run the "
                               f"migrations: {MIGRATE_HOW}), or that login's SELECT on it was revoked "
                               f"(grant it again)") from None
        raise


def require_schema(engine: Engine) -> Engine:
    """``engine``, once its schema is known to have every migration this code ships.

    Deploying the code before running its migrations would let a run register and chunk a
    day, then fail on a missing column half-way through (or worse, run on without a column's
    safeguard): a run refuses at its first task instead, naming what to run. A schema newer
    than the code is the documented order of an upgrade (migrate, then deploy), so that only
    warns."""
    check_revision(schema_revision(engine))
    return engine


def check_revision(at: str | None) -> None:
    """Raise SchemaBehind unless a schema at revision ``at`` has every migration this code ships."""
    head = head_revision()
    if at == head:
        return
    if at is None:
        raise SchemaBehind(f"the database has no callscribe schema (no {VERSION_TABLE} table); "
                           f"create it first: {MIGRATE_HOW}")
    from alembic.util import CommandError

    scripts = _scripts()
    try:
        scripts.get_revision(at)
    except CommandError:  # a revision this code does not ship
        _warn_ahead(at, head)
        return
    missing = [s.revision for s in reversed(list(scripts.iterate_revisions(head, at)))]
    raise SchemaBehind(f"the database's callscribe schema is at revision {at} and this code needs {head} "
                       f"(missing {', '.join(missing)}): run the migrations, then clear the task: {MIGRATE_HOW}")


@cache
def _warn_ahead(at: str, head: str) -> None:  # once a process: the search page checks every request
    log.warning("the database's callscribe schema is at revision %s, newer than this code (%s): "
                "deploy the code that migrated it", at, head)


def checked_engine() -> Engine:
    """The pipeline's engine (:func:`engine_from_env`) after :func:`require_schema`: what tasks
    and commands that read or write the schema start with."""
    return require_schema(engine_from_env())


class MigrationBlocked(RuntimeError):
    """A migration gave up waiting for a lock that other sessions hold; nothing was changed."""


def migrate(engine: Engine, revision: str = "head", lock_timeout: str | None = None) -> None:
    """Upgrade to ``revision``; MigrationBlocked, with nothing changed, when a lock stays taken for
    longer than ``lock_timeout`` (MIGRATION_LOCK_TIMEOUT)."""
    from alembic import command

    wait = lock_timeout or MIGRATION_LOCK_TIMEOUT
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            cfg.attributes["lock_timeout"] = wait
            command.upgrade(cfg, revision)
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) != "55P03":  # lock_not_available
            raise
        raise MigrationBlocked(_blocked_message(engine, wait)) from exc
    # Database-level settings from migrations apply to new sessions only.
    engine.dispose()


def _blocked_message(engine: Engine, wait: str) -> str:
    """What a migration that gave up on a lock tells the operator: the sessions holding callscribe's
    tables (read just after: the one it waited for is among them unless it ended meanwhile). An
    analyst's BI tool or notebook left ``idle in transaction`` is the usual one: nothing but its
    end (or idle_in_transaction_session_timeout on its login, docs/deploy.md) lets a migration in."""
    head = (f"the migration gave up after waiting {wait} for a lock (lock timeout); nothing was changed: "
            f"run it again once the sessions holding callscribe's tables are done")
    try:
        with engine.connect() as conn:
            rows = conn.execute(q("migrate_lock_holders"), {"n": _HOLDERS_NAMED + 1}).all()
    except Exception as exc:  # the reason stands without the names
        return f"{head} (they could not be listed: {type(exc).__name__})"
    if not rows:
        return f"{head} (none holds one now: run it again)"
    named = "; ".join(
        f"pid {r.pid} {r.usename or '?'}"
        + (f" (application {r.application_name!r})" if r.application_name else "")
        + (f", {r.state} since {r.xact_start:%Y-%m-%d %H:%M:%S %Z}" if r.state and r.xact_start
           else ", state hidden (grant pg_read_all_stats to this login to see it)")
        + f", on {r.tables}"
        for r in rows[:_HOLDERS_NAMED])
    more = " and more" if len(rows) > _HOLDERS_NAMED else ""
    return (f"{head}: {named}{more}. Wait for them, or end one with SELECT pg_terminate_backend(pid) "
            f"(an analyst's session left idle in transaction holds its tables until it ends)")


def set_analyst_password(engine: Engine, password: str, user: str = "analyst") -> None:
    """Development helper: a login user in the read-only analyst role, which the search page
    also uses (so it may append to the access log)."""
    with engine.begin() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :u"), {"u": user}).first()
        verb = "ALTER" if exists else "CREATE"
        pw = conn.exec_driver_sql("SELECT quote_literal(%(p)s)", {"p": password}).scalar_one()
        conn.exec_driver_sql(f'{verb} ROLE "{user}" LOGIN PASSWORD {pw}')
        conn.exec_driver_sql(f'GRANT callscribe_analyst TO "{user}"')
        conn.exec_driver_sql(f'GRANT callscribe_access_writer TO "{user}"')


# COPY's text format: a field's backslash, tab, newline and carriage return are escaped; \N
# alone is NULL (so a text that is exactly "\N" is sent as "\\N" and stays text).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    text = value if type(value) is str else str(value)
    # Four scans in C are cheaper than a translate on the (usual) text with nothing to escape.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


class _CopyStream:
    """Rows as COPY text, made as the server asks for more: the caller's work on the next rows
    overlaps the server's on the last ones, and the whole text is never held in memory. (The
    text format, not CSV: the csv module's writer cost about twice as much client CPU.) An
    exception while making rows is kept, for copy_rows to raise as itself (psycopg2 would report
    it as a cancelled COPY)."""

    def __init__(self, rows: Iterator[Sequence[Any]], batch: int = 512) -> None:
        self._rows, self._batch, self.count = rows, batch, 0
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> str:
        lines = []
        try:
            for row in itertools.islice(self._rows, self._batch):
                lines.append("\t".join([_copy_field(v) for v in row]))
        except BaseException as exc:
            self.error = exc
            raise
        self.count += len(lines)
        return "\n".join(lines) + "\n" if lines else ""


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY rows into ``table`` (text format through psycopg2, streamed); returns the row count."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return 0
    stream = _CopyStream(itertools.chain([first], rows))
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cur:
            cur.copy_expert(
                f"COPY {table} ({', '.join(columns)}) FROM STDIN", stream, size=1 << 16
            )
    except Exception as exc:
        if stream.error is not None:
            raise stream.error from exc
        raise
    return stream.count
