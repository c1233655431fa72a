"""Version skew between the Airflow side and the worker image: a run planned by one version and
transcribed by another (the pods pinned to an older image tag, a run in flight across a deploy).

The worker runs as a pod runs it (`python -m callscribe.worker`'s ``main`` in a subprocess, with the
pod's environment) with a stand-in engine that says which image it plays. A worker image from before
plan ids reads a job manifest as it reads every field it does not know: it ignores it (pydantic's
default), so its shard has no plan id; the wrapper makes the real worker read the manifest that way.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, loading, pipeline
from callscribe.config import s3_settings
from callscribe.manifests import JobManifest
from tests.integration.helpers import run_pod, upload_day

pytestmark = pytest.mark.integration

IMAGE = textwrap.dedent("""
    import sys
    from callscribe import engines, worker
    from callscribe.engines import BaseEngine, Segment

    class Image(BaseEngine):
        name = "whisper-tiny"
        device = "cuda"

        def run(self, batch):
            return [[Segment(0.0, 1.0, "TEXT")] for _ in batch]

        def peak_memory_bytes(self):
            return None

    if OLD:  # an image older than plan ids: the manifest's plan_id is a field it does not know
        read = worker.JobManifest.model_validate_json
        worker.JobManifest.model_validate_json = lambda data: read(data).model_copy(update={"plan_id": None})
    engines._FACTORIES["whisper-tiny"] = lambda **kw: Image()
    sys.exit(worker.main(sys.argv[1:]))
""")


def _pod(job_uri: str, tmp_path, old: bool) -> subprocess.CompletedProcess:
    text = "said by the old image" if old else "said by the new image"
    return run_pod(IMAGE.replace("OLD", str(old)).replace("TEXT", text), job_uri, tmp_path)


def _rows(pg, ids):
    with pg.connect() as c:
        return {r.id: r for r in c.execute(sa.text(
            "SELECT r.id, r.status, r.last_error, r.loads, r.attempts, "
            "(SELECT string_agg(DISTINCT s.text, '|') FROM segments s WHERE s.recording_id = r.id) AS texts "
            "FROM recordings r WHERE r.id = ANY(:ids)"), {"ids": ids})}


def _planned(s3, pg, day: date, run: str) -> tuple[list[int], list[str]]:
    upload_day(s3, day)
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    assert len(jobs) == 1 and JobManifest.model_validate_json(s3.get_bytes(jobs[0])).plan_id
    return ids, jobs


def test_a_shard_from_a_worker_image_older_than_plan_ids_is_not_loaded_for_a_planned_job(stack, s3, pg, tmp_path):
    """The Airflow side is upgraded, the pods still run an image older than plan ids. Such an image
    also ignores every other field it does not know (an image from before packing reads a 8 kHz
    pack as 16 kHz and a packed chunk as one region): its shard cannot show it understood the job,
    and one of an earlier plan at the job's place looks the same. The load must not make the calls
    `done` from it, silently; they stay claimable, with a reason that names the old image, and the
    pod's retry on the new image loads them once."""
    run = "zz-skew-old-image"
    ids, jobs = _planned(s3, pg, date(2031, 5, 10), run)

    assert _pod(jobs[0], tmp_path, old=True).returncode == 0
    result = loading.load_jobs(s3, pg, jobs, run)
    rows = _rows(pg, ids)
    assert result.recordings == 0 and result.unfinished_jobs == ["job-00000"], (result, rows)
    assert {r.status for r in rows.values()} == {"chunked"}, rows
    assert all("worker image" in r.last_error and "older" in r.last_error for r in rows.values()), rows
    assert not any(r.texts for r in rows.values()), rows
    # The image's fault, not the calls': their attempt is given back. (Spent, three nights of pods
    # pinned to the old tag left every call `failed` for good, to be recovered only by a reprocess.)
    assert {r.attempts for r in rows.values()} == {0}, rows
    assert loading.load_jobs(s3, pg, jobs, run).recordings == 0  # the task's retry: given back once
    assert {r.attempts for r in _rows(pg, ids).values()} == {0}

    # The image upgraded, the task cleared: the job's own shard loads, each call once.
    assert _pod(jobs[0], tmp_path, old=False).returncode == 0
    assert loading.load_jobs(s3, pg, jobs, run).recordings == len(ids)
    assert {(r.status, r.loads, r.texts) for r in _rows(pg, ids).values()} == {("done", 1, "said by the new image")}
    discovery.release(pg, run)


@pytest.mark.parametrize("old_image", [True, False], ids=["old-image", "new-image"])
def test_a_job_planned_before_plan_ids_still_loads_after_the_upgrade(stack, s3, pg, tmp_path, old_image):
    """A run in flight across the deploy: its job manifest was written by the old plan_jobs (no plan
    id), its transcribe task runs (or is retried) on either image, and the new load takes the shard."""
    run = f"zz-skew-old-plan-{old_image}"
    ids, jobs = _planned(s3, pg, date(2031, 5, 11 + old_image), run)
    body = json.loads(s3.get_bytes(jobs[0]))
    del body["plan_id"]  # as the old plan_jobs wrote it
    s3.put_bytes(jobs[0], json.dumps(body).encode(), "application/json")

    assert _pod(jobs[0], tmp_path, old=old_image).returncode == 0
    result = loading.load_jobs(s3, pg, jobs, run)
    assert result.recordings == len(ids) and result.unfinished_jobs == [], result
    assert {(r.status, r.loads) for r in _rows(pg, ids).values()} == {("done", 1)}
    discovery.release(pg, run)


def test_a_worker_refuses_a_job_manifest_newer_than_it_knows(stack, s3, pg, tmp_path):
    """The next change of the job manifest's format, with pods still on this image: the manifest says
    its version, and a field this worker does not know changes how the job must be read. Ignoring it
    (as every older image ignored plan_id, pack_rate and the region map) transcribes the job wrongly
    and the shard says nothing of it. The worker must refuse the job with an error naming both
    versions; its calls stay claimable with that reason."""
    run = "zz-skew-newer-manifest"
    ids, jobs = _planned(s3, pg, date(2031, 5, 14), run)
    body = json.loads(s3.get_bytes(jobs[0]))
    body.update(version=body["version"] + 1, pack_codec="opus")  # from a newer Airflow side
    s3.put_bytes(jobs[0], json.dumps(body).encode(), "application/json")

    out = _pod(jobs[0], tmp_path, old=False)
    assert out.returncode == 1, out.stdout[-3000:]
    cause = (tmp_path / "err.txt").read_text()
    assert f"version {body['version']}" in cause and "upgrade the worker image" in cause, cause
    result = loading.load_jobs(s3, pg, jobs, run)
    rows = _rows(pg, ids)
    assert result.recordings == 0 and result.unfinished_jobs == ["job-00000"], (result, rows)
    assert {r.status for r in rows.values()} == {"chunked"}, rows
    assert all(f"version {body['version']}" in r.last_error for r in rows.values()), rows
    assert {r.attempts for r in rows.values()} == {0}, rows  # the image's fault: the attempt is given back
    discovery.release(pg, run)


def test_a_worker_whose_engine_cannot_load_gives_the_attempts_back(stack, s3, pg, tmp_path):
    """The image lacks the engine's model (a volume not mounted, a wrong CALLSCRIBE_*_MODEL_DIR, no GPU
    driver): the worker fails before it reads any speech. Not the calls' fault: each night of it spent
    an attempt of every call, and three left them all `failed` for good."""
    run = "zz-skew-no-model"
    ids, jobs = _planned(s3, pg, date(2031, 5, 15), run)
    script = IMAGE.replace("OLD", "False").replace(
        'engines._FACTORIES["whisper-tiny"] = lambda **kw: Image()',
        'engines._FACTORIES["whisper-tiny"] = lambda **kw: (_ for _ in ()).throw('
        'FileNotFoundError("no model in /models/whisper-tiny"))')
    out = run_pod(script, jobs[0], tmp_path)
    assert out.returncode == 1, out.stdout[-3000:]
    result = loading.load_jobs(s3, pg, jobs, run)
    rows = _rows(pg, ids)
    assert result.recordings == 0 and {r.status for r in rows.values()} == {"chunked"}, rows
    assert all("no model in /models/whisper-tiny" in r.last_error for r in rows.values()), rows
    assert {r.attempts for r in rows.values()} == {0}, rows
    discovery.release(pg, run)


@pytest.mark.parametrize("how", ["setting", "module"])
def test_a_local_worker_that_cannot_start_its_job_gives_the_attempts_back(stack, s3, pg, tmp_path, monkeypatch, how):
    """A local worker (LocalExecutor, `callscribe run`) whose process fails before it reads its job: a
    setting it refuses, or a module its environment lacks. It can leave no note of its own; none of the
    job's speech reached it, so the calls get their attempt back, with the worker's own words as reason
    (before: "no shard (the worker was killed, timed out or never started)", and the attempt spent)."""
    run = f"zz-skew-local-{how}"
    ids, jobs = _planned(s3, pg, date(2121, 1, 1 + (how == "module")), run)
    if how == "setting":
        monkeypatch.setenv("CALLSCRIBE_WORKER_RESPAWNS", "many")
        said = "CALLSCRIBE_WORKER_RESPAWNS must be a whole number"
    else:  # an installation without one of the engine's modules, as the worker's import meets it
        shadow = tmp_path / "shadow" / "callscribe"
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text('raise ImportError("No module named ctranslate2_missing")\n')
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")]))
        said = "ctranslate2_missing"
    with pytest.raises(pipeline.WorkerFailed, match=said):
        pipeline.run_worker_local(jobs[0], s3_settings())
    result = loading.load_jobs(s3, pg, jobs, run)
    rows = _rows(pg, ids)
    assert result.recordings == 0 and result.unfinished_jobs == ["job-00000"], (result, rows)
    assert {r.status for r in rows.values()} == {"chunked"}, rows
    assert all(said in r.last_error for r in rows.values()), rows
    assert {r.attempts for r in rows.values()} == {0}, rows
    discovery.release(pg, run)
