"""The worker's fetch of a job's speech: each chunk read from its recording's pack and resampled, a bad
pack failing only its recordings, and the model loading while the speech is fetched.

The store here is a dict (a unit test of the worker's own logic); the worker against the real
object store is in tests/integration (test_run_outcomes, the DAG runs).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from callscribe import worker
from callscribe.audio import encode_pack, resample
from callscribe.manifests import ChunkRef, JobManifest, RecordingEntry


class DictStore:
    def __init__(self, objects: dict[str, bytes], on_get=None):
        self.objects, self.on_get = objects, on_get

    def get_bytes(self, uri: str) -> bytes:
        if self.on_get:
            self.on_get(uri)
        return self.objects[uri]

    def exists(self, uri: str) -> bool:
        return uri in self.objects


def _chunk(rid: int, index: int, offset: int, n: int, rate: int) -> ChunkRef:
    return ChunkRef(recording_id=rid, channel=0, index=index, speaker="agent", start_s=offset / rate,
                    end_s=(offset + n) / rate, pack_offset=offset, n_samples=n, pack_rate=rate)


def _job(chunks: list[ChunkRef], packs: dict[int, str | None]) -> JobManifest:
    return JobManifest(job_id="job-00000", run_id="r", engine="fake", batch_audio_s=60.0, shard_uri="s3://b/s.parquet",
                       recordings=[RecordingEntry(recording_id=rid, n_channels=1, pack_uri=uri)
                                   for rid, uri in packs.items()], chunks=chunks)


@pytest.fixture
def packs() -> dict[str, np.ndarray]:
    g = np.random.default_rng(0)
    return {"s3://b/1.wav": (g.standard_normal(8000 * 6) * 3000).astype(np.int16),  # an 8 kHz call
            "s3://b/2.wav": (g.standard_normal(16000 * 3) * 3000).astype(np.int16),
            "s3://b/3.wav": (g.standard_normal(8000 * 2) * 3000).astype(np.int16)}


def test_each_chunk_comes_resampled_from_its_pack_and_a_bad_pack_fails_only_its_recordings(packs):
    objects = {"s3://b/1.wav": encode_pack(packs["s3://b/1.wav"], 8000, "wav"),
               "s3://b/2.wav": encode_pack(packs["s3://b/2.wav"], 16000, "wav"),
               "s3://b/3.wav": encode_pack(packs["s3://b/3.wav"], 8000, "wav"),
               "s3://b/4.wav": b"not a sound file"}
    chunks = [_chunk(1, 0, 0, 16000, 8000), _chunk(2, 0, 8000, 16000, 16000), _chunk(1, 1, 20000, 24000, 8000),
              _chunk(3, 0, 0, 8000, 8000), _chunk(3, 1, 8000, 12000, 8000),  # past the end of its pack
              _chunk(4, 0, 0, 8000, 8000), _chunk(5, 0, 0, 8000, 8000), _chunk(6, 0, 0, 8000, 8000)]
    job = _job(chunks, {1: "s3://b/1.wav", 2: "s3://b/2.wav", 3: "s3://b/3.wav", 4: "s3://b/4.wav",
                        5: "s3://b/1.wav", 6: None})
    failures = {5: "failed before the fetch"}
    got = worker.fetch_chunks(DictStore(objects), job, failures)
    assert sorted(got) == [0, 1, 2]
    for i in (0, 1, 2):
        c = chunks[i]
        pack = packs[f"s3://b/{c.recording_id}.wav"]
        want = resample(pack[c.pack_offset : c.pack_offset + c.n_samples], c.pack_rate)
        assert got[i].dtype == np.int16 and np.array_equal(got[i], want)
    assert failures[3] == "speech pack is shorter than its manifest says"
    assert failures[4].startswith("speech pack unreadable (s3://b/4.wav): ")
    assert failures[5] == "failed before the fetch" and failures[6] == "its chunks have no speech pack"
    assert set(failures) == {3, 4, 5, 6}


def test_an_unreachable_store_fails_the_job(packs):
    def gone(uri: str) -> None:
        raise ConnectionError("store unreachable")

    job = _job([_chunk(1, 0, 0, 8000, 8000)], {1: "s3://b/1.wav"})
    with pytest.raises(ConnectionError):
        worker.fetch_chunks(DictStore({}, on_get=gone), job, {})


def test_the_model_loads_while_the_speech_is_fetched(packs, monkeypatch):
    """A GPU pod's model load, compile and warm-up take about 15 s, and fetching and resampling a job's
    speech grows with the job (200 h: most of a minute): they run side by side, not one after the other.
    The fetch waits here until the engine is being created, and the engine until the fetch has begun:
    one after the other, the fetch would wait for nothing and say so."""
    engine_started, fetch_started, fetch_saw = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def get(uri: str) -> None:
        fetch_started.set()
        seen["engine_loading_during_fetch"] = engine_started.wait(timeout=10)
        fetch_saw.set()

    def create(name: str):
        engine_started.set()
        seen["fetch_during_engine_load"] = fetch_started.wait(timeout=10)
        raise RuntimeError("no model here")  # the rest of the job is not this test's

    monkeypatch.setattr(worker.engines, "create", create)
    store = DictStore({"s3://b/1.wav": encode_pack(packs["s3://b/1.wav"], 8000, "wav")}, on_get=get)
    with pytest.raises(RuntimeError, match="no model here"):
        worker.run_job(_job([_chunk(1, 0, 0, 8000, 8000)], {1: "s3://b/1.wav"}), store)
    assert fetch_saw.wait(timeout=15)  # the job's error does not wait for the fetch (next test): this does
    assert seen == {"engine_loading_during_fetch": True, "fetch_during_engine_load": True}


def test_an_engine_that_fails_does_not_wait_for_the_fetch(packs, monkeypatch):
    """The engine's error is the job's at once: a fetch hanging on a store that does not answer (the
    client's own timeouts are minutes) is not waited for."""
    release = threading.Event()

    def create(name: str):
        raise RuntimeError("no gpu")

    monkeypatch.setattr(worker.engines, "create", create)
    store = DictStore({"s3://b/1.wav": encode_pack(packs["s3://b/1.wav"], 8000, "wav")},
                      on_get=lambda uri: release.wait(timeout=30))
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="no gpu"):
        worker.run_job(_job([_chunk(1, 0, 0, 8000, 8000)], {1: "s3://b/1.wav"}), store)
    assert time.perf_counter() - started < 10
    release.set()


def test_a_fetch_that_fails_fails_the_job_once_the_engine_is_ready(packs, monkeypatch):
    made = []

    def gone(uri: str) -> None:
        raise ConnectionError("store unreachable")

    monkeypatch.setattr(worker.engines, "create", lambda name: made.append(name) or object())
    with pytest.raises(ConnectionError, match="store unreachable"):
        worker.run_job(_job([_chunk(1, 0, 0, 8000, 8000)], {1: "s3://b/1.wav"}), DictStore({}, on_get=gone))
    assert made == ["fake"]


def test_a_job_of_silent_recordings_loads_no_model(monkeypatch):
    """Recordings without speech have no chunks and no pack: their job writes a shard with no segments
    and no failures, without a model (on a GPU pod, a load of 15 s or more for nothing)."""
    from callscribe.manifests import from_parquet

    monkeypatch.setattr(worker.engines, "create", lambda name: pytest.fail("a model was loaded"))
    store = DictStore({})
    store.put_bytes = lambda uri, data, *a: store.objects.__setitem__(uri, data)
    uri = worker.run_job(_job([], {1: None, 2: None}), store)
    df, info = from_parquet(store.objects[uri])
    assert len(df) == 0 and info["failures"] == [] and info["engine"] == "fake"
    assert [r["recording_id"] for r in info["recordings"]] == [1, 2]


def test_the_fetch_uses_the_cpus_the_worker_has(monkeypatch):
    """A GPU pod's job is up to 200 h of packs fetched while the model loads: four threads left a
    pod's 8 CPUs half idle and the GPU waiting. The pod's CPUs reach the worker as OMP_NUM_THREADS."""
    for name in ("CALLSCRIBE_FETCH_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(worker.os, "cpu_count", lambda: 2)
    assert worker.fetch_threads() == 4  # a small machine: the GETs wait on the network more than they compute
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert worker.fetch_threads() == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert worker.fetch_threads() == 16  # bounded: each thread holds a decoded pack
    monkeypatch.setenv("CALLSCRIBE_FETCH_THREADS", "6")
    assert worker.fetch_threads() == 6
