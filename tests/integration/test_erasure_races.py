"""Erasure and the work-area sweep against re-uploads, runs and registrations at the same moment.

Each test is an order of events that left an erased call's speech in Postgres or the work area.
"""

from __future__ import annotations

import threading
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, pipeline
from callscribe.discovery import day_prefix
from callscribe.erasure import erase
from callscribe.pipeline import pack_keys
from callscribe.samples import sample_dir
from tests.integration.helpers import key_versions, run_through

pytestmark = pytest.mark.integration

CALL_A = sample_dir() / "call-0003.wav"
CALL_B = sample_dir() / "call-0001.wav"


def _erase_during_registration(monkeypatch, s3, pg, key: str) -> threading.Thread:
    """Patch discovery so that, inside the next registration's transaction (after its rows are
    inserted, before it commits), an erasure of ``key`` runs in another session; returns its thread."""
    forget = discovery.forget_vanished
    box: dict = {}

    def forget_then_erase(conn, *args, **kw):
        out = forget(conn, *args, **kw)
        if "thread" not in box:
            box["thread"] = threading.Thread(target=lambda: box.setdefault("erased", erase(s3, pg, key, "dpo")),
                                             daemon=True)
            box["thread"].start()
            box["thread"].join(timeout=3)  # done at once, or waiting for this registration to commit
        return out

    monkeypatch.setattr(discovery, "forget_vanished", forget_then_erase)
    return box


def _register(s3, pg, day: date, run: str) -> None:
    """A discovery's registration of the day (as discovery.discover makes it)."""
    prefix = day_prefix("calls/", day)
    discovery.register(pg, list(s3.list(prefix)), day, run, discovery.store_deletions(s3, prefix))


def _finish(box: dict) -> None:
    box["thread"].join(timeout=60)
    assert not box["thread"].is_alive() and "erased" in box, "the erasure never finished"


def test_an_erasure_while_a_discovery_registers_the_key_keeps_it_out(stack, s3, pg, monkeypatch):
    """A data subject's call is erased (before any run found it) while a run's discovery is
    registering the day: the discovery's insert, not yet committed, is invisible to the erasure,
    and the erasure's hash is invisible to the insert. The call must not be transcribed."""
    day = date(2032, 3, 1)
    key = day_prefix("calls/", day) + "subject.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    box = _erase_during_registration(monkeypatch, s3, pg, key)
    _register(s3, pg, day, "race-erase-new")
    _finish(box)
    monkeypatch.undo()
    assert key_versions(pg, day, key) == []
    assert run_through(s3, pg, day, "race-erase-new-2").ok
    assert key_versions(pg, day, key) == []


def test_an_erasure_while_a_discovery_registers_a_new_upload_erases_it_too(stack, s3, pg, monkeypatch):
    """K done; K uploaded again; the erasure of K runs while a discovery registers the new upload:
    every version must go, not the old one alone, leaving the new one to be transcribed."""
    day = date(2032, 3, 2)
    key = day_prefix("calls/", day) + "subject.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    assert run_through(s3, pg, day, "race-erase-old-1").ok
    s3.put_bytes(s3.uri(key), CALL_B.read_bytes())
    box = _erase_during_registration(monkeypatch, s3, pg, key)
    _register(s3, pg, day, "race-erase-old-2")
    _finish(box)
    monkeypatch.undo()
    assert key_versions(pg, day, key) == []
    assert run_through(s3, pg, day, "race-erase-old-3").ok
    assert key_versions(pg, day, key) == []


def test_an_erasure_during_a_cleared_chunk_task_leaves_no_speech_pack(stack, s3, pg, monkeypatch):
    """A run is over (reported, its leases released); its chunk task is cleared in the UI, which
    the README calls harmless, and the call is erased while that task decodes it. Nothing holds a
    lease, so the erasure is not refused; the pack the task writes after it must not stay behind."""
    day = date(2032, 3, 3)
    key = day_prefix("calls/", day) + "subject.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    run = "race-erase-chunk"
    assert run_through(s3, pg, day, run).ok
    (row,) = key_versions(pg, day, key)
    chunk_recording = pipeline.chunk_recording

    def erase_meanwhile(*args, **kw):
        out = chunk_recording(*args, **kw)
        erase(s3, pg, key, "dpo")  # the speech is decoded; its pack is not written yet
        return out

    monkeypatch.setattr(pipeline, "chunk_recording", erase_meanwhile)
    manifest = pipeline.chunk_group(s3, pg, [row.id], run, 0)  # the cleared task, again
    monkeypatch.undo()
    assert key_versions(pg, day, key) == []
    assert [k for k in pack_keys(day, row.id) if s3.exists(s3.uri(k))] == []
    from callscribe.manifests import from_parquet

    df, meta = from_parquet(s3.get_bytes(manifest))
    assert row.id not in set(df.get("recording_id", [])) and not meta["recordings"]



# ---------------------------------------------------------------- a versioned bucket

VERSIONED = "callsv"


@pytest.fixture()
def versioned(s3):
    """A store on a bucket with versioning on (the README's erasure promises every version there)."""
    from dataclasses import replace

    from minio.versioningconfig import ENABLED, VersioningConfig

    from callscribe.storage import Store

    store = Store(replace(s3.settings, bucket=VERSIONED))
    if not store.client.bucket_exists(VERSIONED):
        store.client.make_bucket(VERSIONED)
    store.client.set_bucket_versioning(VERSIONED, VersioningConfig(ENABLED))
    return store


def _every_version(store, prefix: str) -> list[tuple[str, bytes]]:
    """(key, bytes) of every version under ``prefix``, delete markers left out."""
    out = []
    for o in store.client.list_objects(store.bucket, prefix=prefix, recursive=True, include_version=True):
        if o.is_delete_marker:
            continue
        resp = store.client.get_object(store.bucket, o.object_name, version_id=o.version_id)
        try:
            out.append((o.object_name, resp.read()))
        finally:
            resp.close()
            resp.release_conn()
    return out


def _holding(store, prefix: str, rid: int) -> list[str]:
    """Keys under ``prefix`` with a version (current or not) whose rows name recording ``rid``."""
    from callscribe.erasure import scrub_file

    return sorted({k for k, data in _every_version(store, prefix) if scrub_file(data, k, {rid}) is not None})


def _call_in_run_folder(store, pg, day: date, name: str, run: str) -> tuple[str, int, str]:
    """A done recording of ``store``'s bucket whose transcript rows sit in a shard of ``run`` beside
    another call's; returns its key, its id and the run folder."""
    import pandas as pd

    from callscribe.manifests import SEGMENT_COLUMNS, to_parquet

    key = day_prefix("calls/", day) + name
    store.put_bytes(store.uri(key), CALL_A.read_bytes())
    with pg.begin() as c:
        rid = c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels, last_run_id) "
            "VALUES (:b, :k, 'e', :d, :n, 'done', 1, :r) RETURNING id"),
            {"b": store.bucket, "k": key, "d": day, "n": name, "r": run}).scalar_one()
    rows = [(rid, 0, 0, "agent", 0.0, 1.0, "my date of birth is the first of May"),
            (rid + 100000, 0, 0, "agent", 0.0, 1.0, "someone else's call")]
    folder = f"_callscribe/runs/{run}/"
    store.put_bytes(store.uri(folder + "shards/job-00000.parquet"), to_parquet(
        pd.DataFrame(rows, columns=SEGMENT_COLUMNS), {"recordings": [{"recording_id": rid}]}))
    return key, rid, folder


def test_an_erasure_on_a_versioned_bucket_leaves_no_old_version_of_a_rewritten_shard(stack, versioned, pg):
    """The erasure rewrites a shard without the call, then removes the shard's older versions
    (purge with keep_latest). minio reports IsLatest as the text 'true'/'false', and the text
    'false' is true in Python: every version was taken for the latest and none was removed."""
    day = date(2032, 3, 5)
    key, rid, folder = _call_in_run_folder(versioned, pg, day, "subject.wav", "versioned-rewrite")
    assert _holding(versioned, folder, rid) == [folder + "shards/job-00000.parquet"]
    done = erase(versioned, pg, key, "dpo")
    assert done.rewritten
    assert _holding(versioned, folder, rid) == []
    assert len(_every_version(versioned, folder)) == 1  # the scrubbed shard, the other call's rows kept


def test_an_erasure_after_the_sweep_leaves_no_transcript_on_a_versioned_bucket(stack, versioned, pg):
    """The sweep deleted a run's old shard; on a versioned bucket a delete hides it behind a
    marker and keeps its bytes, and the erasure only looked at current objects: the erased call's
    transcript stayed in the bucket. The sweep itself must not leave expired speech behind either."""
    from datetime import UTC, datetime, timedelta

    from callscribe import retention

    day = date(2032, 3, 6)
    key, rid, folder = _call_in_run_folder(versioned, pg, day, "subject.wav", "versioned-swept")
    pack = versioned.uri(pack_keys(day, rid)[0])
    versioned.put_bytes(pack, b"speech")
    later = datetime.now(UTC) + timedelta(minutes=5)
    swept = retention.sweep(versioned, pg, timedelta(0), now=later, under=folder)
    assert swept.deleted == 1
    assert _every_version(versioned, folder) == []  # expired means gone, not hidden
    # A shard a sweep before this fix hid behind a delete marker: the erasure must find it all the same.
    versioned.put_bytes(versioned.uri(folder + "shards/job-00000.parquet"), _every_shard_bytes(rid))
    versioned.delete(versioned.uri(folder + "shards/job-00000.parquet"))
    assert _holding(versioned, folder, rid)
    erase(versioned, pg, key, "dpo")
    assert _holding(versioned, folder, rid) == []
    assert _every_version(versioned, pack_keys(day, rid)[0]) == []


def _every_shard_bytes(rid: int) -> bytes:
    import pandas as pd

    from callscribe.manifests import SEGMENT_COLUMNS, to_parquet

    return to_parquet(pd.DataFrame([(rid, 0, 0, "agent", 0.0, 1.0, "my date of birth")], columns=SEGMENT_COLUMNS),
                      {"recordings": [{"recording_id": rid}]})


def test_an_erasure_during_a_cleared_transcribe_task_leaves_no_transcript_in_its_shard(stack, s3, pg):
    """As for the chunk task: a run is over, its transcribe task is cleared (downstream with it),
    and the call is erased while the worker transcribes it. The worker writes its shard after the
    erasure scrubbed the run's folder; the load that follows must not leave the erased call's text
    in it (the fence already keeps it out of Postgres)."""
    from callscribe import loading, worker
    from callscribe.manifests import JobManifest
    from callscribe.pipeline import run_key

    day = date(2032, 3, 7)
    key = day_prefix("calls/", day) + "subject.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    run = "race-erase-transcribe"
    assert run_through(s3, pg, day, run).ok
    (row,) = key_versions(pg, day, key)
    folder = f"_callscribe/runs/{run_key(run)}/"
    (job_uri,) = [s3.uri(o.key) for o in s3.list(folder + "jobs/") if not o.key.endswith(".failed.json")]
    job = JobManifest.model_validate_json(s3.get_bytes(job_uri))  # the worker has read its job

    class ErasedBeforeTheShardIsWritten:
        def __getattr__(self, name):
            return getattr(s3, name)

        def put_bytes(self, uri, data, *args, **kw):
            if uri == job.shard_uri:
                erase(s3, pg, key, "dpo")
            return s3.put_bytes(uri, data, *args, **kw)

    worker.run_job(job, ErasedBeforeTheShardIsWritten())
    assert _holding(s3, folder, row.id), "the worker's shard holds the erased call (the race happened)"
    # The cleared task's downstream load: the shard, scrubbed, still matches its (scrubbed) job.
    assert not loading.load_jobs(s3, pg, [job_uri], run).unfinished_jobs
    assert key_versions(pg, day, key) == []
    assert _holding(s3, folder, row.id) == []
