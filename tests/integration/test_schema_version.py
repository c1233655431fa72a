"""Code deployed before its migrations: every task refuses at once and says what to run.

The DAG files, the package and the migrations ship together, but the migration is a step
an operator runs (docs/deploy.md, "Upgrades"). A run on a schema behind the code would
register and chunk the day, then fail on a missing column half-way through, so the run
refuses before it touches anything, naming the revisions the database lacks.
"""

from __future__ import annotations

import logging
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import db
from callscribe.samples import sample_files
from tests.integration.helpers import downgrade, upload_day

pytestmark = pytest.mark.integration
DAY = date(2031, 4, 7)  # no other test uses it




def _stamp(pg, revision: str) -> None:
    with pg.begin() as c:
        c.execute(sa.text("UPDATE callscribe_alembic_version SET version_num = :r"), {"r": revision})


def test_the_schema_at_the_code_s_revision_passes(pg):
    assert db.schema_revision(pg) == db.head_revision()
    db.require_schema(pg)  # no error


def test_a_schema_behind_the_code_is_refused_with_what_to_run(pg, capsys):
    from callscribe.cli import main

    head = db.head_revision()
    previous = db.previous_revision(head)
    downgrade(pg, previous)
    try:
        with pytest.raises(db.SchemaBehind) as err:
            db.require_schema(pg)
        message = str(err.value)
        assert f"at revision {previous}" in message and f"needs {head}" in message
        assert "callscribe migrate" in message  # what to run
        assert pg.url.password is None or pg.url.password not in message
        # A command says the same in one line, not a traceback, and exits non-zero.
        assert main(["status", "--date", str(DAY)]) == 3
        assert "callscribe migrate" in capsys.readouterr().err
        # `callscribe migrate` brings it to the code's revision and says from where.
        assert main(["migrate"]) == 0
        assert capsys.readouterr().out.strip() == f"callscribe schema: {previous} -> {head}"
    finally:
        db.migrate(pg)
    db.require_schema(pg)
    assert main(["migrate"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_database_never_migrated_is_refused(pg):
    with pg.begin() as c:
        c.execute(sa.text("ALTER TABLE callscribe_alembic_version RENAME TO callscribe_alembic_version_hidden"))
    try:
        with pytest.raises(db.SchemaBehind, match="no callscribe schema"):
            db.require_schema(pg)
    finally:
        with pg.begin() as c:
            c.execute(sa.text("ALTER TABLE callscribe_alembic_version_hidden RENAME TO callscribe_alembic_version"))


def test_a_schema_ahead_of_the_code_is_run_with_a_warning(pg, caplog):
    """Migrating before deploying the code is the documented order: the old code keeps running."""
    head = db.head_revision()
    _stamp(pg, "9999")
    try:
        with caplog.at_level(logging.WARNING, logger="callscribe.db"):
            db.require_schema(pg)
        assert "9999" in caplog.text and "newer" in caplog.text
    finally:
        _stamp(pg, head)


def test_a_run_on_a_schema_behind_the_code_touches_nothing_and_is_red(stack, s3, pg, monkeypatch):
    from callscribe.cli import run_day

    monkeypatch.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")  # read when the DAG file is parsed
    upload_day(s3, DAY, files=sample_files()[:1])
    downgrade(pg, db.previous_revision(db.head_revision()))
    try:
        dr = run_day(DAY)
        with pg.connect() as c:
            registered = c.execute(sa.text("SELECT count(*) FROM recordings WHERE call_date = :d"),
                                   {"d": DAY}).scalar_one()
    finally:
        db.migrate(pg)
    assert str(dr.state).rsplit(".", 1)[-1].lower() == "failed"
    assert registered == 0  # refused before discovery registered the day
    # Migrated, the same day runs green.
    dr = run_day(DAY)
    assert str(dr.state).rsplit(".", 1)[-1].lower() == "success"


def test_the_search_page_on_a_schema_behind_it_says_so_instead_of_failing_on_a_column(stack, pg, s3):
    """The page is deployed with the code; a database not yet migrated (0017: analytics.recordings has
    no etag, which a play reads) must answer 503 with what the operators must run, not a 500 from a
    missing column, and it must answer again once the schema is migrated."""
    from fastapi.testclient import TestClient

    from callscribe.search_page import create_app
    from tests.integration.helpers import load_call

    key = "calls/2031/04/08/schema-behind.wav"
    s3.put_bytes(s3.uri(key), sample_files()[0].read_bytes())
    etag, _ = s3.stat("calls", key)
    rid = load_call(pg, s3, key, date(2031, 4, 8), [(0, "agent", 0.5, 3.0, "thank you for calling")], etag=etag)
    client = TestClient(create_app(require_login=False), raise_server_exceptions=False)
    assert client.post("/api/play", json={"recording_id": rid, "start": 1.0}).status_code == 200
    downgrade(pg, "0017")
    try:
        for answer in (client.post("/api/play", json={"recording_id": rid, "start": 1.0}),
                       client.get("/api/search", params={"q": "thank you"})):
            assert answer.status_code == 503, answer.text
            assert "callscribe migrate" in answer.json()["detail"], answer.text
    finally:
        db.migrate(pg)
    assert client.post("/api/play", json={"recording_id": rid, "start": 1.0}).status_code == 200
    assert client.get("/api/search", params={"q": "thank you"}).status_code == 200


def test_an_analyst_login_refused_the_version_table_is_told_both_causes(pg):
    """At the code's revision, with the analysts' SELECT on the version table revoked by hand: the
    refusal must not send the operators to migrate only (that changes nothing at head)."""
    with pg.begin() as c:
        c.exec_driver_sql(f"REVOKE SELECT ON {db.VERSION_TABLE} FROM callscribe_analyst")
    try:
        with pytest.raises(db.SchemaBehind) as refused:
            db.analyst_revision(db.analyst_engine())
        assert "callscribe migrate" in str(refused.value) and "revoked" in str(refused.value)
    finally:
        with pg.begin() as c:
            c.exec_driver_sql(f"GRANT SELECT ON {db.VERSION_TABLE} TO callscribe_analyst")
    assert db.analyst_revision(db.analyst_engine()) == db.head_revision()
