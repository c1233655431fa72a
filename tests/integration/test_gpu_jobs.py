"""The GPU job path as a pod runs it (`python -m callscribe.worker --job URI` in a
subprocess, with the pod's environment), its retries, and the load that follows.

Faults the engine itself would show on a GPU (a device that breaks mid-job) are put into the
worker process by a wrapper that swaps the engine's factory before calling the worker's own
``main``, so the command line, the store and the exit status are the real ones.
"""

from __future__ import annotations

import subprocess
import textwrap
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, loading, pipeline
from callscribe.manifests import JobManifest, failure_uri
from tests.integration.helpers import run_pod, upload_day

pytestmark = pytest.mark.integration

# A stand-in engine under the job's engine name: the first ``good`` batches are recognised, every
# batch after that raises what a GPU that has broken raises (a sticky CUDA error); a batch holding
# a chunk of ``bad`` samples or more fails every time (a chunk the model cannot take: its audio).
BREAKING_ENGINE = textwrap.dedent("""
    import sys
    from callscribe import engines, worker
    from callscribe.engines import BaseEngine, Segment

    class Breaking(BaseEngine):
        name = "whisper-tiny"
        device = "cuda"
        calls = 0

        def run(self, batch):
            Breaking.calls += 1
            if Breaking.calls > GOOD:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            if any(len(a) >= BAD for a in batch):
                raise ValueError("this chunk cannot be recognised")
            return [[Segment(0.0, 1.0, "hello there")] for _ in batch]

        def peak_memory_bytes(self):
            return None

    engines._FACTORIES["whisper-tiny"] = lambda **kw: Breaking()
    sys.exit(worker.main(sys.argv[1:]))
""")


def _pod(job_uri: str, tmp_path, good_batches: int = 10**9, bad_samples: int = 10**12) -> subprocess.CompletedProcess:
    """The worker as the pod runs it, with the pod's environment (S3 settings only)."""
    return run_pod(BREAKING_ENGINE.replace("GOOD", str(good_batches)).replace("BAD", str(bad_samples)), job_uri,
                   tmp_path)


def _rows(pg, ids):
    with pg.connect() as c:
        return {r.id: r for r in c.execute(sa.text(
            "SELECT id, status, last_error, attempts FROM recordings WHERE id = ANY(:ids)"), {"ids": ids})}


def test_a_gpu_that_breaks_mid_job_fails_the_job_not_the_recordings(stack, s3, pg, tmp_path):
    """The device breaks after the first batch: every later chunk fails, alone too. That is the
    engine, not the calls: the pod must fail (so the task's retry, on another GPU, redoes the job)
    rather than exit 0 with the job's healthy calls `failed` as if each were bad audio."""
    day = date(2029, 1, 10)
    n = upload_day(s3, day, copies=2)
    run = "review-gpu-breaks"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    # Small batches: several of them, so the engine breaks part-way through the job.
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny", batch_audio_s=20)
    assert len(jobs) == 1
    job = JobManifest.model_validate_json(s3.get_bytes(jobs[0]))
    assert len({c.recording_id for c in job.chunks}) > 2

    out = _pod(jobs[0], tmp_path, good_batches=1)
    result = loading.load_jobs(s3, pg, jobs, run)
    rows = _rows(pg, ids)
    assert out.returncode != 0, (out.returncode, result, {i: (r.status, r.last_error) for i, r in rows.items()})
    assert not s3.exists(job.shard_uri) and s3.exists(failure_uri(job.shard_uri))
    # Claimable again by the task's retry, with the engine's error as the reason, none `failed`.
    assert {r.status for r in rows.values()} == {"chunked"}, rows
    assert all("CUDA error" in r.last_error for r in rows.values()), rows
    assert len(rows) == n

    # The retry on a healthy GPU finishes the job: every call done, none failed.
    out = _pod(jobs[0], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    loading.load_jobs(s3, pg, jobs, run)
    assert {r.status for r in _rows(pg, ids).values()} == {"done"}
    discovery.release(pg, run)


def test_a_chunk_the_model_cannot_take_still_fails_alone(stack, s3, pg, tmp_path):
    """The check for a broken device does not turn one bad chunk into a failed job: the engine
    still recognises its other chunks, so only the bad chunk's recording fails, with its reason."""
    day = date(2029, 1, 11)
    upload_day(s3, day, copies=2)
    run = "review-bad-chunk"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny", batch_audio_s=20)
    job = JobManifest.model_validate_json(s3.get_bytes(jobs[0]))
    # The longest chunks, resampled to 16 kHz, are the bad ones (each copy of the longest call has one).
    def samples(c):
        return c.n_samples * 16_000 // c.pack_rate

    lengths = sorted({samples(c) for c in job.chunks})
    assert len(lengths) > 1
    bad = {c.recording_id for c in job.chunks if samples(c) == lengths[-1]}
    assert len(bad) < len(ids)
    out = _pod(jobs[0], tmp_path, bad_samples=(lengths[-1] + lengths[-2]) // 2)
    assert out.returncode == 0, out.stdout[-3000:]
    loading.load_jobs(s3, pg, jobs, run)
    rows = _rows(pg, ids)
    assert {rows[i].status for i in bad} == {"failed"}
    assert all("cannot be recognised" in rows[i].last_error for i in bad)
    assert {r.status for i, r in rows.items() if i not in bad} == {"done"}
    discovery.release(pg, run)


def test_a_scheduled_run_of_the_pod_dag_asks_for_an_engine_its_image_has(stack):
    """A scheduled run has no conf: its engine is the Param's default. The pod DAG's jobs run in
    the GPU image, which installs the package with the `gpu` extra only (no embedded Whisper):
    a default of whisper-tiny fails every job of every scheduled run (faster_whisper missing)."""
    import re
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    repo = Path(__file__).resolve().parents[2]
    bag = DagBag(dag_folder=str(repo / "dags"))
    # What each engine needs installed (pyproject's extras), and what each DAG's image installs.
    needs = {"whisper-tiny": "embedded", "granite-nar": "gpu", "granite-nar-native": "gpu"}
    for dag_id, dockerfile in (("transcribe_calls_k8s", "worker-gpu.Dockerfile"),
                               ("transcribe_calls", "worker.Dockerfile")):
        engine = bag.get_dag(dag_id).params.get_param("engine").resolve()
        text = (repo / "docker" / dockerfile).read_text()
        extras = {e for group in re.findall(r"\.\[([a-z,]+)\]", text) for e in group.split(",")}
        assert needs[engine] in extras, f"{dag_id}'s default engine {engine} needs [{needs[engine]}]; " \
                                        f"{dockerfile} installs {sorted(extras)}"


def _segment_texts(pg, ids) -> set[str]:
    with pg.connect() as c:
        return set(c.execute(sa.text("SELECT DISTINCT text FROM segments WHERE recording_id = ANY(:ids)"),
                             {"ids": ids}).scalars())


def test_a_shard_left_by_an_earlier_attempt_of_the_run_id_is_not_loaded_as_this_ones(stack, s3, pg, tmp_path):
    """A run id is used again (the run cleared in the UI, `callscribe run` of the day again), here
    to reprocess the day after a model change. The new attempt plans the same recordings into the
    same jobs; its pod never starts (the new image cannot be pulled, no GPU within the start-up
    timeout), so nothing deletes the first attempt's shard at the job's place. `load` must not take
    that shard for this attempt's: it holds the old model's text, and the run would call the
    recordings reprocessed."""
    day = date(2029, 1, 12)
    upload_day(s3, day)
    run = "review-run-id-again"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    assert _pod(jobs[0], tmp_path).returncode == 0  # the old model: every segment says "hello there"
    assert loading.load_jobs(s3, pg, jobs, run).recordings == len(ids)
    discovery.close_run(pg, run)

    # The same run id again, reprocessing: same recordings, same plan, but no pod ever runs.
    again = discovery.discover(s3, pg, day, "calls/", run, reprocess=True)
    assert sorted(again) == sorted(ids)
    manifest = pipeline.chunk_group(s3, pg, again, run, 0)
    new_jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    assert new_jobs == jobs
    result = loading.load_jobs(s3, pg, new_jobs, run)
    assert result.recordings == 0 and result.unfinished_jobs == ["job-00000"], result
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT status, loads, last_error FROM recordings WHERE id = ANY(:ids)"),
                         {"ids": ids}).all()
    # The earlier transcript stays (reprocess keeps it until a new one loads), loaded once.
    assert {(r.status, r.loads) for r in rows} == {("done", 1)}, rows
    assert _segment_texts(pg, ids) == {"hello there"}
    discovery.close_run(pg, run)
