"""The daily maintenance run keeps erasures and their notes in step, for an operator who did not
follow the restore runbook to the letter: an erasure a restore undid on a day no run lists again,
and an erasure whose note the store refused (the operator never ran the erase again). Days 2087."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from callscribe.audit import key_hash
from callscribe.discovery import day_prefix
from callscribe.erasure import erase, note_key
from callscribe.storage import Store
from tests.integration.restore import bucket_of_its_own

pytestmark = pytest.mark.integration


@pytest.fixture
def own(s3, restorable):
    with bucket_of_its_own(s3, "callsupkeep") as store:
        yield store


def _maintenance(dry_run: bool = False):
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.test_dag_integrity import REPO

    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("callscribe_maintenance")
    dr = dag.test(logical_date=datetime(2087, 3, 1, tzinfo=UTC), run_conf={"dry_run": dry_run})
    assert str(dr.state).endswith("success"), dr.state
    return dr


def _done_call(engine, bucket: str, key: str, day: date) -> None:
    """A transcribed call of an old day (what a restore brings back): its row."""
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status) "
            "VALUES (:b, :k, 'e', :d, :c, 'done')"), {"b": bucket, "k": key, "d": day, "c": key.rsplit("/", 1)[-1]})



def _rows(engine, bucket: str, key: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM recordings WHERE bucket = :b AND object_key = :k"),
                         {"b": bucket, "k": key}).scalar_one()


def _erased(engine, bucket: str, key: str) -> bool:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM erasures WHERE bucket = :b AND key_sha256 = :h"),
                         {"b": bucket, "h": key_hash(key)}).scalar_one() == 1


def test_the_daily_maintenance_run_takes_back_an_erasure_a_restore_undid(stack, own, restorable):
    """A restore after an erasure of an old day's call, and the runbook's `erase --reapply` forgotten:
    no run lists that day again, so without the maintenance run the call stays searchable for good."""
    day = date(2087, 1, 5)
    key = day_prefix("calls/", day) + "upkeep-restored.wav"
    own.put_bytes(own.uri(key), b"RIFF")
    _done_call(restorable.engine, own.bucket, key, day)
    backup = restorable.backup()
    erase(own, restorable.engine, key, actor="dpo@example.com")
    restorable.restore(backup)
    assert _rows(restorable.engine, own.bucket, key) == 1  # back in search

    _maintenance(dry_run=True)
    assert _rows(restorable.engine, own.bucket, key) == 1, "a dry run re-applied an erasure"
    _maintenance()
    assert _rows(restorable.engine, own.bucket, key) == 0, "the erased call is still in the database"
    assert _erased(restorable.engine, own.bucket, key)


def test_the_daily_maintenance_run_writes_a_note_the_store_refused(stack, own, restorable, monkeypatch):
    """The store refused the note after the database committed the erasure, and nobody ran the erase
    again: the note, which alone outlives a restore, is written by the next maintenance run."""
    day = date(2087, 1, 6)
    key = day_prefix("calls/", day) + "upkeep-unnoted.wav"
    early = day_prefix("calls/", date(2087, 1, 7)) + "upkeep-unregistered.wav"  # erased before any run found it
    own.put_bytes(own.uri(key), b"RIFF")
    own.put_bytes(own.uri(early), b"RIFF")
    _done_call(restorable.engine, own.bucket, key, day)
    real_put = Store.put_bytes

    def down_for_notes(self, uri, *a, **kw):
        if "/_callscribe_erasures/" in uri:
            raise ConnectionError("store down")
        return real_put(self, uri, *a, **kw)

    with monkeypatch.context() as mp:
        mp.setattr(Store, "put_bytes", down_for_notes)
        for k in (key, early):
            with pytest.raises(Exception, match="note"):
                erase(own, restorable.engine, k, actor="dpo@example.com")
    notes = [own.uri(note_key(own.bucket, key_hash(key), day)), own.uri(note_key(own.bucket, key_hash(early), None))]
    assert not any(own.exists(n) for n in notes)

    _maintenance(dry_run=True)
    assert not any(own.exists(n) for n in notes), "a dry run wrote notes"
    _maintenance()
    assert all(own.exists(n) for n in notes), [o.key for o in own.list("_callscribe_erasures/")]

    # And the notes do what they are for: the database loses the erasures (a restore to before them,
    # the call back in search), and the next maintenance run re-applies them.
    with restorable.engine.begin() as c:
        c.execute(sa.text("DELETE FROM erasures WHERE bucket = :b"), {"b": own.bucket})
    _done_call(restorable.engine, own.bucket, key, day)
    _maintenance()
    assert _rows(restorable.engine, own.bucket, key) == 0
    assert _erased(restorable.engine, own.bucket, key) and _erased(restorable.engine, own.bucket, early)
