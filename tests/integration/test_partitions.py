"""segments by month (migration 0014): the loader makes a new month's partition, a row of a month
without one waits in the default partition until its month is made, and down/up keeps every row."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import db
from callscribe.partitions import ensure_months
from tests.integration.helpers import downgrade, load_call

pytestmark = pytest.mark.integration

NEW_MONTH = date(2031, 7, 14)
LATE_MONTH = date(2032, 2, 3)


def _where(pg, rid: int) -> set[str]:
    with pg.connect() as c:
        return set(c.execute(sa.text("SELECT tableoid::regclass::text FROM segments WHERE recording_id = :r"),
                             {"r": rid}).scalars())


def test_a_load_into_a_month_without_a_partition_makes_it_first(pg, s3):
    rid = load_call(pg, s3, "calls/2031/07/14/month-1.wav", NEW_MONTH, [
        (0, "agent", 0.0, 3.0, "a call in a month nobody loaded before"),
        (1, "customer", 3.5, 6.0, "and its answer"),
    ])
    assert _where(pg, rid) == {"segments_y2031m07"}
    assert ensure_months(pg, [NEW_MONTH]) == []  # known now: nothing to do


def test_a_row_of_a_month_without_a_partition_waits_in_the_default_one_until_the_month_is_made(pg):
    with pg.begin() as c:
        rid = c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels) "
            "VALUES ('calls', 'calls/2032/02/03/late-1.wav', 'e', :d, 'late-1', 'done', 1) RETURNING id"),
            {"d": LATE_MONTH}).scalar_one()
        ids = c.execute(sa.text(
            "INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, text_redacted, "
            "call_date) VALUES (:r, 0, 0, 'mixed', 0, 2, 'typed in by hand', 'typed in by hand', :d), "
            "(:r, 0, 1, 'mixed', 2, 4, 'by a DBA', 'by a DBA', :d) RETURNING id"),
            {"r": rid, "d": LATE_MONTH}).scalars().all()
        c.execute(sa.text("INSERT INTO call_metrics (recording_id, talk_time_s, talk_sum_s, talk_union_s, overlap_s, "
                          "longest_monologue_s, segments) VALUES (:r, '{}', 4, 4, 0, 4, 2)"), {"r": rid})
    assert _where(pg, rid) == {"segments_default"}
    assert ensure_months(pg, [LATE_MONTH]) == [date(2032, 2, 1)]
    assert _where(pg, rid) == {"segments_y2032m02"}
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT array_agg(id ORDER BY seq) FROM segments WHERE recording_id = :r"),
                         {"r": rid}).scalar_one() == sorted(ids)  # the same rows, moved
        assert c.execute(sa.text("SELECT count(*) FROM call_metrics WHERE recording_id = :r"),
                         {"r": rid}).scalar_one() == 1  # moving is not deleting: the metrics stay
        hits = c.execute(sa.text("SELECT count(*) FROM analytics.search('DBA', from_date => :d, to_date => :d)"),
                         {"d": LATE_MONTH}).scalar_one()
    assert hits == 1


def test_down_to_one_table_and_up_to_months_keeps_every_row(pg, s3):
    rid = load_call(pg, s3, "calls/2031/07/14/month-2.wav", NEW_MONTH, [(0, "agent", 0.0, 3.0, "kept across")])

    def state() -> tuple:
        with pg.connect() as c:
            kind = c.execute(sa.text("SELECT relkind FROM pg_class WHERE oid = 'segments'::regclass")).scalar_one()
            rows = c.execute(sa.text("SELECT count(*), sum(id) FROM segments")).one()
        return kind, tuple(rows)

    kind, rows = state()
    assert kind == "p"
    downgrade(pg, "0013")
    try:
        assert state() == ("r", rows)
    finally:
        db.migrate(pg)
    assert state() == ("p", rows) and _where(pg, rid) == {"segments_y2031m07"}
    with pg.connect() as c:  # new ids continue the sequence
        assert c.execute(sa.text("SELECT nextval('segments_id_seq')")).scalar_one() > rows[1] // max(rows[0], 1)


def test_two_runs_loading_the_first_calls_of_a_month_at_once_make_it_once_and_load_both(pg, s3):
    """A backfill over a live run, both the first to reach a month: one makes the partition, the
    other finds it (no error, no second partition), and both calls are loaded into it."""
    import threading

    from callscribe import partitions

    day = date(2033, 4, 2)
    keys = [f"calls/2033/04/02/race-{i}.wav" for i in range(2)]
    partitions._known.discard(day.replace(day=1))
    barrier, ids, errors = threading.Barrier(2), {}, []

    def load(key: str) -> None:
        try:
            barrier.wait(10)
            ids[key] = load_call(pg, s3, key, day, [(0, "agent", 0.0, 2.0, f"first call of April {key[-5]}")])
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(_where(pg, ids[k]) == {"segments_y2033m04"} for k in keys)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'segments'::regclass "
                                 "AND inhrelid::regclass::text LIKE 'segments_y2033m04%'")).scalar_one() == 1


def test_a_load_writes_into_its_months_partition_or_into_segments_when_it_is_not_attached(pg, s3):
    """The loader COPYs a month's rows straight into its partition; a month whose table is not
    attached (detached by hand after this process saw it) gets its rows through ``segments``."""
    gone = date(2033, 8, 9)
    ensure_months(pg, [gone])
    with pg.begin() as c:
        c.execute(sa.text("ALTER TABLE segments DETACH PARTITION segments_y2033m08"))
        c.execute(sa.text("ALTER TABLE segments_y2033m08 RENAME TO detached_y2033m08"))
    try:
        rid = load_call(pg, s3, "calls/2033/08/09/detached-1.wav", gone, [(0, "agent", 0.0, 2.0, "still found")])
        assert _where(pg, rid) == {"segments_default"}
        with pg.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM detached_y2033m08")).scalar_one() == 0
            hits = c.execute(sa.text("SELECT count(*) FROM analytics.search('found', from_date => :d, to_date => :d)"),
                             {"d": gone}).scalar_one()
        assert hits == 1
    finally:
        with pg.begin() as c:
            c.execute(sa.text("DROP TABLE detached_y2033m08"))
            c.execute(sa.text("DELETE FROM recordings WHERE object_key = 'calls/2033/08/09/detached-1.wav'"))


def test_making_a_month_behind_an_analysts_long_query_holds_up_no_other_query(pg):
    """An analyst's long query over `segments` (an open transaction reading every month) while a
    load reaches a new month: attaching its partition needs an exclusive lock on the default
    partition, which waits for that query. Queued behind the waiting lock, every other reader
    of `segments` (the search page, the next load) would wait too, until the long query ended.
    The month is made once nothing holds the lock, and meanwhile nobody else waits."""
    import threading

    from callscribe import partitions

    month = date(2034, 5, 1)
    partitions._known.discard(month)
    long_query = pg.connect()
    long_query.begin()
    long_query.execute(sa.text("SELECT count(*) FROM segments"))  # holds its lock till the end
    made: list = []
    maker = threading.Thread(target=lambda: made.append(ensure_months(pg, [date(2034, 5, 2)])))
    try:
        maker.start()
        maker.join(3)  # long enough for a lock request to queue
        with pg.connect() as other:  # an analyst's search meanwhile, bounded so a block shows
            other.execute(sa.text("SET statement_timeout = '5s'"))
            # the month being made holds no rows yet; a query queued behind the lock would be
            # cancelled by the timeout instead of answering
            assert other.execute(sa.text("SELECT count(*) FROM segments WHERE call_date = :d"),
                                 {"d": date(2034, 5, 2)}).scalar_one() == 0
    finally:
        long_query.rollback()
        long_query.close()
        maker.join(60)
    assert made == [[month]]  # a later try, once the long query was over
    with pg.connect() as c:
        assert partitions.attached(c, "segments_y2034m05")


def test_a_month_held_off_through_every_try_is_left_for_later_and_its_rows_wait_in_the_default(pg, s3,
                                                                                              monkeypatch):
    from callscribe import partitions

    day = date(2034, 9, 3)
    partitions._known.discard(day.replace(day=1))
    monkeypatch.setattr(partitions, "TRIES", (0.0, 0.1))
    long_query = pg.connect()
    long_query.begin()
    long_query.execute(sa.text("SELECT count(*) FROM segments"))
    try:
        rid = load_call(pg, s3, "calls/2034/09/03/held-off.wav", day, [(0, "agent", 0.0, 2.0, "loaded all the same")])
    finally:
        long_query.rollback()
        long_query.close()
    assert _where(pg, rid) == {"segments_default"}  # loaded, not lost
    assert day.replace(day=1) not in partitions._known  # the next load (or the maintenance DAG) tries again
    assert partitions.ensure_ahead(pg, day) == [date(2034, 9, 1), date(2034, 10, 1)]
    assert _where(pg, rid) == {"segments_y2034m09"}  # moved when its month was made
