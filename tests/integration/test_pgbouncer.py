"""callscribe behind PgBouncer in transaction pooling mode (tests/pgbouncer.py).

Consecutive transactions of one client connection may run on different server connections there,
and a server connection outlives the client connections that used it: nothing may rest on what a
session keeps. A pool of 2 server connections per login makes the transactions of the DAG's
tasks, the loader's threads and the search page hop between them.
"""

from __future__ import annotations

import json
import os
from datetime import date
from urllib.parse import quote

import psycopg2
import pytest
import sqlalchemy as sa

from callscribe import db, partitions
from callscribe.search import SearchFilters, search
from tests import pgbouncer

pytestmark = pytest.mark.integration

DAY = date(2038, 4, 14)
POOLED_DB = "callscribe_pooled"


def _secrets(stack) -> dict:
    return json.loads((stack.root / "secrets.json").read_text())


@pytest.fixture(scope="module")
def bouncer(stack):
    if pgbouncer.binary() is None:
        pytest.skip(pgbouncer.BINARY_HOW)
    # One server connection for the database the migrations test makes: every transaction on it
    # runs on the one that ran the migrations, as a pooler's busiest connection does.
    with pgbouncer.running(stack.pg_port, ("callscribe", _secrets(stack)["pg_password"]), pool_size=2,
                           pool_sizes={POOLED_DB: 1}) as b:
        yield b


@pytest.fixture
def through(bouncer, monkeypatch):
    """The pipeline's and the analysts' connections through the pooler, for one test."""
    for name in ("AIRFLOW_CONN_CALLSCRIBE_POSTGRES", "AIRFLOW_CONN_CALLSCRIBE_ANALYST"):
        monkeypatch.setenv(name, bouncer.conn_json(os.environ[name]))
    return bouncer


def test_a_dag_run_and_an_analysts_search_through_pgbouncer_in_transaction_mode(stack, s3, pg, through):
    from fastapi.testclient import TestClient

    from callscribe.local_run import run_day
    from callscribe.search_page import create_app
    from tests.integration.helpers import upload_day

    n = upload_day(s3, DAY)
    before = through.transactions("callscribe")
    dr = run_day(DAY)
    assert str(dr.state).endswith("success")
    assert through.transactions("callscribe") - before > 20  # the run's tasks did go through the pooler
    with pg.connect() as c:
        states = c.execute(sa.text("SELECT status, count(*) FROM recordings WHERE call_date = :d GROUP BY status"),
                           {"d": DAY}).all()
    assert dict(states) == {"done": n}

    with pg.connect() as c:
        since = c.execute(sa.text("SELECT COALESCE(max(id), 0) FROM access_log")).scalar_one()
    client = TestClient(create_app(require_login=False))
    got = client.get("/api/search", params={"q": '"cancel my account"', "from": DAY.isoformat(), "to": DAY.isoformat()})
    assert got.status_code == 200, got.text
    hits = got.json()["hits"]
    assert hits and all(h["call_date"] == DAY.isoformat() for h in hits)
    played = client.post("/api/play", json={"recording_id": hits[0]["recording_id"]})
    assert played.status_code == 200, played.text
    with pg.connect() as c:
        logged = c.execute(sa.text("SELECT action, db_user FROM access_log WHERE id > :since ORDER BY id"),
                           {"since": since}).all()
    assert [tuple(r) for r in logged] == [("search", "analyst"), ("play", "analyst")]


# ---------------------------------------------------------------- a database migrated through the pooler

@pytest.fixture
def pooled_db(stack, bouncer):
    """An empty database of its own, and an engine on it through the pooler."""
    sec = _secrets(stack)
    admin = psycopg2.connect(host="127.0.0.1", port=stack.pg_port, user="callscribe", password=sec["pg_password"],
                             dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {POOLED_DB} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {POOLED_DB}")
    url = f"postgresql+psycopg2://callscribe:{quote(sec['pg_password'], safe='')}@127.0.0.1:{bouncer.port}/{POOLED_DB}"
    engine = db.engine_for(url)
    known = set(partitions._known)  # months made in the suite's database, not in this one
    partitions._known.clear()
    yield engine
    partitions._known.clear()
    partitions._known.update(known)
    engine.dispose()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {POOLED_DB} WITH (FORCE)")
    admin.close()


def test_migrations_through_the_pooler_then_similar_words_are_found(stack, s3, pooled_db):
    """Every migration through the pooler, into an empty database; then a search whose only match is
    a similar word (migration 0003 lowers pg_trgm's word similarity threshold for the database to
    0.45: "Cathrine" is 0.58 like "Catherine"). The server connection that ran the migrations was
    opened before that, and the pooler keeps it for the searches that follow."""
    from tests.integration.helpers import load_call

    with pooled_db.connect() as c:  # the pool's server connection, opened before any migration
        assert c.execute(sa.text("SELECT 1")).scalar_one() == 1
    db.migrate(pooled_db)
    assert db.schema_revision(pooled_db) == db.head_revision()
    load_call(pooled_db, s3, "calls/2038/04/15/pooled.wav", date(2038, 4, 15),
              [(0, "agent", 1.0, 4.0, "Thank you for calling, this is Catherine."),
               (1, "customer", 5.0, 7.0, "Hello, I need a new card.")])
    hits = search(pooled_db, "Cathrine", filters=SearchFilters(from_date=date(2038, 4, 15),
                                                               to_date=date(2038, 4, 15)))
    assert [(h["start_s"], h["match"]) for h in hits] == [(1.0, "fuzzy")]
