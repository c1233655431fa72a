"""A chunk that breaks the engine for good: what the progress note names when the engine breaks, and
what that costs the job (the note names the last run of failures, a one-recording job on a broken
device, the cause a process before left)."""

from __future__ import annotations

import pytest

from callscribe import worker
from callscribe.manifests import JobManifest, JobProgress, progress_uri
from tests.unit.test_worker_poison import Poison, _outcome
from tests.unit.test_worker_poison import _job as poison_job
from tests.unit.test_worker_progress import SHARD, MemStore

SOFT = 23456  # the first sample of a chunk the engine fails on, alone too, without breaking


class SoftAndSticky(Poison):
    """A MARK chunk breaks the engine for good; a SOFT chunk makes its batch raise, nothing more."""

    sticky = True

    def _check(self, prepared) -> None:
        s, at = prepared.samples.numpy(), 0
        for n in prepared.lengths:
            if n and int(s[at]) == SOFT and not self.broken:
                raise RuntimeError("a chunk this engine cannot take (not a device error)")
            at += n
        super()._check(prepared)


@pytest.fixture(scope="module")
def engine() -> SoftAndSticky:
    return SoftAndSticky(random_weights=True, size="tiny", device="cpu", compile=False)


def _job(n: int, soft: int, breaker: int) -> tuple[JobManifest, MemStore]:
    """Recordings 1..n, two 4 s chunks each; batches of 30 s hold 7 chunks, in the job's order."""
    return poison_job(n, poison=(breaker,), marks={soft: SOFT})


@pytest.mark.parametrize("at", ["start", "finish"])
def test_a_chunk_that_fails_alone_early_does_not_hide_a_later_breaker(engine, at):
    """Recording 1's first chunk fails on its own (batch 1, an ordinary per-chunk error: its recording
    fails, the job goes on); recording 10's first chunk (batch 3) breaks the engine for good. The
    note must name the chunks the engine held when it broke, not those of the first failure of the
    try: else each new process runs batch 1's chunks alone, breaks again in batch 3, and names
    chunk 0 alone; the job never finishes, over every respawn and every try of the task (5 x 3)."""
    job, store = _job(12, soft=1, breaker=10)
    outcomes, notes = [], []
    for _ in range(15):
        engine.broken, engine.at = False, at  # each try a new process: a new device context
        try:
            worker.run_job(job, store, engine)
        except RuntimeError as exc:
            outcomes.append(str(exc)[:90])
            notes.append(JobProgress.model_validate_json(store.objects[progress_uri(SHARD)]))
            continue
        break
    else:
        pytest.fail(f"the job never finished: {outcomes}; notes: {notes[:3]}")
    done, failed = _outcome(store)
    assert sorted(failed) == [1, 10], failed
    assert done == [r for r in range(1, 13) if r not in (1, 10)]
    assert len(outcomes) <= 2, outcomes  # one break in a batch, one alone: as in test_worker_poison


def test_a_respawned_process_that_finishes_leaves_no_cause_behind(monkeypatch, tmp_path):
    """The first process's engine breaks (exit status 75; its cause goes to the termination message,
    /dev/termination-log in a pod); a new process goes on and writes the shard. The try succeeded:
    the cause the first process wrote must not stand as the container's message (nor as what the
    local runner's _worker_cause reads, should a later process end with no cause of its own)."""
    job, _ = _job(2, soft=0, breaker=0)
    count, error, xcom = tmp_path / "runs", tmp_path / "err.txt", tmp_path / "xcom.json"
    count.write_text("0")

    def run_job(job, store, engine=None):
        n = int(count.read_text()) + 1
        count.write_text(str(n))
        if n == 1:
            raise worker.EngineBroke("the engine broke during the job (scripted)", [0, 1])
        return job.shard_uri

    monkeypatch.setenv("CALLSCRIBE_WORKER_RESPAWNS", "4")
    monkeypatch.setattr(worker, "run_job", run_job)
    monkeypatch.setattr(worker, "s3_from_env", lambda: None)
    monkeypatch.setattr(worker, "Store", lambda s3: MemStore({"s3://b/job.json": job.model_dump_json().encode()}))
    monkeypatch.setattr(worker, "_note_at_start", lambda args: None)
    monkeypatch.setattr(worker, "_died_in_engine", lambda args, notes: True)
    monkeypatch.setattr(worker, "_stop_on_sigterm", lambda: None)
    rc = worker.main(["--job", "s3://b/job.json", "--xcom-path", str(xcom), "--error-path", str(error)])
    assert rc == 0 and count.read_text() == "2"
    assert not error.exists() or error.read_text().strip() == "", error.read_text()


def test_a_device_broken_from_the_start_fails_no_recording_of_a_one_recording_job(engine):
    """A job of one recording (a reprocessed call, a small day) on a device that fails everything:
    not the call's fault. The job must fail (the task's retry, on another device), not write a shard
    that fails the recording for good with the device's error."""
    job, store = _job(1, soft=0, breaker=0)
    engine.broken, engine.at = True, "start"
    with pytest.raises(RuntimeError, match="engine"):
        worker.run_job(job, store, engine)
    assert SHARD not in store.objects
    note = JobProgress.model_validate_json(store.objects[progress_uri(SHARD)])
    assert note.killers == [] and not note.alone


def test_a_chunk_that_breaks_the_engine_in_a_one_recording_job_is_found(engine):
    """The same job, its first chunk breaking the engine: the recording fails, as a killer's."""
    job, store = _job(1, soft=0, breaker=1)
    for _ in range(5):
        engine.broken, engine.at = False, "start"
        try:
            worker.run_job(job, store, engine)
        except RuntimeError:
            continue
        break
    done, failed = _outcome(store)
    assert done == [] and list(failed) == [1]
