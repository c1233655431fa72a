"""The rules behind deletions, erasure and the work-area sweep, without services."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from callscribe.audit import key_hash
from callscribe.discovery import DELETE_GUARD_MIN, deletion_refused
from callscribe.erasure import scrub_file
from callscribe.manifests import from_parquet, to_parquet
from callscribe.retention import Held, verdict
from callscribe.storage import ObjectInfo


def test_deletions_are_believed_unless_most_of_a_big_day_vanished():
    assert not deletion_refused(1, 1)  # the only call of a day, deleted
    assert not deletion_refused(DELETE_GUARD_MIN - 1, DELETE_GUARD_MIN)  # a small day emptied
    assert not deletion_refused(50, 100)  # half: believed
    assert deletion_refused(51, 100)
    assert deletion_refused(1000, 1000)  # an empty listing of a full day: a wrong bucket or prefix
    assert not deletion_refused(1000, 1000, share=1.0)  # told to believe it


def test_erasures_name_objects_by_a_hash_of_the_key():
    assert key_hash("calls/2026/12/11/call.wav") != key_hash("calls/2026/12/11/call.wav ")
    assert len(key_hash("x")) == 64 and "call" not in key_hash("calls/call.wav")


def test_scrub_removes_a_recordings_rows_from_shards_and_job_manifests():
    shard = to_parquet(pd.DataFrame({"recording_id": [1, 2, 2, 3], "text": ["a", "b", "c", "d"]}),
                       {"job_id": "j", "recordings": [{"recording_id": 2}, {"recording_id": 3}],
                        "failures": [{"recording_id": 2, "reason": "x"}]})
    df, meta = from_parquet(scrub_file(shard, "runs/r/shards/j.parquet", {2}))
    assert df["recording_id"].tolist() == [1, 3] and df["text"].tolist() == ["a", "d"]
    assert meta["recordings"] == [{"recording_id": 3}] and meta["failures"] == [] and meta["job_id"] == "j"
    assert scrub_file(shard, "runs/r/shards/j.parquet", {9}) is None  # untouched: not rewritten

    job = json.dumps({"job_id": "j", "chunks": [{"recording_id": 2, "index": 0}, {"recording_id": 5, "index": 0}]})
    assert json.loads(scrub_file(job.encode(), "runs/r/jobs/j.json", {2}))["chunks"] == [{"recording_id": 5,
                                                                                          "index": 0}]
    assert scrub_file(job.encode(), "runs/r/jobs/j.json", {7}) is None
    assert scrub_file(b'{"error": "boom"}', "runs/r/shards/j.failed.json", {2}) is None


def test_the_sweep_keeps_what_live_runs_hold_and_what_is_recent():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    cutoff = now - timedelta(days=14)
    old, new = now - timedelta(days=20), now - timedelta(days=1)
    live = Held(runs=frozenset({"manual__2026-11-01"}), packs=frozenset({"_callscribe/chunks/2026-11-01/7.flac"}))

    def state(key: str, when: datetime | None) -> str:
        return verdict(ObjectInfo("calls", key, "e", 1, when), cutoff, live)

    assert state("_callscribe/runs/manual__2026-11-01/shards/job-00000.parquet", old) == "live"
    assert state("_callscribe/runs/manual__2026-11-012/shards/job-00000.parquet", old) == "expired"
    assert state("_callscribe/chunks/2026-11-01/7.flac", old) == "live"
    assert state("_callscribe/chunks/2026-11-01/8.flac", old) == "expired"
    assert state("_callscribe/chunks/2026-11-01/8.flac", new) == "recent"
    assert state("_callscribe/chunks/2026-11-01/8.flac", None) == "recent"  # unknown age: kept


def test_a_listings_is_latest_text_is_read_as_a_flag():
    """minio gives IsLatest as the listing's text: 'false' must not count as the latest version
    (purge(keep_latest=True) then kept every version of a scrubbed shard)."""
    from callscribe.storage import _latest

    assert [_latest(v) for v in ("true", "false", "True", True, False, None)] == [True, False, True, True, False, True]
