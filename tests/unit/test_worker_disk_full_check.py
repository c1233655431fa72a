"""A full disk met by the worker's own check of the engine, not by a batch.

When some chunks of a job failed on their own, the worker asks the engine again for a chunk it
recognised (worker._check_engine), a batch of a shape it may not have compiled yet. On a full kernel
cache that raises ENOSPC, which _check_engine took for the engine breaking: the job failed with "the
engine broke during the job (it fails now on a chunk it recognised before)", sending the operator to
the GPU, and its progress note named the chunks of the first failed batch as suspects, for the next
try to run alone as if they might have broken the device.
"""

from __future__ import annotations

import errno

import pytest

from callscribe import worker
from callscribe.engines import BaseEngine, Segment
from callscribe.errors import machine_fault
from callscribe.manifests import JobProgress, progress_uri
from tests.unit.test_worker_poison import _job
from tests.unit.test_worker_progress import SHARD

SOFT = 23456  # the first sample of a chunk the engine refuses (its own fault)


class FullCache(BaseEngine):
    """Refuses a SOFT chunk's batch; 'compiles' each new batch shape into a cache with room for
    ``room`` shapes (ENOSPC after that)."""

    name = "full-cache"
    takes_int16 = True

    def __init__(self, room: int):
        self.room, self.compiled = room, set()

    def run(self, prepared):
        if any(len(a) and int(a[0]) == SOFT for a in prepared):
            raise ValueError("a chunk this engine cannot take")
        shape = (len(prepared), max(len(a) for a in prepared))
        if shape not in self.compiled:
            if len(self.compiled) >= self.room:
                raise OSError(errno.ENOSPC, "No space left on device", "/tmp/torchinductor/fxgraph")
            self.compiled.add(shape)
        return [[Segment(0.0, 1.0, "hello")] for _ in prepared]


def test_a_full_disk_in_the_engine_check_is_not_the_engine_breaking():
    job, store = _job(6, poison=(), marks={1: SOFT})  # 12 chunks: batches of 7 and 5
    # Room for the shapes of the job's batches and halves (4, 2 and 5 chunks), not for the check's.
    with pytest.raises(Exception) as raised:
        worker.run_job(job, store, FullCache(room=3))
    assert machine_fault(raised.value), repr(raised.value)
    assert "engine broke" not in str(raised.value), str(raised.value)
    note = JobProgress.model_validate_json(store.objects[progress_uri(SHARD)])
    assert note.in_flight == [] and not note.alone, note  # no chunk named for a full disk
