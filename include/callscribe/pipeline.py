"""The DAG's stages as plain functions: chunk, plan jobs, run a worker locally, load, report.

The DAG file only wires these; each takes and returns plain data (ids, URIs, dicts), so
they run the same under Airflow, from the CLI and in tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import numpy as np
from sqlalchemy.engine import Engine, Row

from callscribe import db
from callscribe.audio import PACK_FORMATS, TARGET_SR, DecodeError, decode, encode_pack, pack_format_for
from callscribe.batching import JobSizing, balance_jobs, job_count
from callscribe.chunking import DEFAULT_CHUNKING, ChunkingParams, chunk_recording, chunking_for, pack_rate
from callscribe.config import (
    ERASURE_NOTES_PREFIX,
    WORK_PREFIX,
    S3Settings,
    agent_id,
    copy_window_days,
    day_zone,
    diarize_mono,
    diarized_speaker,
    pack_format,
    run_area,
    run_key,
    speaker_for,
    speakers_hint,
)
from callscribe.errors import describe
from callscribe.job_notes import forget_cause, leave_cause, plan_note
from callscribe.manifests import (
    ChunkRef,
    JobManifest,
    RecordingEntry,
    chunks_frame,
    chunks_from_frame,
    from_parquet,
    to_parquet,
)
from callscribe.storage import CHANGED, S3Error, Store, refuses_client, unavailable

log = logging.getLogger(__name__)
DEFAULT_GROUP_SIZE = int(os.environ.get("CALLSCRIBE_CHUNK_GROUP_SIZE", 25))


# States a chunk task leaves alone even when its run still owns the row.
_NOT_TO_CHUNK = ("superseded", "quarantined", "deleted", "duplicate")


def _work_uri(store: Store, *parts: str) -> str:
    return store.uri("/".join((WORK_PREFIX, *parts)))


def pack_key(call_date: object, recording_id: int, fmt: str) -> str:
    """Where a recording's speech pack is written (one per recording, overwritten when re-chunked)."""
    return f"{WORK_PREFIX}/chunks/{call_date}/{recording_id}.{fmt}"


def pack_keys(call_date: object, recording_id: int) -> list[str]:
    """Every key a recording's pack may have: one per format, as the setting may have changed
    between runs (an erasure removes them all; the sweep keeps them all while a run holds it)."""
    return [pack_key(call_date, recording_id, fmt) for fmt in PACK_FORMATS]


# ---------------------------------------------------------------- chunk


def chunk_one(store: Store, engine: Engine, recording_id: int, params: ChunkingParams = DEFAULT_CHUNKING,
              run_id: str | None = None, pack: str | None = None,
              freed: list[tuple[int, int]] | None = None,
              freed_note: str | None = None) -> tuple[RecordingEntry, list[ChunkRef]] | None:
    """Decode and chunk one recording, write its speech pack; None when it failed.

    A recording that cannot be read frees its copies for the run to chunk instead: their ids
    are added to ``freed`` with its own, (copy, recording) (recording_copies_free.sql), and written to
    ``freed_note`` (in the work area) before they are freed, so a retry of the task still chunks them.

    With a ``run_id``, only a recording that run still owns is touched: a cleared chunk task
    of an old run leaves alone what a newer run has taken since. ``pack``: the pack's format
    (audio.PACK_FORMATS; the CALLSCRIBE_PACK_FORMAT setting when not given), checked before
    the recording is touched.
    """
    pack = pack_format(pack)
    with engine.connect() as conn:
        rec = conn.execute(db.q("recording_get"), {"id": recording_id}).one_or_none()
    if rec is None:  # erased on request since the run claimed it
        log.info("recording %d is gone (erased); left alone", recording_id)
        return None
    if run_id is not None and (rec.last_run_id != run_id or rec.status in _NOT_TO_CHUNK):
        log.info("recording %d is %s and owned by run %s now; left alone", recording_id, rec.status, rec.last_run_id)
        return None
    if run_id is not None and rec.attempted_run_id == run_id and rec.chunking_since is not None:
        from callscribe.discovery import pay_refund, refund_buckets

        # The note may be in the bucket the run listed (its recordings'), written before the S3
        # connection was switched to another bucket mid-run, or in the store's own.
        if any(pay_refund(store, engine, run_id, recording_id, b) for b in refund_buckets(store, rec.bucket)):
            # Not a death: the try before failed on a database outage that outlasted its refund.
            log.info("recording %d: its attempt given back (the try before failed on a database outage)",
                     recording_id)
            return chunk_one(store, engine, recording_id, params, run_id, pack, freed, freed_note)
        # This run's task was on it and never finished it: the task's process died here (a crash in
        # a native decoder, out of memory, the task's timeout). Not again in this run, or it would take
        # the rest of its group down on every try; the next run tries it once more (it may have been
        # the machine), up to its attempts.
        _mark(engine, recording_id, "failed", "the chunk task died while decoding or chunking it (a crash in a "
              f"decoder, out of memory, or the task's timeout; began {rec.chunking_since:%Y-%m-%d %H:%M:%S %Z}); "
              "the rest of its group was chunked without it", run_id)
        return None
    with engine.begin() as conn:
        since = conn.execute(db.q("recording_attempt"), {"id": recording_id, "run_id": run_id}).scalar()
    try:
        return _chunk_attempted(store, engine, rec, params, run_id, pack, since)
    except _Unreadable:
        if freed is not None:
            got = _free_copies(engine, recording_id, run_id, store, freed_note, freed)
            freed.extend((i, recording_id) for i in got)
        return None
    except KeyboardInterrupt:
        # Stopped by hand (`callscribe run` interrupted), not by the file: the same run id may run
        # again, and the mark left would read as a crash on this file.
        _refund(store, engine, recording_id, run_id, since)
        raise


def _chunk_attempted(store: Store, engine: Engine, rec: Row, params: ChunkingParams, run_id: str | None,
                     pack: str, since: datetime | None) -> tuple[RecordingEntry, list[ChunkRef]] | None:
    """chunk_one once the run's attempt at ``rec`` is counted (its chunking mark ``since``): decode,
    chunk, write the pack."""
    recording_id = rec.id
    try:
        etag, meta = store.stat(rec.bucket, rec.object_key)
        if etag != rec.etag:
            # Re-uploaded since discovery: this version's content is gone; the next run
            # registers the new one and supersedes this row.
            _mark_attempted(store, engine, recording_id, "failed", f"object changed since discovery (etag {etag})",
                            run_id, since)
            raise _Unreadable
        # Read only that content (If-Match): an upload landing between the check above and this read
        # would otherwise be transcribed as the version discovery registered (and, put back after it,
        # stay under that version's row for good).
        data = store.get_bytes(f"s3://{rec.bucket}/{rec.object_key}", etag=rec.etag)
    except _Unreadable:
        raise
    except Exception as exc:
        if db.unavailable(exc):  # marking it (above), its attempt given back there
            raise
        _read_failed(store, engine, recording_id, run_id, since, exc)
        raise _Unreadable from None
    if _copy_by_bytes(store, engine, rec, data, run_id, since, meta):
        return None
    try:
        decoded = decode(data, rec.object_key)
    except DecodeError as exc:
        _mark_attempted(store, engine, recording_id, "quarantined", str(exc), run_id, since)
        return None
    except Exception as exc:
        _read_failed(store, engine, recording_id, run_id, since, exc)
        return None

    try:
        if decoded.warning:
            log.warning("recording %d: %s", recording_id, decoded.warning)
            meta = {**meta, "decode_warning": decoded.warning}
        if decoded.n_channels == 1 and diarize_mono():
            # A mono call's speakers are told apart at chunking: each chunk holds one voice.
            params = replace(params, diarize=True, speakers=speakers_hint(meta))
        hint = params.speakers if params.diarize else 1
        chunks = chunk_recording(decoded, params, at_16k=False)
        n_speakers = len({c.speaker for c, _ in chunks if c.speaker is not None})
        refs: list[ChunkRef] = []
        offset = 0
        rate = pack_rate(chunks[0][0].rate) if chunks else TARGET_SR  # every channel has the same rate
        for c, audio in chunks:
            n = len(audio)
            refs.append(ChunkRef(
                recording_id=recording_id, channel=c.channel, index=c.index,
                speaker=(speaker_for(c.channel, decoded.n_channels) if c.speaker is None
                         else diarized_speaker(c.speaker, n_speakers, meta, hint)),
                start_s=c.start_s, end_s=c.end_s, pack_offset=offset, n_samples=n, pack_rate=rate,
                regions=c.region_map(),
            ))
            offset += n
        pack_uri = None
        if chunks:
            samples = np.concatenate([a for _, a in chunks])
            fmt = pack_format_for(samples, pack)
            pack_uri = store.uri(pack_key(rec.call_date, recording_id, fmt))
            store.put_bytes(pack_uri, encode_pack(samples, rate, fmt), f"audio/{fmt}")
        with engine.begin() as conn:
            conn.execute(db.q("recording_chunked"), {
                "id": recording_id, "duration_s": decoded.duration_s, "channels": decoded.n_channels,
                "sample_rate": decoded.source_rate, "codec": decoded.codec,
                "agent_id": agent_id(meta), "metadata": json.dumps(meta), "run_id": run_id,
                "seen_modified": rec.object_modified,
            })
            gone = conn.execute(db.q("recording_get"), {"id": recording_id}).one_or_none() is None
    except Exception as exc:
        if unavailable(exc) or db.unavailable(exc) or (
                isinstance(exc, S3Error) and exc.code not in RECORDINGS_OWN_S3_CODES):
            # As above: the store or the database (down, or refusing the work area's write), not
            # the recording.
            _refund(store, engine, recording_id, run_id, since)
            raise
        # Decoded, then something in chunking it failed: this recording's error, not its group's.
        log.exception("recording %d: chunking failed", recording_id)
        _mark_attempted(store, engine, recording_id, "failed", f"chunking failed: {describe(exc)}", run_id, since)
        return None
    if gone:
        # Erased while it was decoded (a task with no lease: cleared after its run reported): the
        # erasure purged the packs before this one was written, so it goes here.
        if pack_uri:
            store.purge(pack_uri)
        log.info("recording %d was erased while it was chunked; its pack removed", recording_id)
        return None
    entry = RecordingEntry(recording_id=recording_id, n_channels=decoded.n_channels, pack_uri=pack_uri,
                           audio_s=offset / rate)
    return entry, refs


class _Unreadable(Exception):
    """The recording's object could not be read, for its own sake (not an outage): marked failed."""


def _free_copies(engine: Engine, recording_id: int, run_id: str | None, store: Store | None = None,
                 note: str | None = None, earlier: list[tuple[int, int]] | None = None) -> list[int]:
    from callscribe.discovery import CLAIM_LEASE_S

    with engine.begin() as conn:
        conn.execute(db.q("discover_copy_lock"))
        ids = list(conn.execute(db.q("recording_copies_free"), {"id": recording_id, "run_id": run_id,
                                                                 "lease_s": CLAIM_LEASE_S}).scalars())
        if ids and store is not None and note is not None:
            # Before they are freed (the transaction commits after): a retry of the task, which
            # finds them `pending` and no longer this recording's copies, chunks them from the note.
            # A store that refuses the note fails the task with the copies still copies.
            # Each with the recording it stands in for: a retry takes only those of its own group's.
            every = sorted({(i, recording_id) for i in ids} | set(earlier or []))
            store.put_bytes(note, json.dumps({"recordings": [{"recording_id": i, "freed_by": o}
                                                             for i, o in every]}).encode(), "application/json")
    if ids:
        log.warning("recording %d could not be read: its %d copies (recordings %s) are chunked instead",
                    recording_id, len(ids), ", ".join(map(str, ids)))
    return ids


def _read_failed(store: Store, engine: Engine, recording_id: int, run_id: str | None, since: datetime | None,
                 exc: Exception) -> None:
    """Reading or decoding a recording failed: its own failure (marked), or an outage (raised again)."""
    if isinstance(exc, S3Error) and exc.code == CHANGED:
        _mark_attempted(store, engine, recording_id, "failed", "object changed since discovery (while it was read)",
                        run_id, since)
        return
    if refuses_client(store, exc, f"{run_area(run_id or 'no-run')}probe-{recording_id}.txt"):
        # An outage, not this recording's fault: fail the task so Airflow retries it, without
        # spending one of the recording's attempts. So is a store that refuses this client whatever
        # it reads (credentials expired or rotated, a key grant withdrawn).
        _refund(store, engine, recording_id, run_id, since)
        raise exc
    _mark_attempted(store, engine, recording_id, "failed", describe(exc), run_id, since)


def _copy_by_bytes(store: Store, engine: Engine, rec: Row, data: bytes, run_id: str | None,
                   since: datetime | None, meta: dict[str, str] | None = None) -> bool:
    """Record the recording's bytes (SHA-256); True when another key of the copy window holds them,
    transcribed or on its way, and this one is now its `duplicate` (recording_bytes.sql), or the key's
    transcribed version holds them (_same_call), or the run no longer owns it: nothing to chunk."""
    params = {"id": rec.id, "run_id": run_id, "sha256": hashlib.sha256(data).digest(),
              "window": copy_window_days()}
    try:
        with engine.begin() as conn:
            conn.execute(db.q("discover_copy_lock"))
            row = conn.execute(db.q("recording_bytes"), params).one_or_none()
            # Another key's call first: a copy of this key's call freed when the new upload was listed
            # (discover_copy_revive.sql) may be on its way already, and takes the call then.
            prior = (_same_call(conn, rec, len(data), meta, since, params)
                     if row is not None and row.original_id is None else None)
            if row is not None and row.original_id is not None:  # its own copies follow it to the call
                conn.execute(db.q("recording_same_call_copies"), {"prior_id": row.original_id, "id": rec.id,
                                                                  "window": params["window"]})
    except Exception as exc:
        if db.unavailable(exc):
            _refund(store, engine, rec.id, run_id, since)
        raise
    if prior is not None:
        log.info("recording %d: the same bytes as recording %d of its key, whose metadata a copy with a new "
                 "etag fixed; that call takes the new etag and metadata and keeps its transcript", rec.id, prior)
        return True
    if row is None:
        log.info("recording %d is no longer its run's to chunk; left alone", rec.id)
        return True
    if row.original_id is not None:
        log.info("recording %d: %s", rec.id, row.last_error)
        return True
    return False


def _same_call(conn, rec: Row, size: int, meta: dict[str, str] | None, since: datetime | None,
               params: dict) -> int | None:
    """A new upload of a key with the bytes of its transcribed version is that call, its metadata
    fixed by a copy onto the key that changed the etag (AWS S3: a multipart, SSE-KMS or SSE-C
    object): the done row takes the new etag and the metadata (as discovery.refresh_metadata gives a
    fix that kept the etag), and the new row ends `superseded` untranscribed, in the caller's
    transaction. A fix that renames a mono call's speakers (discovery.relabels) is not taken: the new
    upload is transcribed as a new version, and replaces the old transcript when it loads. Returns
    the done row's id when taken."""
    from callscribe.discovery import apply_metadata, relabels

    if meta is None:
        return None
    prior = conn.execute(db.q("recording_same_call"), params).one_or_none()
    if prior is None or relabels(prior.metadata or {}, meta, prior.channels):
        return None
    if conn.execute(db.q("recording_same_call_retire"), {**params, "prior_id": prior.id}).one_or_none() is None:
        return None
    conn.execute(db.q("recording_same_call_take"), {"prior_id": prior.id, "etag": rec.etag, "size_bytes": size,
                                                    "run_id": params["run_id"]})
    conn.execute(db.q("recording_same_call_copies"), {"prior_id": prior.id, "id": rec.id,
                                                      "window": params["window"]})
    if since is None:
        since = conn.execute(db.q("db_now")).scalar_one()
    fix = SimpleNamespace(id=prior.id, etag=rec.etag, last_modified=rec.object_modified, object_key=rec.object_key)
    apply_metadata(conn, fix, meta, since)
    return prior.id


# The store refusing a pack for the recording's own sake (its size): failed with that reason, not
# taken for an outage (that would give its attempt back on every try of every run, for ever).
RECORDINGS_OWN_S3_CODES = frozenset({"EntityTooLarge"})


def _refund(store: Store, engine: Engine, recording_id: int, run_id: str | None, since: datetime | None,
            waits: tuple[float, ...] = (0, 1, 4)) -> None:
    """Give back the attempt and clear the chunking mark (``since``): the task fails on an outage
    and its retry must neither count it again nor take the mark for a crash on this file. A
    database that dropped the connection is asked again a few times (a failover, a restart); one
    still down after that gets a note in the run's work area instead, which the retry, or else the
    run's close, pays (discovery.pay_refund)."""
    from callscribe.discovery import write_refund_note

    for wait in waits:
        time.sleep(wait)
        try:
            with engine.begin() as conn:
                conn.execute(db.q("recording_attempt_refund"), {"id": recording_id, "run_id": run_id, "since": None})
            return
        except Exception as exc:
            if not db.unavailable(exc):
                raise
            log.warning("recording %d: could not give back its attempt: %s", recording_id, describe(exc))
    if run_id is None:
        return  # no run: nothing reads the mark as a crash
    try:
        write_refund_note(store, run_id, recording_id, since)
        log.warning("recording %d: the database is down; its attempt will be given back by the task's retry",
                    recording_id)
    except Exception as exc:  # the store too: the retry will take the mark for a crash on this file
        log.error("recording %d: its attempt and chunking mark stay (the database and the object store are "
                  "down: %s)", recording_id, describe(exc))


def _mark(engine: Engine, recording_id: int, status: str, error: str, run_id: str | None = None) -> None:
    log.warning("recording %d %s: %s", recording_id, status, error)
    with engine.begin() as conn:
        conn.execute(db.q("recording_error"), {"id": recording_id, "status": status, "error": error[:2000],
                                               "run_id": run_id})


def _mark_attempted(store: Store, engine: Engine, recording_id: int, status: str, error: str,
                    run_id: str | None, since: datetime | None) -> None:
    """_mark a recording this try counted an attempt of: a database outage while marking it gives the
    attempt back (_refund) before the task fails, or the retry would read the mark as a crash on it."""
    try:
        _mark(engine, recording_id, status, error, run_id)
    except Exception as exc:
        if db.unavailable(exc):
            _refund(store, engine, recording_id, run_id, since)
        raise


def chunk_group(store: Store, engine: Engine, ids: list[int], run_id: str, group_index: int,
                asr_engine: str | None = None) -> str:
    """Chunk a group of recordings for ``asr_engine`` (its chunk length); returns the URI of
    the group's chunk manifest."""
    params = chunking_for(asr_engine)
    pack = pack_format()  # a bad setting fails the task before any recording is touched
    entries: list[RecordingEntry] = []
    refs: list[ChunkRef] = []
    todo = list(ids)
    # Copies of unreadable recordings a try of this task before freed (and may not have chunked):
    # they are no longer anyone's copies, so only this note tells the retry to chunk them.
    note = _work_uri(store, "runs", run_key(run_id), "chunks", f"{group_index:05d}-freed.json")
    freed: list[tuple[int, int]] = []
    if store.exists(note):  # only those freed by this group's recordings (a whole run cleared may regroup)
        noted = [(int(e["recording_id"]), int(e["freed_by"]))
                 for e in json.loads(store.get_bytes(note)).get("recordings", []) if "freed_by" in e]
        ours = set(ids)
        grew = True
        while grew:  # a copy freed by a copy this group freed is this group's too
            grew = False
            for copy, by in noted:
                if by in ours and (copy, by) not in freed:
                    freed.append((copy, by))
                    ours.add(copy)
                    grew = True
    todo.extend(i for i, _ in freed if i not in todo)
    for rid in todo:  # grows by the copies of a recording that could not be read
        out = chunk_one(store, engine, rid, params, run_id=run_id, pack=pack, freed=freed, freed_note=note)
        if out is not None:
            entries.append(out[0])
            refs.extend(out[1])
        todo.extend(i for i, _ in freed if i not in todo)
    uri = _work_uri(store, "runs", run_key(run_id), "chunks", f"{group_index:05d}.parquet")
    meta = {"recordings": [e.model_dump() for e in entries]}
    store.put_bytes(uri, to_parquet(chunks_frame(refs), meta))
    log.info("group %d: %d/%d recordings chunked into %d chunks (%.1f s of speech)",
             group_index, len(entries), len(todo), len(refs), sum(e.audio_s for e in entries))
    return uri


# ---------------------------------------------------------------- plan jobs


def job_sizing(in_pods: bool, engine_name: str) -> JobSizing:
    """How this DAG splits a day into jobs: a fast engine's jobs in pods with GPUs hold hours more
    speech (engines.GPU_POD_JOB_AUDIO_S), so that each is minutes of GPU work, not seconds, and
    batch it as its GPU speed was measured (engines.GPU_BATCH_AUDIO_S)."""
    from callscribe.engines import GPU_BATCH_AUDIO_S, GPU_POD_JOB_AUDIO_S
    from callscribe.kubernetes import settings_from_env

    if not (in_pods and settings_from_env().gpus > 0):
        return JobSizing.from_env()
    return JobSizing.from_env(GPU_POD_JOB_AUDIO_S.get(engine_name), GPU_BATCH_AUDIO_S.get(engine_name))


def plan_jobs(store: Store, manifest_uris: list[str], run_id: str, engine_name: str,
              batch_audio_s: float | None = None, sizing: JobSizing | None = None,
              max_jobs: int | None = None) -> list[str]:
    """Gather chunk manifests into balanced worker jobs of whole recordings; returns job manifest URIs."""
    sizing = sizing or JobSizing.from_env()
    entries: list[RecordingEntry] = []
    by_rec: dict[int, list[ChunkRef]] = {}
    for uri in manifest_uris:
        try:
            df, meta = from_parquet(store.get_bytes(uri))
        except Exception as exc:
            if unavailable(exc):
                raise
            # Like a chunk task that failed for good: its recordings stay unfinished, with the
            # reason the run's report gives them, and the other groups go on.
            log.error("chunk manifest %s unreadable, its recordings are left for the next run: %s", uri,
                      describe(exc))
            continue
        here: dict[int, list[ChunkRef]] = {}
        for c in chunks_from_frame(df):
            here.setdefault(c.recording_id, []).append(c)
        for e in meta.get("recordings", []):
            entry = RecordingEntry(**e)
            if entry.recording_id in by_rec:  # in an earlier manifest too: planned once, from there
                log.warning("recording %d is in more than one chunk manifest; planned once", entry.recording_id)
                continue
            entries.append(entry)
            by_rec[entry.recording_id] = here.get(entry.recording_id, [])
    if not entries:
        return []
    key = run_key(run_id)
    speech = [e.audio_s for e in entries]
    n_jobs = job_count(sum(speech), len(entries), sizing.slots, sizing.cap_s, sizing.min_s, max_jobs)
    plan_id = uuid.uuid4().hex
    uris = []
    for j, members in enumerate(balance_jobs(speech, n_jobs)):
        job_id = f"job-{j:05d}"
        recs = [entries[i] for i in members]
        job = JobManifest(
            job_id=job_id, run_id=run_id, engine=engine_name, plan_id=plan_id,
            batch_audio_s=batch_audio_s or sizing.batch_s,
            shard_uri=_work_uri(store, "runs", key, "shards", f"{job_id}.parquet"),
            recordings=recs,
            chunks=[c for r in recs for c in by_rec.get(r.recording_id, [])],
        )
        uri = _work_uri(store, "runs", key, "jobs", f"{job_id}.json")
        # Before the manifest: a job whose task never reaches the store (credentials rotated since the
        # chunk tasks) can leave no note of its own, and its calls, never heard, would spend an attempt.
        # Not where an earlier plan of this run put a job of that id (plan_jobs cleared, alone or with its
        # downstream): what its tries left there (a kill's note, none) stands until a try of this plan
        # deletes it; a note saying none ran would give back the attempt of calls a try heard.
        if not store.exists(uri):
            store.put_bytes(*plan_note(job), "application/json")
        store.put_bytes(uri, job.model_dump_json().encode(), "application/json")
        uris.append(uri)
    log.info("%d recordings, %.0f s of speech, in %d jobs", len(entries), sum(speech), len(uris))
    return uris


# ---------------------------------------------------------------- transcribe (local mode)


def worker_command(job_uri: str) -> list[str]:
    """The container's command; local mode runs exactly this in a child process."""
    return ["python", "-m", "callscribe.worker", "--job", job_uri]


class WorkerFailed(RuntimeError):
    """The worker process ended without its shard; the message is the worker's own error."""


# What a local worker inherits from the task's environment: what a pod has, no more. The
# task's environment also holds Airflow's database URL, its JWT secret and connections.
WORKER_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "XDG_RUNTIME_DIR",
              "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "CALLSCRIBE_DEVICE", "CALLSCRIBE_GRANITE_MODEL_DIR",
              "CALLSCRIBE_WHISPER_MODEL_DIR", "CALLSCRIBE_CPU_THREADS", "CALLSCRIBE_FETCH_THREADS",
              "CALLSCRIBE_WORKER_RESPAWNS",
              "CALLSCRIBE_NAR_COMPILE",
              "CALLSCRIBE_NAR_FUSE", "CALLSCRIBE_NAR_DEPTHWISE", "CALLSCRIBE_NAR_DEPTHWISE_COMPILED",
              "CALLSCRIBE_NAR_ATTENTION", "CALLSCRIBE_NAR_ROUTE_CONFIDENCE", "CALLSCRIBE_NAR_COMPILE_TUNING",
              "CALLSCRIBE_NAR_WARM_UP_AUDIO_S", "CALLSCRIBE_NAR_FP8", "CALLSCRIBE_NAR_ENCODER_STREAM",
              "TORCHINDUCTOR_CACHE_DIR",
              "TRITON_CACHE_DIR",
              # Which CAs to trust (not secrets): a private CA for the store or for STS.
              "AWS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
# What the default AWS credential chain reads: passed on only when the S3 connection has no
# keys, so the worker finds the same identity as the task (IRSA, EKS Pod Identity, ECS,
# instance profile, or keys in the environment). With static keys none of these is passed.
WORKER_AWS_CHAIN_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
                        "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME", "AWS_ENDPOINT_URL_STS",
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
# Seconds a worker gets to stop on SIGTERM before its process group is killed.
WORKER_STOP_GRACE_S = 10.0


def worker_environment(s3: S3Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The local worker's environment: the allow-listed variables, offline flags, the S3 settings
    (and, for a connection without keys, the default credential chain's variables)."""
    base = os.environ if base is None else base
    allowed = WORKER_ENV + (WORKER_AWS_CHAIN_ENV if s3.uses_default_chain else ())
    env = {k: base[k] for k in allowed if k in base}
    env.setdefault("HOME", tempfile.gettempdir())
    # Credentials go through the environment, as Kubernetes secrets do for the pod.
    return env | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"} | s3.to_env()


def _relog(line: str) -> None:
    """A worker output line into the task log at the worker's own level."""
    parts = line.split(" ", 3)
    level = logging.getLevelName(parts[2]) if len(parts) > 3 else logging.INFO
    log.log(level if isinstance(level, int) else logging.INFO, "worker: %s", line)


def _stop_group(proc: subprocess.Popen) -> None:
    """End the worker's whole process group: SIGTERM, a grace period, then SIGKILL; reap it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(WORKER_STOP_GRACE_S)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        log.warning("worker %d did not stop in %.0f s; killing it", proc.pid, WORKER_STOP_GRACE_S)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_worker_local(job_uri: str, s3: S3Settings) -> str:
    """Run the worker command as a child process; returns the shard URI it reports.

    The worker runs in its own process group with the environment a pod would have, and it
    does not outlive this call: a timeout or a kill of the task stops the group and reaps
    it; a worker whose parent dies is killed by the kernel (the worker asks for that).
    """
    job_id = job_uri.rsplit("/", 1)[-1].removesuffix(".json")
    store = Store(s3)
    forget_cause(store, job_uri)  # an earlier try's note is not this try's cause (the worker may never run)
    with tempfile.TemporaryDirectory(prefix="callscribe-worker-") as tmp:
        xcom, error = os.path.join(tmp, "return.json"), os.path.join(tmp, "error.txt")
        cmd = [sys.executable, *worker_command(job_uri)[1:], "--xcom-path", xcom, "--error-path", error,
               "--parent-pid", str(os.getpid())]
        try:
            proc = subprocess.Popen(cmd, env=worker_environment(s3), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
        except OSError as exc:
            cause = f"{job_id}: the worker process could not be started: {describe(exc)}"
            _leave_cause(store, job_uri, cause, deployment=True)
            raise WorkerFailed(cause) from None
        tail: deque[str] = deque(maxlen=20)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                tail.append(line)
                _relog(line)
            rc = proc.wait()
        finally:
            _stop_group(proc)  # also reaps anything the worker started, on every way out
        if rc != 0:
            cause = f"{job_id}: {_worker_cause(rc, error, tail)}"
            # A worker that read its job leaves its own note for any failure of it (this one then stands):
            # one that exited on its own without a note failed before the job (a module its environment
            # lacks, a setting it refuses, the store out of reach), the deployment's fault, as for a pod
            # that never ran (pod_task). A kill (rc < 0; 128 + a signal's number from the supervisor) may
            # have been a call's doing.
            _leave_cause(store, job_uri, cause, deployment=0 < rc < 128)
            raise WorkerFailed(cause)
        with open(xcom) as f:
            return json.load(f)


def _leave_cause(store: Store, job_uri: str, cause: str, deployment: bool) -> None:
    try:
        leave_cause(store, job_uri, cause, deployment)
    except Exception as exc:  # noqa: BLE001 - the task fails either way; the load's generic reason then
        log.warning("could not write the failure note of %s: %s", job_uri, describe(exc))


def _worker_cause(rc: int, error_path: str, tail: deque[str]) -> str:
    """The worker's own error line, or what its exit says when it could not write one."""
    try:
        with open(error_path) as f:
            cause = f.read().strip()
        if cause:
            return cause
    except OSError:
        pass
    if rc < 0:
        name = signal.Signals(-rc).name
        return f"worker killed by {name}" + (" (out of memory, or killed from outside)" if name == "SIGKILL" else "")
    last = next((t for t in reversed(tail) if t.strip()), "no output")
    return f"worker exited with code {rc}: {last}"


class RunIncomplete(RuntimeError):
    """A run ends with a recording of its days unaccounted for, or with a failed task."""


def max_map_length() -> int:
    """How many items Airflow maps a task over at most (``[core] max_map_length``)."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def verify_run(store: Store, engine: Engine, context, task_states: dict[str, str],
               is_live: Callable[[str], bool] | None = None, lookback_days: int | None = None,
               listed_source: str | None = None, listed_day: str | None = None) -> dict:
    """The run's verdict: raises :class:`RunIncomplete` (a red run) unless every recording of
    its days is done, quarantined or failed with a reason, and none of its tasks failed.

    Objects uploaded after the run listed the bucket, and recordings another live run is
    working on, are not this run's to answer for. ``lookback_days``: the lookback the run's
    ``discover`` listed with (None: the Param's, as this task sees it); ``listed_source``: the bucket
    and prefix it listed (reporting.run_source; None: not known); ``listed_day``: the day it listed
    (YYYY-MM-DD; None: the run's day as this task reads it).
    """
    from callscribe.audit import run_verdict
    from callscribe.discovery import run_days
    from callscribe.reporting import ForeignRun, check_owner, check_source, listed_at, run_source

    params = context["params"]
    run_id = context["run_id"]
    try:
        check_source(run_id, listed_source, run_source(store.bucket, params["prefix"]))
        check_owner(engine, run_id, context["dag"].dag_id, run_source(store.bucket, params["prefix"]))
    except ForeignRun as exc:
        raise RunIncomplete(str(exc)) from None
    failed = sorted(t for t, state in task_states.items()
                    if str(state) in ("failed", "upstream_failed") and not t.startswith("verify"))
    lookback = params.get("lookback_days") if lookback_days is None else lookback_days
    days = run_days(call_day(context, listed_day), int(lookback or 0))
    verdict = run_verdict(store, engine, run_id, days, params["prefix"], listed_at(engine, run_id), failed,
                          is_live, only_claimed=bool(params.get("max_recordings")),
                          reprocess=bool(params.get("reprocess")))
    for a in verdict.audits:
        log.info("%s: %d objects, %s%s", a.day, a.objects, dict(a.states),
                 f", {len(a.in_progress)} in another live run" if a.in_progress else "")
    if not verdict.ok:
        problems = verdict.problems()
        for p in problems:
            log.error("%s", p)
        raise RunIncomplete(f"run {run_id} did not account for every call: " + " | ".join(problems))
    states: Counter = Counter()
    for a in verdict.audits:
        states.update(a.states)
    return {"days": [str(a.day) for a in verdict.audits], "objects": sum(a.objects for a in verdict.audits),
            "states": dict(states)}


class BadParam(ValueError):
    """A run's Param the pipeline refuses (the DAG's Param schema refuses it first)."""


# Same rules as the DAG's Param schemas; checked again here so nothing reaches the bucket
# listing without them, whoever started the run (tested without Airflow).
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def check_prefix(prefix: str) -> str:
    """The ``prefix`` Param, or :class:`BadParam`: a relative key prefix ('' is the bucket's
    root) that is not a URI, has no ``..``, and does not lead into the pipeline's own work
    area ``_callscribe/`` (its speech packs are FLAC: discovery would take them for calls).
    """
    if not isinstance(prefix, str):
        raise BadParam(f"prefix must be a string, not {type(prefix).__name__}")
    if prefix.startswith("/") or _URI.match(prefix):
        raise BadParam(f"prefix {prefix!r} must be a key prefix relative to the bucket (like 'calls/')")
    if ".." in prefix:
        raise BadParam(f"prefix {prefix!r} must not contain '..'")
    if prefix.split("/", 1)[0] == WORK_PREFIX:
        raise BadParam(f"prefix {prefix!r} points into the pipeline's work area {WORK_PREFIX}/")
    if prefix.split("/", 1)[0] == ERASURE_NOTES_PREFIX:
        raise BadParam(f"prefix {prefix!r} points into the erasures' notes {ERASURE_NOTES_PREFIX}/")
    return prefix


def check_date(value: str) -> date:
    """The ``date`` Param (YYYY-MM-DD) as a date, or :class:`BadParam`."""
    # date.fromisoformat alone also takes '20261124' and week dates.
    if not isinstance(value, str) or not DATE_PATTERN.fullmatch(value):
        raise BadParam(f"date {value!r} must be YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise BadParam(f"date {value!r} is not a calendar day") from exc


def _field(obj, name: str):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def call_day(context, listed: str | None = None) -> date:
    """The calendar day a DAG run covers, in the call days' time zone (:func:`day_zone`, UTC
    unless set); checks the run's ``date`` and ``prefix`` Params.

    An explicit ``date`` Param wins; otherwise the run's logical date, which for this DAG's
    timetable is the start of the day's data interval (the zone's midnight) for scheduled runs
    and backfills, and the date a person picked for a manual run. A manual run without a
    logical date (Airflow 3 allows it; it has no data interval either) covers the last whole
    day before it was triggered (its ``run_after``), the day a scheduled run at that moment
    would cover.

    Every stage derives its day here, so a bad ``prefix`` fails here too (:class:`BadParam`),
    before anything lists the bucket, and so does a ``lookback_days`` reaching before the calendar.

    ``listed``: the day the run's ``discover`` listed (YYYY-MM-DD, from XCom; it checked the Params),
    which the later stages take over their own reading: CALLSCRIBE_TIMEZONE may have changed on their
    worker since.
    """
    day = date.fromisoformat(listed) if listed else _call_day(context)
    lookback = (context.get("params") or {}).get("lookback_days") or 0
    if isinstance(lookback, int) and day.toordinal() <= lookback:
        raise BadParam(f"date {day} with lookback_days {lookback} reaches before the year 1")
    return day


def _call_day(context) -> date:
    params = context.get("params") or {}
    if "prefix" in params:
        check_prefix(params["prefix"])
    if params.get("date"):
        return check_date(params["date"])
    dag_run = context.get("dag_run")
    moment = (context.get("logical_date") or context.get("data_interval_start")
              or (_field(dag_run, "logical_date") if dag_run is not None else None))
    zone = day_zone()
    if moment is not None:
        local = moment.astimezone(zone)
        run_type = _field(dag_run, "run_type") if dag_run is not None else None
        if run_type in ("scheduled", "backfill") and not _starts_day(local):
            # The scheduler placed the run by another zone's midnight: read here, its day could
            # be the one before, and the run would take another day's folder. So is a run made
            # before CALLSCRIBE_TIMEZONE changed, which no clearing will mend: say what does.
            raise BadParam(f"the run's interval starts at {local:%Y-%m-%d %H:%M %Z}, not at a midnight of "
                           f"CALLSCRIBE_TIMEZONE={zone.key}: give the scheduler and the workers the same "
                           "CALLSCRIBE_TIMEZONE; a run made before CALLSCRIBE_TIMEZONE was changed cannot "
                           "be read in the new zone: trigger its day by hand with the date Param instead")
        return local.date()
    run_after = _field(dag_run, "run_after") if dag_run is not None else None
    if run_after is None:
        raise BadParam("the run has no logical date, no run_after and no date Param: which day?")
    return run_after.astimezone(zone).date() - timedelta(days=1)


def _starts_day(local: datetime) -> bool:
    """Whether a local time is where a daily cron at midnight fires: 00:00, or 01:00 on a day
    whose midnight the zone skips (a DST change at midnight: Airflow fires at 01:00)."""
    if (local.minute, local.second, local.microsecond) != (0, 0, 0) or local.hour > 1:
        return False
    if local.hour == 0:
        return True
    # Built with the standard library's datetime: the task runner's times are pendulum's, whose
    # replace() moves a midnight that does not exist to 23:00 the day before (then it would
    # exist, and every such day's run would be refused).
    midnight = datetime(local.year, local.month, local.day, tzinfo=local.tzinfo)
    return midnight.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) != midnight.replace(tzinfo=None)
