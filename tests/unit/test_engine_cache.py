"""db.engine_for's cache: least recently used out first, and the evicted engine disposed."""

from __future__ import annotations

from collections import OrderedDict

from callscribe import db


def _url(n: int) -> str:
    return f"postgresql+psycopg2://u@127.0.0.1:1/x?application_name=brackenridge-unit-{n}"


def test_the_least_recently_used_engine_is_evicted_and_disposed(monkeypatch):
    monkeypatch.setattr(db, "_engines", OrderedDict())
    first, second = db.engine_for(_url(0)), db.engine_for(_url(1))
    pools = {0: first.pool, 1: second.pool}
    for n in range(2, db.ENGINE_CACHE_SIZE):
        db.engine_for(_url(n))
    assert db.engine_for(_url(0)) is first  # used again: the newest now
    db.engine_for(_url(db.ENGINE_CACHE_SIZE))  # one too many: the second goes
    assert len(db._engines) == db.ENGINE_CACHE_SIZE
    assert second.pool is not pools[1], "the evicted engine was not disposed (its pool kept)"
    assert first.pool is pools[0] and db.engine_for(_url(0)) is first
    assert db.engine_for(_url(1)) is not second  # a new engine for the evicted URL


def test_driver_options_are_part_of_the_key(monkeypatch):
    monkeypatch.setattr(db, "_engines", OrderedDict())
    plain = db.engine_for(_url(0))
    assert db.engine_for(_url(0), (("sslmode", "require"),)) is not plain
    assert db.engine_for(_url(0)) is plain
