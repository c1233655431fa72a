"""Upgrades and downgrades of the latest migrations on a database in use: grants a DBA gave, and
two pods running the migration at once."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from callscribe import db
from tests.integration.helpers import downgrade

pytestmark = pytest.mark.integration

ROLE = "callscribe_test_bi_reader"


def _can_read(pg, relation: str) -> bool:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT has_table_privilege(:r, :t, 'SELECT')"),
                         {"r": ROLE, "t": relation}).scalar_one()


def test_a_downgrade_of_0018_keeps_the_grants_on_analytics_recordings(pg):
    """A DBA granted a reporting role SELECT on analytics.recordings (as on the other analyst views).
    0018's downgrade drops the view and makes it again: the grant must come back with it, as 0014's
    rewrite of segments keeps the grants on segments, or the role loses its access unnoticed."""
    with pg.begin() as c:
        c.execute(sa.text(f"DROP ROLE IF EXISTS {ROLE}"))
        c.execute(sa.text(f"CREATE ROLE {ROLE} NOLOGIN"))
        c.execute(sa.text(f"GRANT USAGE ON SCHEMA analytics TO {ROLE}"))
        c.execute(sa.text(f"GRANT SELECT ON analytics.recordings TO {ROLE}"))
    try:
        downgrade(pg, "0017")
        try:
            assert _can_read(pg, "analytics.recordings")
        finally:
            db.migrate(pg)
        assert _can_read(pg, "analytics.recordings")
    finally:
        with pg.begin() as c:
            c.execute(sa.text(f"REVOKE ALL ON analytics.recordings FROM {ROLE}"))
            c.execute(sa.text(f"REVOKE ALL ON SCHEMA analytics FROM {ROLE}"))
            c.execute(sa.text(f"DROP ROLE {ROLE}"))


def _migrating(pg, errors: list[BaseException]) -> threading.Thread:
    """A thread (not started) running db.migrate on an engine of its own, as another pod would; what
    it raises goes to ``errors``."""
    def run() -> None:
        try:
            db.migrate(db.engine_for(pg.url.render_as_string(hide_password=False)))
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            errors.append(exc)

    return threading.Thread(target=run, daemon=True)


def test_two_pods_migrating_at_once_both_end_at_head(pg):
    """The upgrade run from two pods at once (a Job retried, two operators): one waits for the other
    and finds nothing left to do, rather than fail on the other's half-made objects."""
    head = db.schema_revision(pg)
    downgrade(pg, "0016")
    errors: list[BaseException] = []
    try:
        threads = [_migrating(pg, errors) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        db.migrate(pg)
    assert errors == []
    assert db.schema_revision(pg) == head


def test_a_migration_during_a_load_gives_up_instead_of_stalling_every_query_on_recordings(pg):
    """The upgrade run while a nightly load holds its recordings (the fence's row locks, until its
    transaction commits: minutes on a big day, up to the load's 1 h timeout). 0017 must lock the whole
    table to add its column; waiting for the load, it queues every later query on recordings behind it
    (the analysts' search, discovery, the chunk tasks) for as long as the load takes. The migration
    must give up soon with a lock error and change nothing, and succeed once the load is over."""
    downgrade(pg, "0016")
    try:
        with pg.begin() as c:
            rid = c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels, "
                "last_run_id) VALUES ('calls', 'calls/2031/06/01/zz-lock.wav', 'e', '2031-06-01', 'zz-lock', "
                "'chunked', 1, 'zz-lock-run') RETURNING id")).scalar_one()
        errors: list[BaseException] = []
        with pg.connect() as load:
            with load.begin():
                load.execute(db.q("load_lock_keys"), {"ids": [rid]}).all()
                assert load.execute(db.q("load_fence"), {"ids": [rid], "run_id": "zz-lock-run"}).all()
                thread = _migrating(pg, errors)
                thread.start()
                thread.join(90)  # a guard against a hang, not a measure
                waited = thread.is_alive()
            thread.join()  # the load committed: a migration still waiting goes on now
        assert not waited, "the migration waited for the load, holding up every query on recordings behind it"
        assert len(errors) == 1 and "lock timeout" in str(errors[0]), errors
        assert db.schema_revision(pg) == "0016"  # nothing half done
    finally:
        db.migrate(pg)
    assert db.schema_revision(pg) != "0016"
