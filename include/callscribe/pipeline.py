"""The DAG's stages as plain functions: chunk, plan jobs, run a worker locally, load, report.

The DAG file only wires these; each takes and returns plain data (ids, URIs, dicts), so
they run the same under Airflow, from the CLI and in tests.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from datetime import UTC, date

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from callscribe import db
from callscribe.audio import TARGET_SR, DecodeError, decode, encode_flac
from callscribe.batching import plan_jobs as group_recordings
from callscribe.chunking import DEFAULT_CHUNKING, ChunkingParams, chunk_recording
from callscribe.config import S3Settings, speaker_for
from callscribe.manifests import (
    ChunkRef,
    JobManifest,
    RecordingEntry,
    chunks_frame,
    chunks_from_frame,
    from_parquet,
    to_parquet,
)
from callscribe.storage import Store, unavailable

log = logging.getLogger(__name__)
WORK_PREFIX = "_callscribe"
DEFAULT_JOB_AUDIO_S = float(os.environ.get("CALLSCRIBE_JOB_AUDIO_S", 4 * 3600))
DEFAULT_GROUP_SIZE = int(os.environ.get("CALLSCRIBE_CHUNK_GROUP_SIZE", 25))


def run_key(run_id: str) -> str:
    """A run id made safe for object keys."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


def _work_uri(store: Store, *parts: str) -> str:
    return store.uri("/".join((WORK_PREFIX, *parts)))


# ---------------------------------------------------------------- chunk


def chunk_one(store: Store, engine: Engine, recording_id: int,
              params: ChunkingParams = DEFAULT_CHUNKING) -> tuple[RecordingEntry, list[ChunkRef]] | None:
    """Decode and chunk one recording, write its speech pack; None when it failed."""
    with engine.connect() as conn:
        rec = conn.execute(db.q("recording_get"), {"id": recording_id}).one()
    try:
        etag, meta = store.stat(rec.bucket, rec.object_key)
        if etag != rec.etag:
            # Re-uploaded since discovery: this version's content is gone; the next run
            # registers the new one and supersedes this row.
            _mark(engine, recording_id, "failed", f"object changed since discovery (etag {etag})")
            return None
        data = store.get_bytes(f"s3://{rec.bucket}/{rec.object_key}")
        decoded = decode(data, rec.object_key)
    except DecodeError as exc:
        _mark(engine, recording_id, "quarantined", str(exc))
        return None
    except Exception as exc:
        if unavailable(exc):
            # An outage, not this recording's fault: fail the task so Airflow retries it,
            # without spending one of the recording's attempts.
            raise
        _mark(engine, recording_id, "failed", f"{type(exc).__name__}: {exc}")
        return None

    if decoded.warning:
        log.warning("recording %d: %s", recording_id, decoded.warning)
        meta = {**meta, "decode_warning": decoded.warning}
    chunks = chunk_recording(decoded, params)
    refs: list[ChunkRef] = []
    offset = 0
    for c, audio in chunks:
        n = len(audio)
        refs.append(ChunkRef(
            recording_id=recording_id, channel=c.channel, index=c.index,
            speaker=speaker_for(c.channel, decoded.n_channels),
            start_s=c.start_s, end_s=c.end_s, pack_offset=offset, n_samples=n,
        ))
        offset += n
    pack_uri = None
    if chunks:
        pack_uri = _work_uri(store, "chunks", str(rec.call_date), f"{recording_id}.flac")
        store.put_bytes(pack_uri, encode_flac(np.concatenate([a for _, a in chunks])), "audio/flac")
    with engine.begin() as conn:
        conn.execute(db.q("recording_chunked"), {
            "id": recording_id, "duration_s": decoded.duration_s, "channels": decoded.n_channels,
            "sample_rate": decoded.source_rate, "codec": decoded.codec,
            "agent_id": meta.get("agent-id"), "metadata": json.dumps(meta),
        })
    entry = RecordingEntry(recording_id=recording_id, n_channels=decoded.n_channels, pack_uri=pack_uri,
                           audio_s=offset / TARGET_SR)
    return entry, refs


def _mark(engine: Engine, recording_id: int, status: str, error: str) -> None:
    log.warning("recording %d %s: %s", recording_id, status, error)
    with engine.begin() as conn:
        conn.execute(db.q("recording_error"), {"id": recording_id, "status": status, "error": error[:2000]})


def chunk_group(store: Store, engine: Engine, ids: list[int], run_id: str, group_index: int) -> str:
    """Chunk a group of recordings; returns the URI of the group's chunk manifest."""
    entries: list[RecordingEntry] = []
    refs: list[ChunkRef] = []
    for rid in ids:
        out = chunk_one(store, engine, rid)
        if out is not None:
            entries.append(out[0])
            refs.extend(out[1])
    uri = _work_uri(store, "runs", run_key(run_id), "chunks", f"{group_index:05d}.parquet")
    meta = {"recordings": [e.model_dump() for e in entries]}
    store.put_bytes(uri, to_parquet(chunks_frame(refs), meta))
    log.info("group %d: %d/%d recordings chunked into %d chunks (%.1f s of speech)",
             group_index, len(entries), len(ids), len(refs), sum(e.audio_s for e in entries))
    return uri


# ---------------------------------------------------------------- plan jobs


def plan_jobs(store: Store, manifest_uris: list[str], run_id: str, engine_name: str,
              job_audio_s: float = DEFAULT_JOB_AUDIO_S, batch_audio_s: float | None = None) -> list[str]:
    """Gather chunk manifests into worker jobs of bounded audio; returns job manifest URIs."""
    from callscribe.transcription import DEFAULT_BATCH_AUDIO_S

    entries: list[RecordingEntry] = []
    frames: list[pd.DataFrame] = []
    for uri in manifest_uris:
        df, meta = from_parquet(store.get_bytes(uri))
        entries.extend(RecordingEntry(**e) for e in meta.get("recordings", []))
        frames.append(df)
    if not entries:
        return []
    chunks = chunks_from_frame(pd.concat(frames, ignore_index=True)) if frames else []
    by_rec: dict[int, list[ChunkRef]] = {}
    for c in chunks:
        by_rec.setdefault(c.recording_id, []).append(c)
    key = run_key(run_id)
    uris = []
    for j, members in enumerate(group_recordings([e.audio_s for e in entries], job_audio_s)):
        job_id = f"job-{j:05d}"
        recs = [entries[i] for i in members]
        job = JobManifest(
            job_id=job_id, run_id=run_id, engine=engine_name,
            batch_audio_s=batch_audio_s or DEFAULT_BATCH_AUDIO_S,
            shard_uri=_work_uri(store, "runs", key, "shards", f"{job_id}.parquet"),
            recordings=recs,
            chunks=[c for r in recs for c in by_rec.get(r.recording_id, [])],
        )
        uri = _work_uri(store, "runs", key, "jobs", f"{job_id}.json")
        store.put_bytes(uri, job.model_dump_json().encode(), "application/json")
        uris.append(uri)
    log.info("%d recordings in %d jobs", len(entries), len(uris))
    return uris


# ---------------------------------------------------------------- transcribe (local mode)


def worker_command(job_uri: str) -> list[str]:
    """The container's command; local mode runs exactly this in a child process."""
    return ["python", "-m", "callscribe.worker", "--job", job_uri]


def run_worker_local(job_uri: str, s3: S3Settings) -> str:
    """Run the worker command as a child process; returns the shard URI it reports."""
    with tempfile.TemporaryDirectory(prefix="callscribe-xcom-") as tmp:
        xcom = os.path.join(tmp, "return.json")
        cmd = [sys.executable, *worker_command(job_uri)[1:], "--xcom-path", xcom]
        # Credentials go through the environment, as Kubernetes secrets do for the pod.
        env = {**os.environ, **s3.to_env()}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.info("worker: %s", line.rstrip())
        if proc.wait() != 0:
            raise RuntimeError(f"worker exited with code {proc.returncode} for {job_uri}")
        with open(xcom) as f:
            return json.load(f)


def call_day(context) -> date:
    """The calendar day (UTC) a DAG run covers.

    An explicit ``date`` Param wins; otherwise the run's logical date, which for this DAG's
    timetable is the start of the day's data interval for scheduled runs and backfills,
    and the date a person picked for a manual run.
    """
    explicit = (context.get("params") or {}).get("date")
    if explicit:
        return date.fromisoformat(explicit)
    moment = context.get("logical_date") or context["data_interval_start"]
    return moment.astimezone(UTC).date()
