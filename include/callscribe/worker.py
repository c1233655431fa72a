"""The worker container's command: transcribe one job manifest into one transcript shard.

    python -m callscribe.worker --job s3://bucket/_callscribe/runs/<run>/jobs/job-00000.json

Object-store settings come from CALLSCRIBE_S3_* variables (Kubernetes secrets in a pod).
The shard's URI is also written to a result file (``--xcom-path``, CALLSCRIBE_XCOM_PATH;
the pod points it at /tmp: no XCom sidecar reads it, the load task knows the shard's place).

A recording the worker cannot transcribe (its speech pack unreadable, a chunk the engine
fails on even alone) goes into the shard as a failure with its reason; its neighbours go
on. A job that fails as a whole (no engine, every chunk failing, an engine that breaks
part-way, the store gone) exits 1 with its cause in the termination message
(/dev/termination-log in a pod) and in a failure note beside the shard's place, which the
load task turns into the recordings' reason.

A chunk that kills the worker process (a native crash in the engine, the kernel's OOM killer: no
exception, no shard) is found over the job's next runs: before the engine gets a batch, the chunks
it holds are written to a progress note beside the shard's place, and the next run reads it. The
chunks of a death in a batch are suspects, run first and each alone; a death on one chunk alone
makes it a killer, whose recording goes into the shard as failed without being run again. A chunk
that breaks the engine for good (a device-side assert leaves the CUDA context unusable: every later
batch fails) is found the same way: the note names the chunks the engine held when a batch first
failed, and the next process checks its engine on silence, then runs them alone. The job
runs in a child process (supervisor.py), started again after each death, or breakage, with chunks
in the engine (CALLSCRIBE_WORKER_RESPAWNS times, default 4): one death in a batch and one per killer
cost seconds in the same pod, not a try of the task. Past that, or with 0, the task's next try goes
on from the note. The note is deleted once the shard is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from pydantic import ValidationError

from callscribe import engines
from callscribe.audio import TARGET_SR, decode_pack, resample
from callscribe.config import s3_from_env
from callscribe.engines import Segment
from callscribe.errors import describe, machine_fault
from callscribe.manifests import (
    CONFIDENCE,
    JOB_VERSION,
    SEGMENT_COLUMNS,
    WORD_STARTS,
    BatchMetric,
    JobFailure,
    JobManifest,
    JobProgress,
    RecordingFailure,
    ShardInfo,
    failure_uri,
    progress_uri,
    to_parquet,
)
from callscribe.storage import Store, unavailable
from callscribe.supervisor import ENGINE_BROKE, die_with_parent, respawns, signal_name, supervise
from callscribe.transcription import PlacedSegment, order_segments, place_chunk, run_batches

log = logging.getLogger("callscribe.worker")
T = TypeVar("T")
DEFAULT_XCOM_PATH = "/airflow/xcom/return.json"
DEFAULT_ERROR_PATH = "/dev/termination-log"  # Kubernetes shows it as the container's message
KILLED = (
    "the worker process died on this chunk, run alone, or its engine broke for good on it (a crash in the engine, "
    "a device error, or out of memory)")
# The first wave of a job waits for this many batches' worth of its speech (or all of it): enough to
# keep the device busy while the fetch goes on, which outpaces it from there.
WAVE_BATCHES = 4


def fetch_threads() -> int:
    """Threads that fetch and resample a job's packs: ``CALLSCRIBE_FETCH_THREADS``, else the CPUs the
    worker may use (a pod's quota arrives as OMP_NUM_THREADS: the node's count would be far more), at
    least 4 (the GETs wait on the network more than they compute) and at most 16 (each thread holds
    a decoded pack)."""
    forced = os.environ.get("CALLSCRIBE_FETCH_THREADS")
    if forced:
        return max(1, int(forced))
    # OpenMP reads a list ("8,2": threads per nesting level), and a local worker inherits the task's
    # value: its first level is the worker's CPUs; a value OpenMP would not read is the node's count.
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    cpus = int(omp) if omp.isdigit() else os.cpu_count() or 1
    return min(16, max(4, cpus))


def fetch_chunks(store: Store, job: JobManifest, failures: dict[int, str], threads: int | None = None,
                 on_pack: Callable[[dict[int, np.ndarray]], None] | None = None,
                 stop: threading.Event | None = None) -> dict[int, np.ndarray]:
    """Each chunk's audio (int16, 16 kHz) by its place in the job; one GET per recording pack.
    ``on_pack``, when given, gets each pack's chunks as soon as they are ready (a recording's
    chunks together), in the order the packs come in, so the engine can start on them before the
    rest arrive. Once ``stop`` is set (the job has failed or was stopped) no pack is asked for any
    more: what is left is left out.

    A pack is read, cut into its chunks and resampled in one of ``threads`` threads (the resampler
    and the decoder let go of the GIL for part of their work); an 8 kHz pack is released once its
    chunks are resampled (a 16 kHz pack's chunks are views of it, as before). A pack
    that cannot be read, or is shorter than its chunks, fails its recordings (into ``failures``),
    whose chunks are then left out; an unreachable store fails the job, so the task is retried.
    """
    pack_of = {r.recording_id: r.pack_uri for r in job.recordings}
    wanted: dict[str, list[int]] = {}
    for i, c in enumerate(job.chunks):
        if c.recording_id in failures:
            continue
        if pack_of[c.recording_id] is None:
            failures[c.recording_id] = "its chunks have no speech pack"
            continue
        wanted.setdefault(pack_of[c.recording_id], []).append(i)

    def get(uri: str) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        if stop is not None and stop.is_set():
            return {}, {}
        try:
            pack = decode_pack(store.get_bytes(uri), "int16")  # int16 halves the memory a job holds
        except Exception as exc:
            if unavailable(exc):
                raise
            reason = f"speech pack unreadable ({uri}): {describe(exc)}"
            return {}, {job.chunks[i].recording_id: reason for i in wanted[uri]}
        got: dict[int, np.ndarray] = {}
        bad: dict[int, str] = {}
        for i in wanted[uri]:
            c = job.chunks[i]
            piece = pack[c.pack_offset : c.pack_offset + c.n_samples]
            if len(piece) != c.n_samples:
                bad.setdefault(c.recording_id, "speech pack is shorter than its manifest says")
            elif c.recording_id not in bad:
                got[i] = resample(piece, c.pack_rate)  # 8 kHz calls are stored at 8 kHz
        return {i: a for i, a in got.items() if job.chunks[i].recording_id not in bad}, bad

    out: dict[int, np.ndarray] = {}
    pool = ThreadPoolExecutor(max_workers=threads or fetch_threads())
    try:
        # As each pack comes, not in the job's order: one slow GET (a store's tail latency, a retry)
        # must not hold back the packs fetched after it from the engine.
        for done in as_completed([pool.submit(get, uri) for uri in sorted(wanted)]):
            got, bad = done.result()
            out.update(got)
            for rid, reason in bad.items():
                failures.setdefault(rid, reason)
            if on_pack is not None and got:
                on_pack(got)
    finally:
        # After an error the packs not yet begun are not fetched (the job fails anyway); the pool's
        # threads are joined when the process ends, so a queue left behind would keep it up.
        pool.shutdown(wait=True, cancel_futures=True)
    return dict(sorted(out.items()))


class Arrivals:
    """The job's chunks as the fetch delivers them (``add``, from its thread), taken by the
    recogniser in waves (``take``): the engine starts once a few batches' worth is in, not once
    the whole job is (a 200 h job's packs are about 11.5 GB)."""

    def __init__(self) -> None:
        self.audio: dict[int, np.ndarray] = {}  # every chunk fetched so far, by its place in the job
        self._new: list[int] = []
        self._new_s = 0.0
        self._closed = False
        self._ready = threading.Condition()

    def add(self, got: dict[int, np.ndarray]) -> None:
        with self._ready:
            self.audio.update(got)
            self._new.extend(got)
            self._new_s += sum(len(a) for a in got.values()) / TARGET_SR
            self._ready.notify_all()

    def close(self) -> None:
        """No more will come (the fetch ended, or failed: its error is the fetch's future's)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def take(self, at_least_s: float) -> list[int] | None:
        """The chunks that arrived since the last take, once they hold ``at_least_s`` of audio or
        the fetch has ended; None when it has ended and nothing is left."""
        with self._ready:
            self._ready.wait_for(lambda: self._closed or (self._new and self._new_s >= at_least_s))
            if not self._new:
                return None
            taken, self._new, self._new_s = sorted(self._new), [], 0.0
            return taken


def in_background(fn: Callable[[], T], name: str) -> Future[T]:
    """``fn`` on a daemon thread: a caller that fails meanwhile need not wait for it (the process may
    end first)."""
    future: Future[T] = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to whoever asks for the result
                future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class DeploymentFault(RuntimeError):
    """The job failed before any of its speech reached the engine, for a reason of the deployment's,
    not the job's recordings' (JobFailure.deployment): their attempt is given back."""


class ImageTooOld(DeploymentFault):
    """The job manifest is newer than this worker image reads."""


def run_job(job: JobManifest, store: Store, engine: engines.Engine | None = None) -> str:
    if job.version > JOB_VERSION:
        # Written by a newer Airflow side: what this worker would ignore in it may change the job.
        raise ImageTooOld(f"the job manifest is version {job.version}, this worker reads version {JOB_VERSION} "
                           "at most: upgrade the worker image (CALLSCRIBE_WORKER_IMAGE) to the Airflow side's version")
    t0 = time.perf_counter()
    failures: dict[int, str] = {}  # recording id -> reason (the fetch's thread adds to it too)
    arrivals = Arrivals()
    # Set when the job fails or is stopped with the fetch still going: the process ends at once, not
    # once the rest of the job's packs are in (the fetch pool's threads are joined at exit).
    abandon = threading.Event()

    def fetch() -> dict[int, np.ndarray]:
        try:
            fetched = fetch_chunks(store, job, failures, on_pack=arrivals.add, stop=abandon)
        finally:
            arrivals.close()
        log.info("job %s: %d recordings, %d chunks, %.1f s of speech fetched in %.1f s", job.job_id,
                 len(job.recordings), len(job.chunks), job.audio_s, time.perf_counter() - t0)
        return fetched

    # The speech is fetched and resampled while the model loads, compiles and warms up (15 s or more on
    # a GPU pod; the fetch grows with the job): side by side, not one after the other, and the engine
    # starts on what has arrived. A job with no chunks (only silent recordings) loads no model.
    fetching = in_background(fetch, "fetch")
    try:
        eng = engine or (engines.create(job.engine) if job.chunks else None)
    except BaseException as exc:
        # The engine's error is the job's; the fetch is left to end with the process, not waited for.
        abandon.set()
        if fetching.done() and fetching.exception() is not None:
            log.error("job %s: fetching its speech failed too: %s", job.job_id, describe(fetching.exception()))
        if isinstance(exc, Exception):  # a stop (SIGTERM) passes as it is
            # No speech has reached it: a model missing, a wrong setting, no GPU driver.
            raise DeploymentFault(f"the {job.engine} engine could not be loaded: {describe(exc)}") from exc
        raise
    log.info("job %s: engine ready after %.1f s", job.job_id, time.perf_counter() - t0)
    fetched = arrivals.audio  # grows while the fetch runs
    # An earlier try of this job whose process died (no exception, no shard) left its progress note.
    progress = _resume(store, job) if job.chunks else JobProgress(plan_id=job.plan_id)
    for i in progress.killers:  # not sent to the engine again: the job would die a third time
        c = job.chunks[i]
        failures.setdefault(c.recording_id, f"chunk {c.channel}/{c.index} at {c.start_s:.1f} s: {KILLED}")
    order: list[int] = []  # the chunks sent to the engine, wave by wave
    suspects = set(progress.suspects)
    placed: dict[int, list[PlacedSegment]] = {}  # by chunk index: its segments timed in the recording
    chunk_failures: dict[int, str] = {}
    batches: list[BatchMetric] = []
    # What the engine held when it last got chunks, and when a batch first failed with no batch wholly
    # recognised since: if the engine turns out broken, the chunks it held then may have broken it.
    held_now: list[int] = []
    first_failure: list[int] | None = None

    def note(in_flight: list[int], alone: bool = False) -> None:
        # Synchronous, before the engine gets the chunks: a death during them finds them named. With
        # batches overlapped the device is busy with the batch before meanwhile: no GPU time lost.
        nonlocal held_now
        held_now = in_flight
        now = progress.model_copy(update={"in_flight": in_flight, "alone": alone})
        store.put_bytes(progress_uri(job.shard_uri), now.model_dump_json().encode(), "application/json")

    def recognise(chunks: list[int], before: Callable[[list[int]], None]) -> None:
        failed: dict[int, str] = {}

        def after(ks: list[int], segments: list[list[Segment]]) -> None:
            # Timed in the recording as each batch finishes, while the device computes the next one,
            # not all after the last batch (about 7 s of host work in a 200 h job).
            nonlocal first_failure
            if not any(k in failed for k in ks):
                # A whole batch recognised: the engine was not broken by a failure before it (a chunk
                # that fails alone and leaves the engine working). The first failure since is the one.
                first_failure = None
            elif first_failure is None:
                first_failure = list(held_now)  # a batch's failures, halved: the notes still held it
            for k, segs in zip(ks, segments, strict=True):
                c = job.chunks[chunks[k]]
                if k not in failed and c.recording_id not in failures:
                    try:
                        placed[chunks[k]] = place_chunk(c.region_map(), c.channel, fetched[chunks[k]], segs)
                    except Exception as exc:  # this chunk's output, not its neighbours': its recording fails
                        failed[k] = f"placing its segments in the recording failed: {describe(exc)}"

        _, metrics = run_batches(eng, [fetched[i] for i in chunks], job.batch_audio_s, failed,
                                 before_batch=lambda ks: before([chunks[k] for k in ks]), after_batch=after)
        chunk_failures.update((chunks[k], reason) for k, reason in failed.items())
        first = len(batches)  # extend() grows the list while it reads the generator
        batches.extend(m.model_copy(update={"batch_index": first + n}) for n, m in enumerate(metrics))

    try:
        # A run after a death takes the whole job at once: its suspects first, each alone, so a recording
        # whose chunks kill the process dies on its first one here, not on a later chunk in a batch
        # (that would make new suspects, and cost one more death). Otherwise the first wave starts
        # once a few batches' worth has arrived, and each later one takes what came meanwhile.
        want = math.inf if suspects else min(job.audio_s, WAVE_BATCHES * job.batch_audio_s)
        while (wave := arrivals.take(want)) is not None:
            # Chunks of recordings that already failed are not sent to the engine.
            wave = [i for i in wave if job.chunks[i].recording_id not in failures]
            order.extend(wave)
            alone_now = [i for i in wave if i in suspects]
            if alone_now:
                # The engine must work before a suspect can be blamed for breaking it (a broken device
                # fails every chunk: not theirs to answer for), and for as many batches as testing one
                # takes (the suspect, then silence): the control for a device that fails after a batch
                # or two of its own in each new process, which would otherwise pin it on the suspect.
                for _ in range(2):
                    _check_engine(eng, _SILENCE, job.batch_audio_s, "before its suspects were run alone")
            for i in alone_now:
                recognise([i], lambda ks: note(ks, alone=True))
                if i in chunk_failures:
                    try:  # failed alone: did it leave the engine broken (a device-side assert is sticky)?
                        _check_engine(eng, _SILENCE, job.batch_audio_s, f"after chunk {i} failed alone")
                    except RuntimeError as exc:
                        raise EngineBroke(str(exc), [i], alone=True) from exc
            if suspects:
                note([])  # a death after them is no suspect's
                suspects = set()
            rest = [i for i in wave if i not in progress.suspects]
            if rest:
                recognise(rest, note)
                note([])  # nothing in the engine while the next wave arrives
            want = job.batch_audio_s
        fetching.result()  # the fetch's own error (an unreachable store) is the job's
        order.sort()
        if chunk_failures and len(chunk_failures) == len(order):
            first = next(iter(chunk_failures.values()))
            if len({job.chunks[i].recording_id for i in chunk_failures}) > 1:
                # Nothing recognised, in several recordings: the engine, not the audio (a broken GPU, a bad model).
                raise EngineBroke(f"the engine failed on all {len(order)} chunks; first: {first}",
                                  first_failure or [])
            # One recording, none of its chunks recognised: its audio, or a device broken from the start?
            # Silence tells them apart (a failure path only: no GPU work when anything was recognised).
            try:
                _check_engine(eng, _SILENCE, job.batch_audio_s,
                              f"after all {len(order)} chunks of one recording failed")
            except RuntimeError as exc:
                raise EngineBroke(f"{exc}; first: {first}", first_failure or []) from exc
        if chunk_failures and len(chunk_failures) < len(order):
            # A device that breaks part-way (a sticky CUDA error) fails every chunk after it, each
            # alone too: not the calls' fault. Ask again for a chunk it recognised before.
            i = min((i for i in order if i not in chunk_failures), key=lambda i: len(fetched[i]))
            try:
                _check_engine(eng, fetched[i], job.batch_audio_s)
            except RuntimeError as exc:
                raise EngineBroke(str(exc), first_failure or []) from exc
    except BaseException as error:  # an error, or a stop from outside (Stopped)
        abandon.set()
        # Not a death: nothing this try held in the engine killed it. Its note must not name them,
        # or the next try takes them for suspects, and one run alone for a killer. Except for an
        # engine that broke: the chunks it held when a batch first failed are named, so the next try
        # runs them alone first, and one that breaks it alone becomes a killer (as after a death).
        if order:
            held, alone = (error.held, error.alone) if isinstance(error, EngineBroke) else ([], False)
            try:
                note(held, alone)
            except Exception as exc:  # the store may be what failed
                log.warning("job %s: could not clear its progress note: %s", job.job_id, describe(exc))
        raise
    for i, reason in chunk_failures.items():
        c = job.chunks[i]
        failures.setdefault(c.recording_id, f"chunk {c.channel}/{c.index} at {c.start_s:.1f} s: {reason}")
    rows = []
    by_rec: dict[int, list] = {}
    for i in order:
        c = job.chunks[i]
        if c.recording_id not in failures:
            # A segment's speaker is its chunk's: a diarized mono channel has several.
            by_rec.setdefault(c.recording_id, []).extend((s, c.speaker) for s in placed.get(i, []))
    for rid, mine in by_rec.items():
        seq_by_channel: dict[int, int] = {}
        speaker_of = {id(s): speaker for s, speaker in mine}
        for s in order_segments([s for s, _ in mine]):
            seq = seq_by_channel.get(s.channel, 0)
            seq_by_channel[s.channel] = seq + 1
            rows.append((rid, s.channel, seq, speaker_of[id(s)], s.start, s.end, s.text,
                         list(s.word_starts) or None, s.confidence))
    for rid, reason in failures.items():
        log.error("job %s: recording %d failed: %s", job.job_id, rid, reason)
    df = pd.DataFrame(rows, columns=[*SEGMENT_COLUMNS, WORD_STARTS, CONFIDENCE])
    info = ShardInfo(job_id=job.job_id, run_id=job.run_id, engine=eng.name if eng else job.engine,
                     recordings=job.recordings,
                     batches=batches,
                     failures=[RecordingFailure(recording_id=r, reason=m[:2000]) for r, m in sorted(failures.items())],
                     plan_id=job.plan_id)
    store.put_bytes(job.shard_uri, to_parquet(df, info))
    if job.chunks:
        # The shard speaks for the job now. Not only when chunks went to the engine: a try that sends
        # none (a one-recording job whose chunk is a killer, packs that all failed) has a note too.
        store.delete(progress_uri(job.shard_uri))
    wall = time.perf_counter() - t0
    log.info("job %s: %d segments written to %s (%d recordings failed); %.1f s audio in %.1f s (RTFx %.1f)",
             job.job_id, len(df), job.shard_uri, len(failures), job.audio_s, wall,
             job.audio_s / wall if wall else 0.0)
    return job.shard_uri


def _resume(store: Store, job: JobManifest) -> JobProgress:
    """This try's progress: what the note an earlier try of the job left says, once that try died
    (written back at once, nothing in flight); a fresh one when there is no such note."""
    uri = progress_uri(job.shard_uri)
    earlier = _earlier_note(store, job, uri)
    if earlier is None:
        return JobProgress(plan_id=job.plan_id)
    progress = earlier.after_death()
    log.warning("job %s: an earlier try died with chunks %s in the engine%s; suspects (run alone): %s, "
                "killers (not run): %s", job.job_id, earlier.in_flight, " (alone)" if earlier.alone else "",
                progress.suspects, progress.killers)
    store.put_bytes(uri, progress.model_dump_json().encode(), "application/json")
    return progress


def _earlier_note(store: Store, job: JobManifest, uri: str) -> JobProgress | None:
    """The progress note at the job's place, if it is this plan's and can be read."""
    if not store.exists(uri):
        return None
    try:
        note = JobProgress.model_validate_json(store.get_bytes(uri))  # a store that fails raises: a retry
    except ValidationError as exc:
        log.warning("job %s: its progress note is unreadable, ignored: %s", job.job_id, describe(exc))
        return None
    if note.plan_id != job.plan_id:
        log.warning("job %s: the progress note is another plan's (%s), ignored", job.job_id, note.plan_id)
        return None
    if not all(0 <= i < len(job.chunks) for i in (*note.in_flight, *note.suspects, *note.killers)):
        log.warning("job %s: its progress note names chunks the job does not have, ignored", job.job_id)
        return None
    return note


class EngineBroke(RuntimeError):
    """The engine fails on what it recognises otherwise: the job fails. ``held``: the chunks the engine
    held when it first failed (``alone``: one chunk run on its own), named in the progress note for the
    next try, as after a death."""

    def __init__(self, message: str, held: list[int], alone: bool = False):
        super().__init__(message)
        self.held, self.alone = list(held), alone


# Two seconds of digital silence: what the engine is asked to recognise to show it still works, when
# no chunk of the job has been recognised yet.
_SILENCE = np.zeros(2 * TARGET_SR, dtype=np.int16)


def _check_engine(eng: engines.Engine, audio: np.ndarray, budget_s: float, when: str | None = None) -> None:
    """Raise (the job fails, its task is retried) when the engine fails on a chunk it has recognised
    (or, with ``when``, on silence)."""
    try:
        run_batches(eng, [audio], budget_s)
    except Exception as exc:
        if machine_fault(exc):  # a full disk or no file handles left: the machine's, not the engine broken
            raise
        what = f"it fails on silence {when}" if when else "it fails now on a chunk it recognised before"
        raise RuntimeError(f"the engine broke during the job ({what}): {describe(exc)}") from exc


def write_xcom(path: str, value: object) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(value))


def _report_failure(args: argparse.Namespace, store: Store | None, job: JobManifest | None, cause: str,
                    deployment: bool = False) -> None:
    """Leave the cause where the task and the load look for it (both best effort)."""
    try:
        Path(args.error_path).write_text(cause + "\n")
    except OSError:
        pass
    if store is not None and job is not None:
        try:
            note = JobFailure(job_id=job.job_id, run_id=job.run_id, error=cause, deployment=deployment)
            store.put_bytes(failure_uri(job.shard_uri), note.model_dump_json().encode(), "application/json")
        except Exception as exc:  # noqa: BLE001 - the store may be the very thing that failed
            log.warning("could not write the failure note: %s", describe(exc))


def _clear_cause(args: argparse.Namespace) -> None:
    """Empty the termination message a process before this one in the try left (best effort)."""
    try:
        if os.path.exists(args.error_path) and os.path.getsize(args.error_path):
            Path(args.error_path).write_text("")
    except OSError:
        pass


class Stopped(BaseException):
    """SIGTERM: the job stopped from outside (Kubernetes deleting the pod at the task's timeout or
    a clear, a node drained, the local task stopping its worker). A BaseException, so that no
    batch takes it for its own failure; run_job clears its progress note on the way out, so the
    chunks in the engine are not taken for the cause, as they would be after a death."""


def _stop_on_sigterm() -> None:
    def stop(signum: int, frame: object) -> None:
        # Once: a stop may come twice (to the process group, and passed on by the supervisor), and a
        # second Stopped raised while the first is handled would cut the note's clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Stopped(f"stopped from outside (signal {signum})")

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m callscribe.worker", description=__doc__.splitlines()[0])
    ap.add_argument("--job", required=True, help="s3:// URI of the job manifest")
    ap.add_argument("--xcom-path", default=os.environ.get("CALLSCRIBE_XCOM_PATH", DEFAULT_XCOM_PATH))
    ap.add_argument("--error-path", default=os.environ.get("CALLSCRIBE_ERROR_PATH", DEFAULT_ERROR_PATH),
                    help="where the cause goes when the job fails")
    ap.add_argument("--parent-pid", type=int, help="die with this process (local mode)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.parent_pid:
        die_with_parent(args.parent_pid)
    try:
        limit = respawns()
    except ValueError as exc:
        _report_failure(args, None, None, str(exc))
        return 1
    if limit == 0:
        rc = run_once(args)
    else:
        # The note this try starts from, then the one each death it outlived left: the first death too
        # is judged against the note before it (an earlier try's, which a death in the model's load leaves).
        notes: list[JobProgress | None] = [_note_at_start(args)]
        rc = supervise(lambda: run_once(args), lambda sig, deaths: _died_in_engine(args, notes), limit)
        if rc > 128 and rc != 128 + signal.SIGTERM:
            _report_death(args, rc - 128, notes)
    return 1 if rc == ENGINE_BROKE else rc  # a broken engine no new process went on from: its cause is reported


def run_once(args: argparse.Namespace) -> int:
    """One try at the job in this process: the shard written (0), the job failed (1, its cause
    reported; ``ENGINE_BROKE`` when its engine broke for good with chunks named in the note, for
    the supervisor to start a new process), or stopped from outside (128 + SIGTERM)."""
    _stop_on_sigterm()
    _clear_cause(args)  # an earlier process's (its engine broke, a new one goes on): not this one's
    store = job = None
    try:
        store = Store(s3_from_env())
        job = JobManifest.model_validate_json(store.get_bytes(args.job))
        # An earlier try's shard or failure note would speak for this one. Its progress note stays:
        # it says which chunks were in the engine when that try's process died (run_job reads it).
        store.delete(job.shard_uri)
        store.delete(failure_uri(job.shard_uri))
        shard = run_job(job, store)
    except Stopped as exc:
        # No failure note: whoever stopped it knows why (the task's timeout says "timed out").
        log.warning("job %s: %s", job.job_id if job else args.job, exc)
        return 128 + signal.SIGTERM
    except Exception as exc:
        cause = describe(exc)
        log.exception("job %s failed: %s", job.job_id if job else args.job, cause)
        # Reported either way: it stands unless a new process goes on (the next one deletes it).
        _report_failure(args, store, job, cause, deployment=isinstance(exc, DeploymentFault))
        return ENGINE_BROKE if isinstance(exc, EngineBroke) else 1
    write_xcom(args.xcom_path, shard)
    return 0


def _read_note(args: argparse.Namespace) -> tuple[Store, JobManifest, JobProgress | None]:
    """The job's progress note as the supervisor sees it (the job read again: it holds no state)."""
    store = Store(s3_from_env())
    job = JobManifest.model_validate_json(store.get_bytes(args.job))
    return store, job, _earlier_note(store, job, progress_uri(job.shard_uri))


def _note_at_start(args: argparse.Namespace) -> JobProgress | None:
    try:
        return _read_note(args)[2]
    except Exception as exc:  # noqa: BLE001 - the store may be down: the child finds out and says so
        log.warning("the job's progress note could not be read: %s", describe(exc))
        return None


def _died_in_engine(args: argparse.Namespace, notes: list[JobProgress | None]) -> bool:
    """Whether the process that just died (or whose engine broke for good: exit status
    ``ENGINE_BROKE``) held chunks in the engine: its progress note names them, and it is not the
    note the death before left, or the try started from (a process that dies before it reads the
    note, in the model's load or warm-up, leaves it as it found it). A new process can go on from
    there; a death elsewhere (a broken GPU, the fetch's memory) is left to the task's retry, on
    another pod."""
    try:
        _, _, note = _read_note(args)
    except Exception as exc:  # noqa: BLE001 - the store may be down: the task's retry, then
        log.warning("after the worker process ended, its progress note could not be read: %s", describe(exc))
        return False
    if not _moved(note, notes):
        return False
    notes.append(note)
    return True


def _moved(note: JobProgress | None, notes: list[JobProgress | None]) -> bool:
    return note is not None and bool(note.in_flight) and note != notes[-1]


def _report_death(args: argparse.Namespace, sig: int, notes: list[JobProgress | None]) -> None:
    """The cause of a try that ends in a death it did not outlive, after those it did (``notes`` past
    the first, the try's start)."""
    store = job = None
    try:
        store, job, note = _read_note(args)
        held = _moved(note, notes)
    except Exception:  # noqa: BLE001 - the cause is still worth writing where the task reads it
        held = False
    where = ("with chunks in the engine" if held else
             "with no chunk in the engine (in the model's load or warm-up, or the fetch: a broken GPU, out of memory?)")
    _report_failure(args, store, job, f"the worker process died ({signal_name(sig)}) {where}, after {len(notes) - 1} "
                    "respawns in this try; the task's next try goes on from the job's progress note")


if __name__ == "__main__":
    sys.exit(main())
