"""Review: the analysts' own sessions and a DBA's settings on their logins, against the page and the
pipeline in the same PostgreSQL.

A DBA gives a login its settings with ``ALTER ROLE ... SET`` (docs/deploy.md tells them to, for
poolers): a ``search_path`` so that BI users can write ``FROM calls``, ``default_transaction_read_only``
as a belt over the grants, a ``statement_timeout`` against 20-minute queries. Each login here is made
for its test, so the settings apply to its first server connection (through PgBouncer too)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from callscribe import access, db
from callscribe.search import SearchFilters, search
from callscribe.search_page import create_app
from tests.integration.helpers import load_call

pytestmark = pytest.mark.integration

DAY = date(2041, 9, 3)
SEGS = [(0, "agent", 0.5, 4.0, "Thank you for calling Globex, this is Marguerite speaking."),
        (1, "customer", 5.0, 9.0, "I want a refund for the broken kettle please.")]


@pytest.fixture(scope="module")
def call(pg, s3) -> int:
    return load_call(pg, s3, "calls/2041/09/03/review4-sessions.wav", DAY, SEGS)


@contextmanager
def page_login(pg, monkeypatch, name: str, settings: dict[str, str]) -> Iterator[sa.Engine]:
    """A login like the page's (an analyst that may append to the access log) with the DBA's
    ``settings`` on it, which the page then queries with."""
    from callscribe.config import pg_settings

    password = secrets.token_urlsafe(12)
    with pg.begin() as c:
        c.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        c.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' "
                          "IN ROLE callscribe_analyst, callscribe_access_writer")
        for key, value in settings.items():
            c.exec_driver_sql(f"ALTER ROLE {name} SET {key} = {value}")
    s = pg_settings()
    engine = sa.create_engine(sa.engine.URL.create("postgresql+psycopg2", username=name, password=password,
                                                   host=s.host, port=s.port, database=s.dbname))
    monkeypatch.setattr(db, "analyst_engine", lambda: engine)
    try:
        yield engine
    finally:
        engine.dispose()
        with pg.begin() as c:
            c.exec_driver_sql(f"DROP ROLE {name}")


def _logged(pg, actor: str = "local") -> int:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM access_log WHERE action = 'search' AND detail LIKE "
                                 "'%kettle%' AND db_user LIKE 'review4%'")).scalar_one()


def test_a_search_path_on_the_pages_login_leaves_the_page_and_similar_words_working(pg, call, monkeypatch):
    """A DBA sets ``search_path = analytics`` on the analysts' login (their BI users then write
    ``FROM calls``). The page must still find the schema's revision (it read an unqualified version
    table: every request answered 503 "not yet migrated"), and similar-word search must still find
    pg_trgm's functions and operators (in public: "function word_similarity does not exist")."""
    with page_login(pg, monkeypatch, "review4_path", {"search_path": "analytics"}) as engine:
        days = SearchFilters(from_date=DAY, to_date=DAY, recent_days=None)
        assert db.analyst_revision(engine) == db.head_revision()
        hits = search(engine, "kettel refnud", filters=SearchFilters(from_date=DAY, to_date=DAY, recent_days=None,
                                                                      fuzzy=True))
        assert [h["match"] for h in hits] == ["fuzzy"]
        assert search(engine, "Margeurite", filters=days)  # the automatic fallback to similar words
        got = TestClient(create_app(require_login=False)).get(
            "/api/search", params={"q": "kettle", "from": DAY.isoformat(), "to": DAY.isoformat()})
        assert got.status_code == 200, got.text
        assert [h["key"] for h in got.json()["hits"]] == ["calls/2041/09/03/review4-sessions.wav"]


def test_a_read_only_default_on_the_pages_login_still_logs_and_serves(pg, call, monkeypatch):
    """A DBA sets ``default_transaction_read_only = on`` on the analysts' login, belt and braces over
    the grants. The page must still append to the access log (its one write, through
    analytics.log_access) and serve: it answered 500 on every search, play and export."""
    before = _logged(pg)
    with page_login(pg, monkeypatch, "review4_ro", {"default_transaction_read_only": "on"}) as engine:
        client = TestClient(create_app(require_login=False))
        got = client.get("/api/search", params={"q": "kettle", "from": DAY.isoformat(), "to": DAY.isoformat()})
        assert got.status_code == 200, got.text
        assert _logged(pg) == before + 1
        assert access.log_call_access(engine, "local", "export", "format txt", call)
        with engine.connect() as c:  # the default still holds for everything else the login does
            assert c.execute(sa.text("SHOW transaction_read_only")).scalar_one() == "on"


@pytest.mark.parametrize("limit", ["statement_timeout", "lock_timeout"])
def test_a_search_the_logins_time_limit_cancels_says_so(pg, call, monkeypatch, limit):
    """A DBA sets ``statement_timeout`` (or ``lock_timeout``) on the analysts' login against
    20-minute queries; a broad search (every day, similar words) runs past it. The page answered 500
    ("Search failed (500)", a traceback in the API server's log); it must say the search was cut
    short by the database's limit, and what to do, as a 503 the page shows. Here the search is held
    up by a table lock for as long as the limit (the same cancellation as a slow plan, without one)."""
    month = f"segments_y{DAY:%Y}m{DAY:%m}"
    with page_login(pg, monkeypatch, "review4_timeout", {limit: "'1s'"}):
        client = TestClient(create_app(require_login=False), raise_server_exceptions=False)
        with pg.connect() as holder:
            holder.begin()
            holder.exec_driver_sql(f"LOCK TABLE {month} IN ACCESS EXCLUSIVE MODE")
            got = client.get("/api/search", params={"q": "kettle", "from": DAY.isoformat(), "to": DAY.isoformat()})
            holder.rollback()
        assert got.status_code == 503, got.text
        assert limit in got.json()["detail"] and "narrow" in got.json()["detail"]
        assert client.get("/api/search", params={"q": "kettle", "from": DAY.isoformat(),
                                                 "to": DAY.isoformat()}).status_code == 200


def test_a_search_an_administrator_cancels_is_told_apart_from_the_logins_time_limit(pg, call, monkeypatch):
    """A DBA cancels a runaway search (pg_cancel_backend) long before the login's statement_timeout:
    the same SQLSTATE as the limit (57014). The page must not tell the analyst the search ran past the
    limit, and it must tell them apart by the time the search ran, not by the server's English text
    (lc_messages set to another language changes it)."""
    month = f"segments_y{DAY:%Y}m{DAY:%m}"
    with page_login(pg, monkeypatch, "review4_cancelled", {"statement_timeout": "'60s'"}) as login:
        client = TestClient(create_app(require_login=False), raise_server_exceptions=False)
        with pg.connect() as holder:
            holder.begin()
            holder.exec_driver_sql(f"LOCK TABLE {month} IN ACCESS EXCLUSIVE MODE")
            stop = threading.Event()

            def cancel() -> None:
                # As the login itself (a role may cancel its own sessions; pg_locks shows every session's).
                with login.connect() as dba:
                    while not stop.is_set():
                        pids = dba.execute(sa.text("SELECT pid FROM pg_locks WHERE NOT granted AND "
                                                   "relation = to_regclass(:m)"), {"m": month}).scalars().all()
                        if pids:
                            dba.execute(sa.text("SELECT pg_cancel_backend(:p)"), {"p": pids[0]})
                            return
                        time.sleep(0.05)

            canceller = threading.Thread(target=cancel)
            canceller.start()
            try:
                got = client.get("/api/search", params={"q": "kettle", "from": DAY.isoformat(), "to": DAY.isoformat()})
            finally:
                stop.set()
                canceller.join()
                holder.rollback()
        assert got.status_code == 503, got.text
        detail = got.json()["detail"]
        assert "cancelled in the database" in detail and "statement_timeout" not in detail, detail


def test_a_migration_held_off_by_an_analysts_idle_transaction_names_the_session_and_changes_nothing(pg, monkeypatch):
    """A BI tool left an analyst's transaction open (``idle in transaction``) after a look at the
    runs: it holds analytics.pipeline_runs, which 0023 must replace. The migration gives up after its
    lock_timeout (test_migration_locks.py proves that for a load): its error said only "canceling
    statement due to lock timeout", and the operator at the deploy had to find out who. It must name
    the session (pid, login, application, its state) and say to run it again, with nothing changed."""
    from callscribe.cli import main
    from tests.integration.helpers import downgrade

    head = db.schema_revision(pg)
    downgrade(pg, "0022")
    try:
        with page_login(pg, monkeypatch, "review4_bi", {"application_name": "'Tableau'"}) as bi:
            with bi.connect() as idle:
                idle.begin()
                idle.execute(sa.text("SELECT count(*) FROM analytics.pipeline_runs")).scalar_one()
                pid = idle.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                with pytest.raises(db.MigrationBlocked) as blocked:
                    db.migrate(pg, lock_timeout="1s")
                said = str(blocked.value)
                assert "lock timeout" in said and f"pid {pid}" in said and "review4_bi" in said, said
                assert "Tableau" in said and "idle in transaction" in said and "run it again" in said, said
                assert db.schema_revision(pg) == "0022"  # nothing half done
                monkeypatch.setattr(db, "MIGRATION_LOCK_TIMEOUT", "1s")
                assert main(["migrate"]) == 4  # the command says so, without a traceback
                idle.rollback()
            db.migrate(pg, lock_timeout="1s")  # the session ended: the same command goes through
            assert db.schema_revision(pg) == head
    finally:
        db.migrate(pg)
