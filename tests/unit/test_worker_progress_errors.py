"""The worker's progress note after a try that failed with an error (not a death), and
the batch numbers of a job's metrics."""

from __future__ import annotations

import pytest

from callscribe import worker
from callscribe.manifests import JobProgress, from_parquet, progress_uri
from tests.unit.test_worker_progress import SHARD, MemStore, Recorder, _setup, _texts


class FlakyNotes(MemStore):
    """The store refuses the ``fail_at``-th write of the progress note (an outage), once."""

    def __init__(self, objects, fail_at: int):
        super().__init__(objects)
        self.note_writes, self.fail_at = 0, fail_at

    def put_bytes(self, uri, data, *args):
        if uri == progress_uri(SHARD):
            self.note_writes += 1
            if self.note_writes == self.fail_at:
                raise ConnectionError("the store is down")
        return super().put_bytes(uri, data, *args)


def test_a_try_that_fails_with_an_error_does_not_make_its_last_chunk_alone_a_killer():
    job, store = _setup()
    # Try 1 died with chunks 0, 1, 2 in the engine: try 2 runs them alone first.
    store.objects[progress_uri(SHARD)] = JobProgress(plan_id="p", in_flight=[0, 1, 2]).model_dump_json().encode()
    flaky = FlakyNotes(store.objects, fail_at=3)  # 1: _resume, 2: chunk 0 alone, 3: chunk 1 alone
    with pytest.raises(ConnectionError):
        worker.run_job(job, flaky, Recorder(flaky))  # try 2: an error, not a death, after chunk 0 ran fine
    # Try 3: chunk 0 did not kill anything; its recording must be transcribed.
    worker.run_job(job, store, Recorder(store))
    _, info = from_parquet(store.objects[SHARD])
    assert info["failures"] == [], info["failures"]
    assert _texts(store) == {r: str(r * 1000) for r in range(1, 6)}


def test_batch_numbers_of_a_job_run_in_several_calls_count_up_by_one():
    job, store = _setup()
    store.objects[progress_uri(SHARD)] = JobProgress(plan_id="p", in_flight=[0]).model_dump_json().encode()
    worker.run_job(job, store, Recorder(store))
    _, info = from_parquet(store.objects[SHARD])
    numbers = [b["batch_index"] for b in info["batches"]]
    assert numbers == list(range(len(numbers))), numbers
