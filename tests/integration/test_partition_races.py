"""Review: making a month while other transactions write or delete rows of it in the default partition."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import db, partitions

pytestmark = pytest.mark.integration


def _recording(pg, key: str, day: date) -> int:
    with pg.begin() as c:
        return c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels) "
            "VALUES ('calls', :k, 'e', :d, :k, 'done', 1) RETURNING id"), {"k": key, "d": day}).scalar_one()


def _segment(c, rid: int, day: date, seq: int = 0) -> None:
    # Through `segments`, as the loader writes a month that has no partition yet.
    c.execute(sa.text("INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, "
                      "text_redacted, call_date) VALUES (:r, 0, :s, 'mixed', :s, :s + 1, 'x', 'x', :d)"),
              {"r": rid, "s": seq, "d": day})


def _where(pg, rid: int) -> set[str]:
    with pg.connect() as c:
        return set(c.execute(sa.text("SELECT tableoid::regclass::text FROM segments WHERE recording_id = :r"),
                             {"r": rid}).scalars())


def _maker(pg, day: date) -> tuple[threading.Thread, list, list]:
    with pg.connect() as c:  # else the making has nothing to do, and nothing to wait for
        assert not partitions.attached(c, partitions.month_table(day)), f"{day:%Y-%m} is another test's month"
    partitions._known.discard(day.replace(day=1))
    made, errors = [], []

    def run() -> None:
        try:
            made.append(partitions.ensure_months(pg, [day]))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    return threading.Thread(target=run), made, errors


def _wait_for_the_making(pg) -> None:
    """Until the making waits for a lock on segments or its default partition."""
    with pg.connect() as c:
        for _ in range(100):
            if c.execute(sa.text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND relation "
                                 "IN ('segments'::regclass, 'segments_default'::regclass))")).scalar_one():
                return
            time.sleep(0.02)
    raise AssertionError("the month's making never waited for segments")


@contextmanager
def _a_long_query(pg):
    """An analyst's query over `segments` in an open transaction: it holds every partition, the
    default too, until the block ends."""
    conn = pg.connect()
    conn.begin()
    conn.execute(sa.text("SELECT count(*) FROM segments"))
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


@contextmanager
def _a_write_while_made(pg, rid: int, day: date):
    """A load's row of ``rid`` written into the default partition, not committed, while another
    thread makes ``day``'s month: the block runs once the making waits, with the load's connection
    and the making's results; the load commits at its end."""
    load = pg.connect()
    tx = load.begin()
    _segment(load, rid, day)
    maker, made, errors = _maker(pg, day)
    try:
        maker.start()
        _wait_for_the_making(pg)
        yield load, made, errors
        tx.commit()
    finally:
        load.close()
        maker.join(60)


def test_a_load_committing_rows_of_the_month_while_the_attach_waits_does_not_fail_the_making(pg):
    """A load of a deferred month COPYs into the default partition while another load (or the
    maintenance DAG) makes the month: the making moves the rows committed so far, then its attach
    waits for the load; the load commits within the lock timeout, and the attach's check of the
    default partition finds the load's rows of the month there."""
    day = date(2041, 3, 4)
    first = _recording(pg, "calls/2041/03/04/in-default.wav", day)
    with pg.begin() as c:
        _segment(c, first, day)  # a deferred month's rows, committed
    late = _recording(pg, "calls/2041/03/04/copy-in-flight.wav", day)
    with _a_write_while_made(pg, late, day) as (_, made, errors):  # a load's COPY, committed meanwhile
        pass
    assert not errors, errors
    assert made == [[day.replace(day=1)]]
    assert _where(pg, first) == _where(pg, late) == {"segments_y2041m03"}


def test_a_reprocess_deleting_rows_in_the_default_while_the_month_is_made_is_no_deadlock(pg):
    """A reprocess (load_clear.sql) or an erasure deletes a call's old rows in the default partition
    while the month is made: neither the making nor the deletion fails, and each row ends deleted
    or in the month's partition."""
    day = date(2041, 5, 6)
    old = _recording(pg, "calls/2041/05/06/reprocessed.wav", day)
    with pg.begin() as c:
        _segment(c, old, day)  # old transcript, in the default partition (its month was deferred)
    other = _recording(pg, "calls/2041/05/06/other.wav", day)
    # A load writing into the default partition holds it (RowExclusive), then deletes the old rows.
    with _a_write_while_made(pg, other, day) as (load, made, errors):
        load.execute(sa.text("SET LOCAL statement_timeout = '20s'"))
        # The deletion's deadlock check first, as when it began waiting for the rows the making moves
        # before the making's attach began waiting (a move of many rows takes a while).
        load.execute(sa.text("SET LOCAL deadlock_timeout = '200ms'"))
        load.execute(sa.text("DELETE FROM segments WHERE recording_id = :r"), {"r": old})  # load_clear.sql
    assert not errors, errors
    assert made == [[day.replace(day=1)]]
    assert _where(pg, old) == set() and _where(pg, other) == {"segments_y2041m05"}


def test_the_maintenance_dag_moves_a_deferred_backfill_months_rows_out_of_the_default(stack, pg):
    """A backfill of an old month whose making was held off (an analyst's long query) left its rows
    in the default partition; no later load of that month comes. The maintenance DAG's
    make_months makes it (the README: "a later load or make_months moves them into their month"),
    not only the current and next month."""
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    day = date(2041, 2, 11)
    rid = _recording(pg, "calls/2041/02/11/backfilled.wav", day)
    with pg.begin() as c:
        _segment(c, rid, day)
    assert _where(pg, rid) == {"segments_default"}
    partitions._known.discard(day.replace(day=1))
    dags = Path(__file__).resolve().parents[2] / "dags"
    make_months = DagBag(dag_folder=str(dags)).get_dag("callscribe_maintenance").get_task("make_months")
    assert day.replace(day=1).isoformat() in make_months.python_callable()
    assert _where(pg, rid) == {"segments_y2041m02"}


def test_an_erasure_while_the_month_is_attached_leaves_none_of_the_calls_segments(pg):
    """An analyst's long query holds the attach off for a moment (under the lock timeout); an
    erasure (erase_apply.sql: the recording's row deleted, its segments by the trigger) comes
    meanwhile, then the query ends and the month is made. The erasure's deletion of the segments,
    planned before the attach committed, must not miss the rows the making moved into the month."""
    day = date(2041, 7, 8)
    rid = _recording(pg, "calls/2041/07/08/erased.wav", day)
    with pg.begin() as c:
        _segment(c, rid, day)
        _segment(c, rid, day, seq=1)
    maker, made, errors = _maker(pg, day)

    def erase() -> None:
        try:
            with pg.begin() as c:
                c.execute(sa.text("DELETE FROM recordings WHERE id = :r"), {"r": rid})
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    eraser = threading.Thread(target=erase)
    try:
        with _a_long_query(pg):
            maker.start()
            time.sleep(0.2)  # the making tries (and waits, or gives way to the long query)
            eraser.start()
            time.sleep(0.3)  # the erasure reaches the segments
    finally:
        maker.join(60)
        eraser.join(60)
    assert not errors, errors
    assert made == [[day.replace(day=1)]]
    assert _where(pg, rid) == set()  # erased: no text of the call is left to search


def test_a_deletion_waiting_for_the_making_reaches_the_rows_it_moved(pg):
    """A reprocess's or an erasure's deletion of a call's segments that comes while a month is being
    made (its transaction open) waits for it, and then deletes the rows the making moved into the
    month: planned before the attach committed, it would read the default partition only."""
    day = date(2041, 9, 10)
    rid = _recording(pg, "calls/2041/09/10/deleted-meanwhile.wav", day)
    with pg.begin() as c:
        _segment(c, rid, day)
    partitions._known.discard(day.replace(day=1))
    maker = pg.connect()
    tx = maker.begin()
    maker.execute(sa.text("SET LOCAL lock_timeout = '1s'"))
    maker.execute(db.q("segment_months_make"), {"month": day.replace(day=1)})  # made, not committed yet
    deleted: list = []

    def delete() -> None:
        with pg.begin() as c:
            deleted.append(c.execute(sa.text("DELETE FROM segments WHERE recording_id = :r"), {"r": rid}).rowcount)

    deleter = threading.Thread(target=delete)
    try:
        deleter.start()
        time.sleep(0.3)  # the deletion waits for the making
        tx.commit()
    finally:
        maker.close()
        deleter.join(60)
    assert deleted == [1] and _where(pg, rid) == set()


def test_a_reprocess_of_a_call_whose_old_rows_wait_in_the_default_replaces_them_once_its_month_is_made(pg, s3,
                                                                                                         monkeypatch):
    """First load while the month's making is held off (rows in the default partition), the month
    made later, then the call reprocessed: the new transcript (in the month) replaces the old one
    whole: segments, transcripts, call metrics, search."""
    import pandas as pd

    from callscribe.loading import load_shards
    from callscribe.manifests import CONFIDENCE, SEGMENT_COLUMNS, WORD_STARTS, RecordingEntry, ShardInfo, to_parquet
    from tests.integration.helpers import load_call

    day = date(2041, 11, 12)
    partitions._known.discard(day.replace(day=1))
    monkeypatch.setattr(partitions, "TRIES", (0.0,))
    with _a_long_query(pg):
        rid = load_call(pg, s3, "calls/2041/11/12/reprocessed.wav", day,
                        [(0, "agent", 0.0, 2.0, "old words zebra"), (1, "customer", 2.0, 4.0, "old answer")])
    assert _where(pg, rid) == {"segments_default"}
    assert partitions.ensure_months(pg, [day]) == [day.replace(day=1)]
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'chunked', last_run_id = 'rerun' WHERE id = :r"), {"r": rid})
    rows = [(rid, 0, 0, "agent", 0.0, 3.0, "new words giraffe", None, None)]
    info = ShardInfo(job_id=f"rerun-{rid}", run_id="rerun", engine="test", batches=[],
                     recordings=[RecordingEntry(recording_id=rid, n_channels=2)])
    uri = s3.uri(f"_callscribe/tests/rerun-{rid}.parquet")
    s3.put_bytes(uri, to_parquet(pd.DataFrame(rows, columns=[*SEGMENT_COLUMNS, WORD_STARTS, CONFIDENCE]), info))
    load_shards(s3, pg, [uri])
    assert _where(pg, rid) == {"segments_y2041m11"}
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT array_agg(text) FROM segments WHERE recording_id = :r"),
                         {"r": rid}).scalar_one() == ["new words giraffe"]
        assert c.execute(sa.text("SELECT segments FROM call_metrics WHERE recording_id = :r"),
                         {"r": rid}).scalars().all() == [1]
        hits = {w: c.execute(sa.text("SELECT count(*) FROM analytics.search(:w, from_date => :d, to_date => :d)"),
                             {"w": w, "d": day}).scalar_one() for w in ("zebra", "giraffe")}
    assert hits == {"zebra": 0, "giraffe": 1}
