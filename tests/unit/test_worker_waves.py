"""The worker's waves: the engine starts on the speech that has arrived
and takes the rest as it comes. What a wave must not change: the shard, the progress note a death
finds, the cleanup of a try that fails or is stopped, and how soon its process can end."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from callscribe import worker
from callscribe.manifests import JobProgress, from_parquet, progress_uri
from tests.unit.test_worker_progress import SHARD, MemStore, Recorder, _setup, _texts


class Held(MemStore):
    """The packs in ``held`` are answered once ``release`` is set (or raise ``error`` then)."""

    def __init__(self, objects, held: set[str], error: Exception | None = None):
        super().__init__(objects)
        self.held, self.error = held, error
        self.release = threading.Event()
        self.gets: list[str] = []

    def get_bytes(self, uri: str) -> bytes:
        if uri in self.held:
            assert self.release.wait(10)
            if self.error is not None:
                raise self.error
        self.gets.append(uri)
        return super().get_bytes(uri)


class Releasing(Recorder):
    """Sets the store's ``release`` once it has run ``after`` batches."""

    def __init__(self, store: Held, after: int = 1):
        super().__init__(store)
        self.after = after

    def run(self, batch):
        out = super().run(batch)
        if len(self.batches) >= self.after:
            self.store.release.set()
        return out


def _shard(store: MemStore):
    df, info = from_parquet(store.objects[SHARD])
    return df, {k: v for k, v in info.items() if k != "batches"}


def test_a_job_in_waves_writes_the_shard_one_wave_writes(monkeypatch):
    monkeypatch.setattr(worker, "WAVE_BATCHES", 1)  # the first wave: 0.4 s, of the 2.25 s here
    job, store = _setup(8)
    worker.run_job(job, store, Recorder(store))
    one_df, one_info = _shard(store)
    job, store = _setup(8)
    held = Held(store.objects, {job.recordings[-1].pack_uri, job.recordings[-2].pack_uri})
    eng = Releasing(held)
    worker.run_job(job, held, eng)
    df, info = _shard(held)
    assert eng.notes[0] is not None and len(eng.batches) > 1
    assert df.equals(one_df) and info == one_info


def test_a_slow_pack_does_not_hold_back_the_packs_after_it(monkeypatch):
    """The first pack's GET is slow (a store's tail latency, a retry): the seven fetched after it go
    to the engine meanwhile, not once it has come."""
    monkeypatch.setattr(worker, "WAVE_BATCHES", 1)
    job, store = _setup(8)
    held = Held(store.objects, {job.recordings[0].pack_uri})  # s3://b/1.wav: the first of the job's packs
    eng = Releasing(held)
    worker.run_job(job, held, eng)
    _, info = from_parquet(held.objects[SHARD])
    assert info["failures"] == []
    assert 1000 not in eng.batches[0]  # the engine ran before the first pack came
    assert _texts(held) == {r: str(r * 1000) for r in range(1, 9)}


def test_a_fetch_that_fails_after_a_wave_fails_the_job_and_clears_the_note():
    """The store goes away part-way: the job fails with the store's error (a retry), writes no
    shard, and its note names nothing in flight (a later try must not take the first wave's chunks
    for suspects)."""
    job, store = _setup(8)
    held = Held(store.objects, {job.recordings[-1].pack_uri}, ConnectionError("the store is gone"))
    eng = Releasing(held)
    with pytest.raises(ConnectionError, match="the store is gone"):
        worker.run_job(job, held, eng)
    assert eng.batches and SHARD not in held.objects
    note = JobProgress.model_validate_json(held.objects[progress_uri(SHARD)])
    assert note == JobProgress(plan_id="p")


def test_a_note_between_waves_names_nothing_in_flight():
    """A death while the worker waits for the next wave is no finished batch's chunks' fault."""
    job, store = _setup(8)
    held = Held(store.objects, {job.recordings[-1].pack_uri})
    eng = Recorder(held)
    seen: list[JobProgress] = []

    def look():
        while not eng.batches:
            time.sleep(0.01)
        time.sleep(0.3)  # the first wave is done; the last pack is still to come
        seen.append(JobProgress.model_validate_json(held.objects[progress_uri(SHARD)]))
        held.release.set()

    t = threading.Thread(target=look)
    t.start()
    worker.run_job(job, held, eng)
    t.join()
    assert len(eng.notes) > 1 and eng.notes[0].in_flight  # the wave's batches were named while they ran
    assert seen == [JobProgress(plan_id="p")]


def test_a_job_whose_only_recording_is_a_killer_leaves_no_note():
    """Try 3 of a one-recording job whose chunk killed tries 1 and 2 sends nothing to the engine:
    its shard still speaks for the job, so its note must go (a cleared task's next run would read
    it and fail the recording again without running it)."""
    job, store = _setup(1)
    store.objects[progress_uri(SHARD)] = JobProgress(plan_id="p", in_flight=[0], alone=True).model_dump_json().encode()
    worker.run_job(job, store, Recorder(store))
    _, info = from_parquet(store.objects[SHARD])
    assert [f["recording_id"] for f in info["failures"]] == [1]
    assert progress_uri(SHARD) not in store.objects


def test_a_job_whose_packs_all_fail_after_a_death_leaves_no_note():
    job, store = _setup(2)
    store.objects[progress_uri(SHARD)] = JobProgress(plan_id="p", in_flight=[0, 1]).model_dump_json().encode()
    for r in job.recordings:
        store.objects[r.pack_uri] = b"not a sound file"
    worker.run_job(job, store, Recorder(store))
    _, info = from_parquet(store.objects[SHARD])
    assert [f["recording_id"] for f in info["failures"]] == [1, 2]
    assert progress_uri(SHARD) not in store.objects


def test_a_try_after_a_death_in_a_later_wave_takes_the_whole_job_suspects_first():
    job, store = _setup(8)
    store.objects[progress_uri(SHARD)] = JobProgress(plan_id="p", in_flight=[6, 7]).model_dump_json().encode()
    eng = Recorder(store)
    worker.run_job(job, store, eng)
    # The engine shown to work, for as many batches as testing a suspect takes, before one is blamed.
    assert eng.batches[:2] == [[len(worker._SILENCE)]] * 2
    assert eng.batches[2:4] == [[7000], [8000]]  # the suspects, each alone, before the rest
    assert [n.alone for n in eng.notes[2:4]] == [True, True] and not any(n.alone for n in eng.notes[4:])
    assert sum(len(b) for b in eng.batches[2:]) == 8
    assert _texts(store) == {r: str(r * 1000) for r in range(1, 9)}


def test_a_sigterm_while_waiting_for_the_next_wave_stops_the_job_and_its_fetch(monkeypatch):
    """Stopped from outside while the worker waits for speech still to come: the stop is raised at
    once, the note names nothing in flight, and the fetch asks the store for nothing more (the
    process would otherwise stay up until the whole job is fetched: the pool's threads are joined
    at exit)."""
    monkeypatch.setattr(worker, "WAVE_BATCHES", 1)
    monkeypatch.setenv("CALLSCRIBE_FETCH_THREADS", "1")  # one pack at a time: the rest wait in the pool's queue
    job, store = _setup(8)
    held = Held(store.objects, {r.pack_uri for r in job.recordings[4:]})
    eng = Recorder(held)
    previous = signal.getsignal(signal.SIGTERM)
    worker._stop_on_sigterm()
    try:
        def stop():
            while not eng.batches:
                time.sleep(0.01)
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            held.release.set()

        threading.Thread(target=stop).start()
        with pytest.raises(worker.Stopped):
            worker.run_job(job, held, eng)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert JobProgress.model_validate_json(held.objects[progress_uri(SHARD)]) == JobProgress(plan_id="p")
    time.sleep(0.5)
    assert len([u for u in held.gets if u in held.held]) <= 1, held.gets  # the one asked for when it stopped


def test_an_engine_that_fails_leaves_the_rest_of_the_fetch_unasked(monkeypatch):
    """A pod whose engine cannot start exits at once, not after fetching the whole job (a 200 h job's
    packs: most of a minute with the GPU held): the pool's threads are joined when the process ends."""
    job, store = _setup(8)
    held = Held(store.objects, {r.pack_uri for r in job.recordings})

    class NoEngine(Exception):
        pass

    def create(name: str):
        raise NoEngine("no gpu")

    monkeypatch.setenv("CALLSCRIBE_FETCH_THREADS", "1")
    monkeypatch.setattr(worker.engines, "create", create)
    with pytest.raises(worker.DeploymentFault, match="no gpu") as failed:
        worker.run_job(job, held)
    assert isinstance(failed.value.__cause__, NoEngine)  # the deployment's fault: the calls' attempt back
    held.release.set()
    time.sleep(0.5)
    assert len(held.gets) <= 1, held.gets


def test_the_fetch_threads_read_an_openmp_list(monkeypatch):
    """OMP_NUM_THREADS may be a list (nested levels, "8,2": valid OpenMP) and a local worker inherits
    the task's: the fetch must not fail the job over it."""
    monkeypatch.delenv("CALLSCRIBE_FETCH_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "8,2")
    assert worker.fetch_threads() == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    monkeypatch.setattr(worker.os, "cpu_count", lambda: 6)
    assert worker.fetch_threads() == 6


@pytest.mark.parametrize("good_batches, error", [(0, "the engine failed on all"),
                                                 (1, "the engine broke during the job")])
def test_a_broken_engine_fails_the_job_across_waves(monkeypatch, good_batches, error):
    """Counted over the whole job, not per wave: an engine broken from the start fails every chunk
    of every wave; one that breaks after the first wave's first batch fails the check on a chunk it
    recognised. Either way the job fails (a retry, on another device), and its note names the chunks
    the engine held when it first failed (suspects for the next try, none a killer)."""
    monkeypatch.setattr(worker, "WAVE_BATCHES", 1)
    job, store = _setup(8)
    held = Held(store.objects, {job.recordings[-1].pack_uri})

    class Breaking(Releasing):
        def run(self, batch):
            if len(self.batches) >= good_batches:
                self.store.release.set()
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return super().run(batch)

    eng = Breaking(held)
    with pytest.raises(RuntimeError, match=error):
        worker.run_job(job, held, eng)
    assert SHARD not in held.objects
    note = JobProgress.model_validate_json(held.objects[progress_uri(SHARD)])
    assert note.in_flight and not note.alone and note.killers == [] and note.suspects == []
    assert note.after_death().killers == []
