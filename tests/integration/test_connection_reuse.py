"""Database connections at scale: one pooled engine per URL, as db.engine_for promises.

The engine cache's decorator had come to sit on db.unavailable (a function inserted between it and
engine_for), so every db.engine_from_env(), checked_engine() and analyst_engine() built a new engine
with a pool of its own: each search page request (which asks for the analysts' engine once or twice)
opened a new connection and left it open until Python's cyclic garbage collector happened to free
its engine. Under a busy page those pile up towards the server's max_connections, which the
pipeline's own tasks share. (And the misplaced cache kept the last 8 exceptions it was asked about,
with their tracebacks' frames: a chunk task's decoded audio among them.)
"""

from __future__ import annotations

import gc

import pytest
import sqlalchemy as sa

from callscribe import db

pytestmark = pytest.mark.integration


def _backends(pg) -> int:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND usename = current_user AND pid <> pg_backend_pid()")).scalar_one()


def test_engines_are_pooled_once_per_database_not_once_per_use(stack, pg):
    assert db.engine_from_env() is db.engine_from_env()
    was_enabled = gc.isenabled()
    gc.disable()  # what a busy server sees between two of the collector's passes
    try:
        before = _backends(pg)
        for _ in range(30):
            with db.engine_from_env().connect() as c:
                c.execute(sa.text("SELECT 1"))
        after = _backends(pg)
    finally:
        if was_enabled:
            gc.enable()
    assert after - before <= 1, f"{after - before} connections left open by 30 uses of the same database"


def _by_application(pg, name: str) -> int:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                         {"a": name}).scalar_one()


def test_an_engine_pushed_out_of_the_cache_closes_its_connections(stack, pg):
    """The cache keeps 8 engines; a 9th URL pushes the oldest out. Its pool's idle connections stayed
    open until the garbage collector happened to free the engine (never, while a caller held it)."""
    base = pg.url.render_as_string(hide_password=False)
    names = [f"brackenridge-evict-{i}" for i in range(9)]  # one more than the cache holds
    held = []  # callers still holding every engine: only the eviction may close the pool
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name in names:
            engine = db.engine_for(f"{base}?application_name={name}")
            with engine.connect() as c:  # one connection, back in the pool, open, after the block
                c.execute(sa.text("SELECT 1"))
            held.append(engine)
        assert _by_application(pg, names[-1]) == 1
        assert _by_application(pg, names[0]) == 0, "the engine pushed out of the cache left its connections open"
        assert db.engine_for(f"{base}?application_name={names[-1]}") is held[-1]
    finally:
        if was_enabled:
            gc.enable()
        for engine in held:
            engine.dispose()
