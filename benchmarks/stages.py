"""One function per pipeline stage; each returns its measured runs (and notes).

All run against the embedded services of the `bench` profile, on generated data.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from benchmarks.data import encode, sentence, tiled_call
from benchmarks.null_engine import NullEngine
from callscribe import db, discovery, partitions, pipeline
from callscribe.loading import NEXT_WORDS, load_shards
from callscribe.manifests import SEGMENT_COLUMNS, JobManifest, RecordingEntry, ShardInfo, to_parquet
from callscribe.redaction import redact_channel
from callscribe.samples import distinct_copy
from callscribe.search import SearchFilters, search
from callscribe.storage import Store
from callscribe.worker import run_job


def _register(engine, bucket: str, key: str, day: date, etag: str = "bench") -> int:
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM recordings WHERE bucket = :b AND object_key = :k"), {"b": bucket, "k": key})
        return c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status) "
            "VALUES (:b, :k, :e, :d, :c, 'pending') RETURNING id"),
            {"b": bucket, "k": key, "e": etag, "d": day, "c": key.rsplit("/", 1)[-1]}).scalar_one()


def _one_core():
    """Pin to a single CPU while measuring CPU time per audio second on one core."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    return before


# ---------------------------------------------------------------- chunking


def chunking(store: Store, engine, seconds: float, runs: int) -> dict:
    """Audio seconds chunked (decode, resample, VAD split, pack write) per CPU second, one core."""
    day = date(2025, 1, 1)
    inputs = {
        "wav_ulaw_stereo": ("bench-ulaw-stereo.wav", encode(tiled_call(seconds, True), 8000, "WAV", "ULAW")),
        "mp3": ("bench-32k.mp3", encode(tiled_call(seconds, False), 8000, "MP3", "MPEG_LAYER_III",
                                              bitrate_mode="CONSTANT", compression_level=0.75)),
    }
    out: dict = {"figures": {}, "jobs": {}}
    for name, (fname, data) in inputs.items():
        key = f"bench/{day:%Y/%m/%d}/{fname}"
        store.put_bytes(store.uri(key), data)
        rid = _register(engine, store.bucket, key, day, etag=store.stat(store.bucket, key)[0])
        values = []
        saved = _one_core()
        try:
            for _ in range(runs):
                t = time.process_time()
                result = pipeline.chunk_one(store, engine, rid)
                values.append(seconds / (time.process_time() - t))
        finally:
            os.sched_setaffinity(0, saved)
        assert result is not None, f"{name} failed to chunk"
        with engine.connect() as c:  # a partial decode would flatter the figure
            decoded_s = c.execute(sa.text("SELECT duration_s FROM recordings WHERE id = :i"), {"i": rid}).scalar_one()
        assert abs(decoded_s - seconds) < 1, (name, decoded_s)
        kbps = len(data) * 8 / seconds / 1000
        out["figures"][name] = {"runs": values, "input_kbps": round(kbps, 1)}
        out["jobs"][name] = result
    return out


# ---------------------------------------------------------------- worker data path


def worker_null(store: Store, chunked: dict, runs: int) -> list[float]:
    """The worker's data path with a no-op engine: fetch packs, batch, write the shard."""
    entries = [entry for entry, _ in chunked.values()]
    refs = [r for _, rs in chunked.values() for r in rs]
    job = JobManifest(job_id="bench-null", run_id="bench", engine="null", batch_audio_s=240.0,
                      shard_uri=store.uri("_callscribe/bench/shards/null.parquet"), recordings=entries, chunks=refs)
    values = []
    for _ in range(runs):
        t = time.perf_counter()
        run_job(job, store, engine=NullEngine())
        values.append(job.audio_s / (time.perf_counter() - t))
    return values


# ---------------------------------------------------------------- loading


def loading(store: Store, engine, n_segments: int, runs: int, per_recording: int = 100, shards: int = 1) -> list[float]:
    """Segments per second through load_shards (S3 read, COPY, replace, commit): one shard of
    ``n_segments``, or a run's ``shards`` shards of a share each (loaded as the load task does)."""
    rng = random.Random(1)
    values = []
    with engine.begin() as c:  # earlier invocations' rows (segments go with them)
        c.execute(sa.text("DELETE FROM recordings WHERE object_key LIKE 'bench-load/%'"))
    for run in range(runs):
        n_rec = max(1, n_segments // per_recording)
        day = date(2025, 2, 1) + timedelta(days=run)
        with engine.begin() as c:
            ids = [c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels, last_run_id) "
                "VALUES ('calls', :k, 'e', :d, :k, 'chunked', 2, 'bench-load') RETURNING id"),
                {"k": f"bench-load/{day}/{shards}/{i}.wav", "d": day}).scalar_one() for i in range(n_rec)]
        uris = []
        for k in range(shards):
            part = ids[k::shards]
            rows = []
            for rid in part:
                for seq in range(per_recording):
                    ch = seq % 2
                    rows.append((rid, ch, seq // 2, "agent" if ch == 0 else "customer", seq * 3.0,
                                 seq * 3.0 + 2.5, sentence(rng)))
            info = ShardInfo(job_id=f"bench-load-{run}-{k}", run_id="bench-load", engine="null", batches=[],
                             recordings=[RecordingEntry(recording_id=i, n_channels=2) for i in part])
            uri = store.uri(f"_callscribe/bench/load-{run}-{k}.parquet")
            store.put_bytes(uri, to_parquet(pd.DataFrame(rows, columns=SEGMENT_COLUMNS), info))
            uris.append(uri)
        t = time.perf_counter()
        result = load_shards(store, engine, uris)
        values.append(result.segments / (time.perf_counter() - t))
    return values


# ---------------------------------------------------------------- discovery


def discovery_stage(store: Store, engine, n_objects: int, runs: int) -> dict:
    """Seconds to list a day of n objects and diff it against `recordings` (fresh day, then a re-run)."""
    day = date(2025, 3, 1)
    prefix = discovery.day_prefix("bench-discovery/", day)
    existing = sum(1 for _ in store.list(prefix))
    if existing < n_objects:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda i: store.put_bytes(store.uri(f"{prefix}call-{i:06d}.wav"),
                                                    f"RIFF{i}".encode()),  # distinct: copies are one call
                          range(existing, n_objects)))
    fresh, rerun = [], []
    for run in range(runs):
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM recordings WHERE call_date = :d"), {"d": day})
        t = time.perf_counter()
        ids = discovery.discover(store, engine, day, "bench-discovery/", f"bench-disc-{run}")
        fresh.append(time.perf_counter() - t)
        assert len(ids) == n_objects, (len(ids), n_objects)
        t = time.perf_counter()
        discovery.discover(store, engine, day, "bench-discovery/", f"bench-disc-{run}-again")
        rerun.append(time.perf_counter() - t)
    return {"fresh": fresh, "rerun": rerun}


# ---------------------------------------------------------------- search


# The search data's newest day, after every other stage's days: search ranks in a window that
# ends at the newest day with calls, which in production is where the volume is.
SEARCH_NEWEST = date(2026, 12, 31)
SEARCHES = [  # (query, filters): what analysts type most
    ('"cancel my account"', SearchFilters()),
    ("refund OR discount", SearchFilters()),
    ("router -internet", SearchFilters()),
    ("bill", SearchFilters(speaker="customer")),
    ("payment card", SearchFilters(from_date=SEARCH_NEWEST - timedelta(days=20),
                                   to_date=SEARCH_NEWEST - timedelta(days=18))),
    ("upgrade plan", SearchFilters(agent="agent-07")),
    ("Siobahn", SearchFilters(fuzzy=True)),
]


def fill_segments(engine, n_segments: int, per_recording: int = 200, days: int = 30) -> None:
    """COPY n synthetic segments (with agents and days) straight into the tables."""
    with engine.connect() as c:
        have = c.execute(sa.text("SELECT count(*) FROM segments s JOIN recordings r ON r.id = s.recording_id "
                                 "WHERE r.object_key LIKE 'bench-search/%' AND r.call_date > :d"),
                         {"d": SEARCH_NEWEST - timedelta(days=days)}).scalar_one()
    if have >= n_segments:
        _index_words(engine)  # a fill from before the lexicon
        return
    with engine.begin() as c:  # a smaller fill (the smoke run's) is replaced; segments go with it
        c.execute(sa.text("DELETE FROM recordings WHERE object_key LIKE 'bench-search/%'"))
    partitions.ensure_months(engine, [SEARCH_NEWEST - timedelta(days=days), SEARCH_NEWEST])
    rng = random.Random(2)
    n_rec = n_segments // per_recording
    batch = 200
    for start in range(0, n_rec, batch):
        with engine.begin() as c:
            # Oldest day first, as nightly loads write them; the day and agent go on the segments too.
            calls = [(SEARCH_NEWEST - timedelta(days=days - 1 - i * days // n_rec), f"agent-{i % 40:02d}", i)
                     for i in range(start, min(n_rec, start + batch))]
            ids = [c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, agent_id, status, channels, "
                "duration_s) VALUES ('calls', :k, 'e', :d, :k, :a, 'done', 2, 900) RETURNING id"),
                {"k": f"bench-search/{i}.wav", "d": day, "a": agent}).scalar_one() for day, agent, i in calls]
            rows = []
            for rid, (day, agent, _) in zip(ids, calls, strict=True):
                texts = [sentence(rng) for _ in range(per_recording)]
                # Redacted as the loader does, a channel at a time (channel 0 holds the even ones).
                masked = [None] * per_recording
                masked[0::2], masked[1::2] = redact_channel(texts[0::2]), redact_channel(texts[1::2])
                for seq, text in enumerate(texts):
                    ch = seq % 2
                    nxt = " ".join(masked[seq + 2].split()[:NEXT_WORDS]) if seq + 2 < per_recording else None
                    rows.append((rid, ch, seq // 2, "agent" if ch == 0 else "customer", seq * 4.0, seq * 4.0 + 3.5,
                                 text, masked[seq], nxt, day, agent))
            # In the loader's order (loading.load_order): by day, then agent, recording, channel, seq.
            rows.sort(key=lambda r: (r[9], r[10], r[0], r[1], r[2]))
            db.copy_rows(c, "segments", ["recording_id", "channel", "seq", "speaker", "start_s", "end_s", "text",
                                         "text_redacted", "next_redacted", "call_date", "agent_id"], rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE segments")
        c.exec_driver_sql("VACUUM ANALYZE recordings")
    _index_words(engine)


def _index_words(engine) -> None:
    """The search data's words into the lexicon, as the loader adds a shard's (similar-word search
    starts there)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("INSERT INTO lexicon (word) SELECT DISTINCT callscribe_words(s.text_redacted) "
                          "FROM segments AS s JOIN recordings AS r ON r.id = s.recording_id "
                          "WHERE r.object_key LIKE 'bench-search/%' ON CONFLICT DO NOTHING"))
        c.exec_driver_sql("VACUUM ANALYZE lexicon")


def search_latency(engine, n_segments: int, runs: int, repeats: int = 10) -> dict:
    fill_segments(engine, n_segments)
    p95s, per_query = [], {}
    for _ in range(runs):
        latencies = []
        for query, filters in SEARCHES:
            for _ in range(repeats):
                t = time.perf_counter()
                search(engine, query, limit=20, filters=filters)
                ms = (time.perf_counter() - t) * 1000
                latencies.append(ms)
                per_query.setdefault(query, []).append(ms)
        p95s.append(float(np.percentile(latencies, 95)))
    return {"p95": p95s, "per_query_median_ms": {q: round(statistics.median(v), 2) for q, v in per_query.items()}}


# ---------------------------------------------------------------- end to end


def end_to_end(store: Store, engine, seconds_per_call: float, calls: int, runs: int) -> list[dict]:
    """Share of a dag.test() run's wall time spent outside the embedded engine."""
    from callscribe.cli import run_day

    out = []
    for run in range(runs):
        day = date(2026, 11, 2) + timedelta(days=run)  # inside the DAG's schedule
        audio = encode(tiled_call(seconds_per_call, True), 8000, "WAV", "ULAW")
        for i in range(calls):
            store.put_bytes(store.uri(discovery.day_prefix("calls/", day) + f"e2e-{i}.wav"),
                            distinct_copy(audio, ".wav", i))  # identical uploads are one call
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM recordings WHERE call_date = :d"), {"d": day})
        t = time.perf_counter()
        dr = run_day(day)
        wall = time.perf_counter() - t
        assert str(dr.state).endswith("success"), dr.state
        with engine.connect() as c:
            model_s = c.execute(sa.text("SELECT COALESCE(sum(model_s), 0) FROM batch_metrics WHERE run_id = :r"),
                                {"r": dr.run_id}).scalar_one()
        out.append({"wall_s": wall, "engine_s": model_s, "share": 1 - model_s / wall,
                    "audio_s": seconds_per_call * calls, "at": datetime.now().isoformat()})
    return out
