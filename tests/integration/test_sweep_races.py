"""The maintenance DAG's sweep against live runs and versioned buckets, and its alert."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from callscribe import retention


class _RewritesDuringListing:
    """The store, but a new run claims and re-chunks ``key`` just after the sweep lists it."""

    def __init__(self, store, key, on_listed):
        self._store, self._key, self._on_listed = store, key, on_listed

    def __getattr__(self, name):
        return getattr(self._store, name)

    def list(self, prefix, bucket=None):
        for obj in self._store.list(prefix, bucket):
            if obj.key == self._key:  # listed (its page fetched) before the run wrote it again
                self._on_listed()
            yield obj


def test_the_sweep_keeps_a_pack_a_new_run_rewrote_after_it_was_listed(stack, s3, pg):
    from datetime import date

    from callscribe.pipeline import pack_key

    day = date(2026, 9, 2)
    with pg.begin() as c:
        rid = c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status) "
            "VALUES ('calls', 'calls/2026/09/02/rev-h.wav', 'e', :d, 'rev-h', 'done') RETURNING id"),
            {"d": day}).scalar_one()
    key = pack_key(day, rid, "flac")
    s3.put_bytes(s3.uri(key), b"old pack")
    time.sleep(2.5)  # the old pack is older than the sweep's 1 s retention

    def new_run_rechunks():
        # A backfill with `reprocess` claims the recording and its chunk task writes the pack again.
        with pg.begin() as c:
            c.execute(sa.text("UPDATE recordings SET last_run_id = 'rev-h-backfill', "
                              "lease_until = now() + interval '1 hour' WHERE id = :id"), {"id": rid})
        s3.put_bytes(s3.uri(key), b"new pack")

    store = _RewritesDuringListing(s3, key, new_run_rechunks)
    retention.sweep(store, pg, timedelta(seconds=1), under=f"_callscribe/chunks/{day}/")
    assert s3.exists(s3.uri(key)), "the sweep deleted the pack a live run had just written"
    assert s3.get_bytes(s3.uri(key)) == b"new pack"


def test_a_red_maintenance_run_alerts(stack):
    from airflow.dag_processing.dagbag import DagBag

    from callscribe.alerts import run_failed
    from tests.integration.test_dag_integrity import REPO

    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("callscribe_maintenance")
    cbs = dag.on_failure_callback
    cbs = cbs if isinstance(cbs, list) else [cbs]
    assert run_failed in cbs, "a red maintenance run (sweep failing) sends no CALLSCRIBE ALERT"


def test_the_sweep_removes_old_versions_hidden_behind_a_delete_marker(stack, s3, pg):
    """On a versioned bucket a task retry deletes the earlier try's shard and failure note (worker.py):
    their bytes stay behind a delete marker, where a listing of current objects never sees them."""
    from dataclasses import replace

    from minio.versioningconfig import ENABLED, VersioningConfig

    from callscribe.storage import Store

    store = Store(replace(s3.settings, bucket="callsv"))
    if not store.client.bucket_exists("callsv"):
        store.client.make_bucket("callsv")
    store.client.set_bucket_versioning("callsv", VersioningConfig(ENABLED))
    area = "_callscribe/runs/rev-h-old-run/shards/"
    store.put_bytes(store.uri(area + "job-00000.parquet"), b"transcript text of an earlier try")
    store.put_bytes(store.uri(area + "job-00000.failed.json"), b'{"error": "boom"}')
    store.delete(store.uri(area + "job-00000.parquet"))
    store.delete(store.uri(area + "job-00000.failed.json"))
    time.sleep(2.5)
    retention.sweep(store, pg, timedelta(seconds=1), under=area)
    left = [(o.object_name, o.is_delete_marker)
            for o in store.client.list_objects("callsv", prefix=area, recursive=True, include_version=True)]
    assert left == [], f"the sweep left old versions behind: {left}"
