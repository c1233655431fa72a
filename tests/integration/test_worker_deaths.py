"""A chunk that kills the worker process (a native crash in the engine, the kernel's OOM killer: no
Python exception, no shard) fails its own recording, not its job's neighbours.

The worker runs as a pod runs it (`python -m callscribe.worker`'s ``main`` in a subprocess, with the
pod's environment), with a stand-in engine that SIGKILLs its own process when a batch holds a
chunk of one chosen recording; the pod is run again as the task's retries would (3 tries in all).
"""

from __future__ import annotations

import signal
import subprocess
import textwrap
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, loading, pipeline
from callscribe.manifests import JobManifest, JobProgress, progress_uri
from tests.integration.helpers import run_pod, upload_day

pytestmark = pytest.mark.integration

# The chosen recording's chunks are marked in their first sample (the stand-in engine takes int16,
# so the mark reaches it as it is); a batch holding a marked chunk kills the process, as a native
# crash would: no exception, no clean-up.
KILLING_ENGINE = textwrap.dedent("""
    import os, signal, sys
    from callscribe import engines, worker
    from callscribe.engines import BaseEngine, Segment

    MARK = 12345
    fetch = worker.fetch_chunks

    def marked(store, job, failures, on_pack=None, **kw):
        def mark(got):
            for i, audio in got.items():
                if job.chunks[i].recording_id in KILLERS:
                    audio = audio.copy()
                    audio[0] = MARK
                    got[i] = audio
            return got

        # Marked as each pack arrives (what the engine starts on) and in the whole fetch's result.
        hand_on = (lambda got: on_pack(mark(got))) if on_pack else None
        return mark(fetch(store, job, failures, on_pack=hand_on, **kw))

    class Killing(BaseEngine):
        name = "whisper-tiny"
        device = "cuda"
        takes_int16 = True

        def run(self, batch):
            print("batch of", len(batch), flush=True)
            if any(len(a) and a[0] == MARK for a in batch):
                os.kill(os.getpid(), signal.SIGNAL)
            return [[Segment(0.0, 1.0, "hello there")] for _ in batch]

        def peak_memory_bytes(self):
            return None

    worker.fetch_chunks = marked
    engines._FACTORIES["whisper-tiny"] = lambda **kw: Killing()
    sys.exit(worker.main(sys.argv[1:]))
""")


def _pod(job_uri: str, tmp_path, killer: int | tuple[int, ...] = (), sig: str = "SIGKILL",
         respawns: int = 0) -> subprocess.CompletedProcess:
    """One try of the job's pod. ``respawns``: the deaths its worker outlives (0: each death ends the
    try, and the task's next try carries on)."""
    killers = (killer,) if isinstance(killer, int) else killer
    return run_pod(KILLING_ENGINE.replace("KILLERS", repr(set(killers) or {-1})).replace("SIGNAL", sig),
                   job_uri, tmp_path, env={"CALLSCRIBE_WORKER_RESPAWNS": str(respawns)})


def _rows(pg, ids):
    with pg.connect() as c:
        return {r.id: r for r in c.execute(sa.text(
            "SELECT id, status, last_error FROM recordings WHERE id = ANY(:ids)"), {"ids": ids})}


def _job(s3, pg, day: date, run: str, copies: int = 2) -> tuple[list[int], list[str], JobManifest]:
    upload_day(s3, day, copies=copies)
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    # Small batches: several of them, each with chunks of several recordings.
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny", batch_audio_s=20)
    assert len(jobs) == 1
    return ids, jobs, JobManifest.model_validate_json(s3.get_bytes(jobs[0]))


def test_a_chunk_that_kills_the_worker_fails_its_recording_and_no_other(stack, s3, pg, tmp_path):
    """Try 1 dies in a batch (its chunks become suspects), try 2 dies on one suspect run alone (a
    killer), try 3 leaves the killer's recording out and finishes: only that recording `failed`."""
    ids, jobs, job = _job(s3, pg, date(2029, 2, 10), "review-worker-deaths")
    per_rec: dict[int, int] = {}
    for c in job.chunks:
        per_rec[c.recording_id] = per_rec.get(c.recording_id, 0) + 1
    assert len(per_rec) > 2 and len(job.chunks) > 4
    killer = max(per_rec, key=lambda r: (per_rec[r], r))  # its chunks may lie in several batches
    note = progress_uri(job.shard_uri)

    tries = [_pod(jobs[0], tmp_path, killer) for _ in range(2)]
    assert [t.returncode for t in tries] == [-signal.SIGKILL] * 2, [t.stdout[-3000:] for t in tries]
    # Try 1 died in a batch of several chunks, try 2 on a chunk alone.
    assert [t.stdout.split("batch of ")[-1].split()[0] for t in tries][1] == "1"
    assert int(tries[0].stdout.split("batch of ")[-1].split()[0]) > 1
    left = JobProgress.model_validate_json(s3.get_bytes(note))
    assert left.alone and len(left.in_flight) == 1, left  # try 2 died on one chunk run alone
    assert job.chunks[left.in_flight[0]].recording_id == killer
    assert not s3.exists(job.shard_uri)

    last = _pod(jobs[0], tmp_path, killer)
    assert last.returncode == 0, last.stdout[-3000:]
    assert not s3.exists(note)  # done with: a later try (a cleared task) starts clean
    loading.load_jobs(s3, pg, jobs, "review-worker-deaths")
    rows = _rows(pg, ids)
    assert rows[killer].status == "failed", rows[killer]
    assert "the worker process died on this chunk, run alone" in rows[killer].last_error
    assert {r.status for i, r in rows.items() if i != killer} == {"done"}, rows
    discovery.release(pg, "review-worker-deaths")


def test_a_worker_stopped_from_outside_blames_no_chunk(stack, s3, pg, tmp_path):
    """Try 1 dies in a batch (suspects); try 2 is stopped from outside (SIGTERM: Kubernetes deleting
    the pod at the task's timeout or a clear, the local task stopping its worker) while a suspect runs
    alone. That is no death on the chunk: try 3 must not fail its recording."""
    ids, jobs, job = _job(s3, pg, date(2029, 2, 12), "worker-stopped")
    suspect_rec = job.chunks[0].recording_id
    note = progress_uri(job.shard_uri)
    assert _pod(jobs[0], tmp_path, suspect_rec).returncode == -signal.SIGKILL
    stopped = _pod(jobs[0], tmp_path, suspect_rec, sig="SIGTERM")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout[-3000:]
    left = JobProgress.model_validate_json(s3.get_bytes(note))
    assert left.in_flight == [] and left.killers == [], left
    assert _pod(jobs[0], tmp_path).returncode == 0
    loading.load_jobs(s3, pg, jobs, "worker-stopped")
    assert {r.status for r in _rows(pg, ids).values()} == {"done"}
    discovery.release(pg, "worker-stopped")


def test_a_job_that_runs_through_leaves_no_note_and_a_note_of_another_plan_is_ignored(stack, s3, pg, tmp_path):
    """A normal job cleans up after itself. A note left at the job's place by another plan (a run id
    used again) names chunks of other recordings: it must not fail this plan's recordings."""
    run = "review-worker-notes"
    ids, jobs, job = _job(s3, pg, date(2029, 2, 11), run, copies=1)
    note = progress_uri(job.shard_uri)
    out = _pod(jobs[0], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    assert not s3.exists(note)

    every = list(range(len(job.chunks)))
    s3.put_bytes(note, JobProgress(plan_id="an-earlier-plan", killers=every, in_flight=every[:1],
                                   alone=True).model_dump_json().encode())
    out = _pod(jobs[0], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "another plan" in out.stdout
    assert not s3.exists(note)
    loading.load_jobs(s3, pg, jobs, run)
    assert {r.status for r in _rows(pg, ids).values()} == {"done"}

    s3.put_bytes(note, b"{not json")  # an unreadable note is no reason to fail the job either
    out = _pod(jobs[0], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "unreadable" in out.stdout and not s3.exists(note)
    discovery.release(pg, run)


def test_one_pod_outlives_the_deaths_of_two_killer_chunks_and_fails_only_their_recordings(stack, s3, pg, tmp_path):
    """The worker runs the job in a child process and starts a new one after each death with chunks in
    the engine: two killers in one job (which needed a fourth try of the task) cost one try."""
    run = "worker-respawns"
    ids, jobs, job = _job(s3, pg, date(2029, 2, 13), run)
    by_batch = sorted({c.recording_id for c in job.chunks})
    killers = (by_batch[0], by_batch[1])
    out = _pod(jobs[0], tmp_path, killers, respawns=4)
    assert out.returncode == 0, out.stdout[-3000:]
    assert out.stdout.count("the job goes on in a new one") >= 2, out.stdout[-3000:]
    assert not s3.exists(progress_uri(job.shard_uri))
    loading.load_jobs(s3, pg, jobs, run)
    rows = _rows(pg, ids)
    assert {i for i, r in rows.items() if r.status == "failed"} == set(killers), rows
    assert all("the worker process died on this chunk, run alone" in rows[k].last_error for k in killers)
    assert {r.status for i, r in rows.items() if i not in killers} == {"done"}, rows
    discovery.release(pg, run)


def test_a_pod_whose_deaths_outrun_its_respawns_leaves_the_rest_to_the_tasks_next_try(stack, s3, pg, tmp_path):
    run = "worker-respawns-spent"
    ids, jobs, job = _job(s3, pg, date(2029, 2, 14), run)
    killers = tuple(sorted({c.recording_id for c in job.chunks})[:2])
    first = _pod(jobs[0], tmp_path, killers, respawns=1)
    assert first.returncode == 128 + signal.SIGKILL, first.stdout[-3000:]
    assert "died" in (tmp_path / "err.txt").read_text()
    last = _pod(jobs[0], tmp_path, killers, respawns=4)
    assert last.returncode == 0, last.stdout[-3000:]
    loading.load_jobs(s3, pg, jobs, run)
    assert {i for i, r in _rows(pg, ids).items() if r.status == "failed"} == set(killers)
    discovery.release(pg, run)


def test_a_death_before_the_engine_after_a_death_in_it_is_left_to_the_tasks_retry(stack, s3, pg, tmp_path):
    """The first process dies in a batch; the one started after it dies loading the model (a GPU gone
    bad). That death names no new chunks: no further respawn (it would die the same way, or blame the
    suspects for the GPU), and the progress note still holds the first death's chunks for the next try."""
    run = "worker-respawn-load-death"
    ids, jobs, job = _job(s3, pg, date(2029, 2, 15), run)
    killer = job.chunks[0].recording_id
    loads = tmp_path / "loads"
    wrapper = KILLING_ENGINE.replace("KILLERS", repr({killer})).replace("SIGNAL", "SIGKILL").replace(
        'engines._FACTORIES["whisper-tiny"] = lambda **kw: Killing()',
        f'engines._FACTORIES["whisper-tiny"] = lambda **kw: (open({str(loads)!r}, "a").write("x"), '
        f'os.path.getsize({str(loads)!r}) > 1 and os.kill(os.getpid(), signal.SIGKILL), Killing())[-1]')
    out = run_pod(wrapper, jobs[0], tmp_path, env={"CALLSCRIBE_WORKER_RESPAWNS": "4"})
    assert out.returncode == 128 + signal.SIGKILL, out.stdout[-3000:]
    assert loads.read_text() == "xx"  # the first process and one respawn, not four
    assert "no chunk in the engine" in (tmp_path / "err.txt").read_text()
    left = JobProgress.model_validate_json(s3.get_bytes(progress_uri(job.shard_uri)))
    assert left.in_flight and not left.killers, left
    last = _pod(jobs[0], tmp_path, killer, respawns=4)  # the task's retry, on a sound pod
    assert last.returncode == 0, last.stdout[-3000:]
    loading.load_jobs(s3, pg, jobs, run)
    assert {i for i, r in _rows(pg, ids).items() if r.status == "failed"} == {killer}
    discovery.release(pg, run)


# The same stand-in, except that a batch holding a marked chunk breaks the engine for good (as a
# device-side assert leaves a CUDA context): that batch and every later one in the process raise.
BREAKING_ENGINE = KILLING_ENGINE.replace(
    "        if any(len(a) and a[0] == MARK for a in batch):\n            os.kill(os.getpid(), signal.SIGNAL)\n",
    "        global BROKEN\n"
    "        BROKEN = globals().get('BROKEN') or any(len(a) and a[0] == MARK for a in batch)\n"
    "        if BROKEN:\n            raise RuntimeError('CUDA error: device-side assert triggered')\n")


def test_one_pod_outlives_a_chunk_that_breaks_its_engine_and_fails_only_its_recording(stack, s3, pg, tmp_path):
    """Try 1's engine breaks in a batch (every later batch fails too): the job fails, its note names
    the batch's chunks, and a new process runs them alone; the one that breaks it again is a killer.
    All in one try of the task, as for a death."""
    assert BREAKING_ENGINE != KILLING_ENGINE
    run = "worker-engine-broke"
    ids, jobs, job = _job(s3, pg, date(2029, 2, 16), run)
    breaker = sorted({c.recording_id for c in job.chunks})[1]
    out = run_pod(BREAKING_ENGINE.replace("KILLERS", repr({breaker})), jobs[0], tmp_path,
                  env={"CALLSCRIBE_WORKER_RESPAWNS": "4"})
    assert out.returncode == 0, out.stdout[-3000:]
    assert out.stdout.count("engine broke for good with chunks in the engine") == 2, out.stdout[-3000:]
    assert not s3.exists(progress_uri(job.shard_uri))
    loading.load_jobs(s3, pg, jobs, run)
    rows = _rows(pg, ids)
    assert {i for i, r in rows.items() if r.status == "failed"} == {breaker}, rows
    assert "its engine broke for good on it" in rows[breaker].last_error
    assert {r.status for i, r in rows.items() if i != breaker} == {"done"}, rows
    discovery.release(pg, run)
