"""What one bad chunk does to its neighbours in the worker's path, with the native Granite
engine (tiny, random weights, on the CPU) packing several recordings' chunks into one batch.

A chunk that makes the engine raise is found by halving its batch, and only its recording fails.
A chunk that breaks the engine for good (a device-side assert leaves a CUDA context unusable: every
later call fails) fails the job, as it must, but the job's next try has to learn which chunk did it:
else each try fails the same way, and with it every recording the job holds.
"""

from __future__ import annotations

import numpy as np
import pytest

from callscribe import worker
from callscribe.audio import encode_pack
from callscribe.engines import Segment
from callscribe.engines.granite_native import GraniteNarNativeEngine
from callscribe.manifests import ChunkRef, JobManifest, JobProgress, RecordingEntry, from_parquet, progress_uri
from callscribe.transcription import run_batches
from tests.unit.test_worker_progress import SHARD, MemStore

MARK = 12345  # the first sample of a poison chunk


class Poison(GraniteNarNativeEngine):
    """The tiny native engine; a chunk whose first sample is MARK makes its batch raise (at the
    batch's start or at its finish, as an asynchronous device error would). ``sticky``: from then
    on every batch raises, as after a device-side assert. Each chunk's text is its token count."""

    sticky = False
    at = "start"
    broken = False

    def _segments(self, ids, times, duration, probs=()):
        return [Segment(0.0, duration, f"t{len(ids)}")]

    def _check(self, prepared) -> None:
        s, at, bad = prepared.samples.numpy(), 0, False
        for n in prepared.lengths:
            bad |= bool(n) and int(s[at]) == MARK
            at += n
        if self.broken or bad:
            self.broken = self.sticky
            raise RuntimeError("CUDA error: device-side assert triggered" if self.sticky else "poison")

    def start(self, prepared):
        if self.at == "start":
            self._check(prepared)
        finish = super().start(prepared)

        def done():
            if self.at == "finish":
                self._check(prepared)
            return finish()

        return done


@pytest.fixture(scope="module")
def engine() -> Poison:
    return Poison(random_weights=True, size="tiny", device="cpu", compile=False)


def _job(n: int = 6, poison: tuple[int, ...] = (3,), zero: tuple[int, ...] = (),
         marks: dict[int, int] | None = None) -> tuple[JobManifest, MemStore]:
    """Recordings 1..n, two 4 s chunks each (a pack of 8 s); batches of 30 s hold 7 chunks, so a
    batch mixes recordings. Recording p in ``poison``: its first chunk is a poison one; z in ``zero``:
    a third chunk of no samples (a manifest that says so); ``marks``: other first samples, by recording."""
    g = np.random.default_rng(0)
    objects, recs, chunks = {}, [], []
    for r in range(1, n + 1):
        a = (g.standard_normal(16000 * 8) * 3000).astype(np.int16)
        if r in poison:
            a[0] = MARK
        elif marks and r in marks:
            a[0] = marks[r]
        uri = f"s3://b/{r}.wav"
        objects[uri] = encode_pack(a, 16000, "wav")
        recs.append(RecordingEntry(recording_id=r, n_channels=1, pack_uri=uri))
        for k in range(2):
            chunks.append(ChunkRef(recording_id=r, channel=0, index=k, speaker="agent", start_s=4.0 * k,
                                   end_s=4.0 * k + 4, pack_offset=64000 * k, n_samples=64000))
        if r in zero:
            chunks.append(ChunkRef(recording_id=r, channel=0, index=2, speaker="agent", start_s=8.0, end_s=8.0,
                                   pack_offset=128000, n_samples=0))
    job = JobManifest(job_id="job-00000", run_id="r", engine="granite-nar-native", batch_audio_s=30.0,
                      shard_uri=SHARD, recordings=recs, chunks=chunks, plan_id="p")
    return job, MemStore(objects)


def _outcome(store: MemStore) -> tuple[list[int], dict[int, str]]:
    df, info = from_parquet(store.objects[SHARD])
    return sorted(set(df["recording_id"])), {f["recording_id"]: f["reason"] for f in info["failures"]}


@pytest.mark.parametrize("at", ["start", "finish"])
def test_a_poison_chunk_fails_only_its_recording(engine, at):
    engine.sticky, engine.broken, engine.at = False, False, at
    job, store = _job()
    worker.run_job(job, store, engine)
    done, failed = _outcome(store)
    assert done == [1, 2, 4, 5, 6]
    assert list(failed) == [3] and "poison" in failed[3]


@pytest.mark.parametrize("at", ["start", "finish"])
def test_a_chunk_that_breaks_the_engine_fails_only_its_recording_within_the_tasks_tries(engine, at):
    """The transcribe task has 3 tries (retries: 2). Each try is a fresh engine (a new pod); the
    chunk breaks the engine again whenever it runs."""
    job, store = _job()
    outcomes = []
    for _ in range(3):
        engine.sticky, engine.broken, engine.at = True, False, at
        try:
            worker.run_job(job, store, engine)
        except RuntimeError as exc:
            outcomes.append(str(exc)[:80])
            continue
        break
    else:
        pytest.fail(f"every try failed the whole job: {outcomes}")
    done, failed = _outcome(store)
    assert done == [1, 2, 4, 5, 6], outcomes
    assert list(failed) == [3]
    assert progress_uri(SHARD) not in store.objects


def test_an_engine_broken_from_the_start_names_no_killer(engine):
    """No chunk is blamed for a device that fails everything, whatever the note says."""
    job, store = _job(poison=())
    for _ in range(3):
        engine.sticky, engine.at, engine.broken = True, "start", True
        with pytest.raises(RuntimeError):
            worker.run_job(job, store, engine)
        note = JobProgress.model_validate_json(store.objects[progress_uri(SHARD)])
        assert note.killers == [] and not note.alone


def test_a_chunk_of_no_samples_is_no_engine_failure(engine):
    """A manifest chunk of 0 samples next to a poison chunk: the check that the engine still works
    must not take it (the shortest chunk recognised) and fail the whole job."""
    engine.sticky, engine.broken, engine.at = False, False, "start"
    job, store = _job(poison=(3,), zero=(5,))
    worker.run_job(job, store, engine)
    done, failed = _outcome(store)
    assert done == [1, 2, 4, 5, 6] and list(failed) == [3]


def test_run_batches_on_chunks_of_no_samples(engine):
    engine.sticky, engine.broken = False, False
    results, metrics = run_batches(engine, [np.zeros(0, np.int16)], 30.0, {})
    assert len(results) == 1 and len(metrics) == 1 and metrics[0].audio_s == 0
