"""The worker's progress note: what a try learns from the note an earlier try left when its process
died (plain data), and how run_job acts on it with a store in memory and a scripted engine.

The worker killed for real, in a subprocess against the object store, is
tests/integration/test_worker_deaths.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from callscribe import worker
from callscribe.audio import encode_pack
from callscribe.engines import BaseEngine, Segment
from callscribe.manifests import (
    ChunkRef,
    JobManifest,
    JobProgress,
    RecordingEntry,
    from_parquet,
    progress_uri,
)

SHARD = "s3://b/runs/r/shards/job-00000.parquet"


def test_a_death_with_one_chunk_alone_makes_it_a_killer():
    note = JobProgress(plan_id="p", in_flight=[4], alone=True, suspects=[1, 4, 7], killers=[2])
    assert note.after_death() == JobProgress(plan_id="p", suspects=[1, 7], killers=[2, 4])


def test_a_death_in_a_batch_makes_its_chunks_suspects():
    note = JobProgress(plan_id="p", in_flight=[9, 3, 5], suspects=[1, 3], killers=[2])
    assert note.after_death() == JobProgress(plan_id="p", suspects=[1, 3, 5, 9], killers=[2])
    # One chunk in flight, but in a batch of one (the last of a job): a suspect, not yet a killer.
    assert JobProgress(plan_id="p", in_flight=[6]).after_death() == JobProgress(plan_id="p", suspects=[6])


def test_a_death_with_nothing_in_flight_changes_nothing():
    note = JobProgress(plan_id="p", suspects=[1], killers=[2])
    assert note.after_death() == note


def test_the_note_lies_beside_the_shard():
    assert progress_uri(SHARD) == "s3://b/runs/r/shards/job-00000.progress.json"


class MemStore:
    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects
        self.puts: list[str] = []

    def get_bytes(self, uri: str) -> bytes:
        return self.objects[uri]

    def put_bytes(self, uri: str, data: bytes, *args) -> str:
        self.objects[uri] = data
        self.puts.append(uri)
        return uri

    def exists(self, uri: str) -> bool:
        return uri in self.objects

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)


class Recorder(BaseEngine):
    """Each chunk's length (in samples) as its text; remembers the batches and the note at each."""

    name = "fake"
    takes_int16 = True

    def __init__(self, store: MemStore):
        self.store = store
        self.batches: list[list[int]] = []
        self.notes: list[JobProgress | None] = []

    def run(self, batch):
        self.batches.append(sorted(len(a) for a in batch))
        raw = self.store.objects.get(progress_uri(SHARD))
        self.notes.append(JobProgress.model_validate_json(raw) if raw else None)
        return [[Segment(0.0, 0.5, str(len(a)))] for a in batch]

    def peak_memory_bytes(self):
        return None


def _setup(n: int = 5) -> tuple[JobManifest, MemStore]:
    """Recordings 1..n, one 16 kHz chunk each; recording r's chunk is r * 1000 samples long."""
    g = np.random.default_rng(0)
    objects, chunks, recs = {}, [], []
    for r in range(1, n + 1):
        uri = f"s3://b/{r}.wav"
        objects[uri] = encode_pack((g.standard_normal(r * 1000) * 3000).astype(np.int16), 16000, "wav")
        recs.append(RecordingEntry(recording_id=r, n_channels=1, pack_uri=uri))
        chunks.append(ChunkRef(recording_id=r, channel=0, index=0, speaker="agent", start_s=0.0,
                               end_s=r * 1000 / 16000, pack_offset=0, n_samples=r * 1000))
    job = JobManifest(job_id="job-00000", run_id="r", engine="fake", batch_audio_s=0.4, shard_uri=SHARD,
                      recordings=recs, chunks=chunks, plan_id="p")
    return job, MemStore(objects)


def _texts(store: MemStore) -> dict[int, str]:
    df, _ = from_parquet(store.objects[SHARD])
    return dict(zip(df["recording_id"], df["text"], strict=True))


def test_a_job_without_a_note_writes_one_before_each_batch_and_removes_it():
    job, store = _setup()
    eng = Recorder(store)
    worker.run_job(job, store, eng)
    assert len(eng.batches) > 1 and all(n is not None for n in eng.notes)
    for batch, note in zip(eng.batches, eng.notes, strict=True):
        assert not note.alone and not note.suspects and not note.killers
        assert {job.chunks[i].n_samples for i in note.in_flight} >= set(batch)
    assert progress_uri(SHARD) not in store.objects
    assert _texts(store) == {r: str(r * 1000) for r in range(1, 6)}


def test_killers_are_not_run_and_suspects_run_alone_with_the_same_results():
    job, store = _setup()
    before = JobProgress(plan_id="p", in_flight=[1], alone=True, suspects=[1, 3])  # try 2 died on chunk 1 alone
    store.objects[progress_uri(SHARD)] = before.model_dump_json().encode()
    eng = Recorder(store)
    worker.run_job(job, store, eng)
    assert all(2000 not in b for b in eng.batches)  # recording 2's chunk: the killer
    assert [4000] in eng.batches  # the suspect, alone, with the note saying so
    alone = eng.notes[eng.batches.index([4000])]
    assert alone == JobProgress(plan_id="p", in_flight=[3], alone=True, suspects=[3], killers=[1])
    _, info = from_parquet(store.objects[SHARD])
    assert [f["recording_id"] for f in info["failures"]] == [2]
    assert "the worker process died on this chunk, run alone" in info["failures"][0]["reason"]
    assert _texts(store) == {r: str(r * 1000) for r in (1, 3, 4, 5)}
    assert progress_uri(SHARD) not in store.objects


@pytest.mark.parametrize("raw", [
    JobProgress(plan_id="another", in_flight=[0], alone=True, killers=[1, 2]).model_dump_json().encode(),
    b"{not json",
    JobProgress(plan_id="p", killers=[99]).model_dump_json().encode(),  # not a chunk of this job
])
def test_a_note_of_another_plan_or_unreadable_is_ignored(raw, caplog):
    job, store = _setup()
    store.objects[progress_uri(SHARD)] = raw
    worker.run_job(job, store, Recorder(store))
    _, info = from_parquet(store.objects[SHARD])
    assert info["failures"] == []
    assert _texts(store) == {r: str(r * 1000) for r in range(1, 6)}
    assert "progress note" in caplog.text and "ignored" in caplog.text


def test_the_engine_starts_on_the_speech_that_has_arrived():
    """A 200 h job's packs take most of a minute to fetch: the engine starts once a few batches' worth
    is in, and takes the rest in later waves, with the same results as one wave."""
    import threading

    job, store = _setup(8)
    last = max(r.pack_uri for r in job.recordings)
    ran = threading.Event()
    order: list[str] = []

    class Slow(MemStore):
        def get_bytes(self, uri: str) -> bytes:
            if uri == last:
                order.append("last pack waits" if ran.wait(10) else "last pack gave up waiting")
            return super().get_bytes(uri)

    slow = Slow(store.objects)

    class Started(Recorder):
        def run(self, batch):
            out = super().run(batch)
            ran.set()
            return out

    eng = Started(slow)
    worker.run_job(job, slow, eng)
    assert order == ["last pack waits"]  # the engine ran while the fetch was still going
    assert sum(len(b) for b in eng.batches) == 8
    assert _texts(slow) == {r: str(r * 1000) for r in range(1, 9)}
    assert progress_uri(SHARD) not in slow.objects


def test_arrivals_come_in_waves_and_end_when_the_fetch_does():
    import threading

    arrivals = worker.Arrivals()
    second = np.zeros(16000, dtype=np.int16)  # 1 s
    arrivals.add({0: second})
    got: list = []
    t = threading.Thread(target=lambda: got.append(arrivals.take(2.0)))
    t.start()
    t.join(0.2)
    assert t.is_alive()  # 1 s of the 2 asked for: it waits
    arrivals.add({3: second, 1: second})
    t.join(5)
    assert got == [[0, 1, 3]]
    t = threading.Thread(target=lambda: got.append(arrivals.take(0.0)))
    t.start()
    t.join(0.2)
    assert t.is_alive()  # nothing new, the fetch still going: it waits, it does not end the job's waves
    arrivals.close()
    t.join(5)
    assert got[-1] is None and arrivals.audio.keys() == {0, 1, 3}
