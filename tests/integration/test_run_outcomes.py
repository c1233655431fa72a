"""A run's state is the truth: red while any call of its days is missing, never a stale overwrite.

Each test here reproduces a sequence that once ended green with calls missing or wrong (a
failed job, one bad recording, a late upload, a cleared old task, a day too big to map, a
worker that outlived its task), against the real embedded services, then checks the
recovery the way production gets it: the task's retries, the next run, a rerun of the day.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta

import numpy as np
import psutil
import pytest
import sqlalchemy as sa

from callscribe import discovery, loading, pipeline, reporting
from callscribe.audit import audit_day
from callscribe.config import s3_settings
from callscribe.discovery import MAX_ATTEMPTS, day_prefix
from callscribe.manifests import JobManifest
from callscribe.samples import sample_dir
from callscribe.storage import ObjectInfo
from callscribe.worker import fetch_chunks
from tests import chaos
from tests.integration.helpers import beside, loads, record_clean, upload_day

pytestmark = pytest.mark.integration


@pytest.fixture
def quick_retries(monkeypatch):
    """Task retries after a second instead of minutes (read when the DAG file is parsed)."""
    monkeypatch.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")


def _rows(pg, day: date) -> dict[str, sa.Row]:
    with pg.connect() as c:
        rows = c.execute(sa.text(
            "SELECT id, object_key, status, last_error, attempts, loads, last_run_id, metadata "
            "FROM recordings WHERE call_date = :d ORDER BY id"), {"d": day}).all()
    return {r.object_key.rsplit("/", 1)[1] + (f"#{r.id}" if r.status == "superseded" else ""): r for r in rows}


def _state(dr) -> str:
    return str(dr.state).rsplit(".", 1)[-1].lower()


def _task_states(dr) -> dict[str, set[str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dr.dag_id, run_id=dr.run_id).all()
        out: dict[str, set[str]] = {}
        for ti in tis:
            out.setdefault(ti.task_id, set()).add(str(ti.state))
        return out


# ---------------------------------------------------------------- (1) a failed job shows red


def test_a_run_whose_job_fails_is_red_and_says_why(stack, s3, pg, tmp_path, quick_retries, monkeypatch):
    """A broken engine (no model files) fails every job: the run is red, the cause is everywhere."""
    day = date(2026, 10, 10)
    # Two calls in the one job (each must get the job's cause), not the long stereo sample: the rerun
    # at the end transcribes them.
    n = upload_day(s3, day, files=[sample_dir() / "call-0002.mp3", sample_dir() / "call-0003.wav"])
    env = {**os.environ, "CALLSCRIBE_GRANITE_MODEL_DIR": str(tmp_path / "no-model")}
    out = subprocess.run([sys.executable, "-m", "callscribe.cli", "run", "--date", str(day),
                          "--engine", "granite-nar"], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode != 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "failed" in out.stdout and "ModelDirError" in out.stdout  # why, and for which recordings
    assert "CALLSCRIBE ALERT run failed" in out.stdout + out.stderr  # the run's on_failure_callback
    rows = _rows(pg, day)
    assert len(rows) == n
    for r in rows.values():
        # Claimable again by the next run, the worker's own error as the reason; the attempt given back
        # (a model missing is the deployment's fault: nights of it must not leave every call failed).
        assert r.status == "chunked" and r.attempts == 0, r
        assert "ModelDirError" in r.last_error and "job-00000" in r.last_error, r.last_error
    with pg.connect() as c:
        report = c.execute(sa.text("SELECT recordings_found, recordings_done FROM pipeline_runs "
                                   "WHERE call_date = :d"), {"d": day}).one()
    assert tuple(report) == (n, 0)  # the report task ran and counted
    assert len(audit_day(s3, pg, day).unfinished) == n

    # The cause is the task's error, not only an INFO line of the worker's output.
    job = s3.uri(f"{pipeline.WORK_PREFIX}/runs/{pipeline.run_key(_run_ids(pg, day)[0])}/jobs/job-00000.json")
    monkeypatch.setenv("CALLSCRIBE_GRANITE_MODEL_DIR", str(tmp_path / "no-model"))
    with pytest.raises(pipeline.WorkerFailed, match="ModelDirError"):
        pipeline.run_worker_local(job, s3_settings())
    monkeypatch.delenv("CALLSCRIBE_GRANITE_MODEL_DIR")

    # Rerun with a working engine: everything lands once, the attempts say one (the run that did it).
    from callscribe.cli import run_day

    assert _state(run_day(day)) == "success"
    rows = _rows(pg, day)
    assert {(r.status, r.attempts, r.loads) for r in rows.values()} == {("done", 1, 1)}
    record_clean("a job failing after its retries: red, then a rerun", s3, pg, day, n, 1)


def _run_ids(pg, day: date) -> list[str]:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT run_id FROM pipeline_runs WHERE call_date = :d ORDER BY reported_at"),
                         {"d": day}).scalars().all()


# ---------------------------------------------------------------- (2) one bad job or recording


def _kill_job_workers(job_id: str, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL every worker process of ``job_id`` as soon as it appears (each try of the task)."""
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                cmd = " ".join(child.cmdline())
                if "callscribe.worker" in cmd and f"{job_id}.json" in cmd and child.pid not in killed:
                    child.send_signal(signal.SIGKILL)
                    killed.append(child.pid)
            except psutil.Error:
                continue
        time.sleep(0.05)


def test_one_dead_job_does_not_hold_back_the_rest_of_the_day(stack, s3, pg, quick_retries, monkeypatch):
    from callscribe.cli import run_day

    day = date(2026, 10, 12)
    n = upload_day(s3, day, copies=2)
    monkeypatch.setenv("CALLSCRIBE_JOB_SLOTS", "3")  # spread the day over three jobs
    monkeypatch.setenv("CALLSCRIBE_JOB_MIN_AUDIO_S", "1")
    killed: list[int] = []
    with beside(_kill_job_workers, "job-00001", killed):
        dr = run_day(day)
    assert len(killed) == 3  # the first try and both retries
    assert _state(dr) == "failed"
    assert _task_states(dr)["load"] == {"success"}
    rows = _rows(pg, day)
    done = [k for k, r in rows.items() if r.status == "done"]
    left = [r for r in rows.values() if r.status != "done"]
    assert done and left, rows  # the other jobs' recordings are in Postgres
    assert all(r.status == "chunked" and "job-00001" in r.last_error for r in left), left
    assert set(loads(pg, day)[k] for k in done) == {1}

    # The next try (a rerun of the day) finishes the rest; nothing is loaded twice.
    assert _state(run_day(day)) == "success"
    assert set(loads(pg, day).values()) == {1}
    record_clean("one job of three killed on every try: partial load, red, rerun", s3, pg, day, n, 3)


def test_one_recording_that_breaks_fails_alone(stack, s3, pg):
    """A recording whose speech pack vanished between chunking and transcription fails with its reason."""
    day = date(2026, 10, 13)
    n = upload_day(s3, day)
    run = "bad-neighbour"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    assert len(jobs) == 1  # all three in one job: the neighbours share its fate unless isolated
    victim = ids[1]
    with pg.connect() as c:
        call_date = c.execute(sa.text("SELECT call_date FROM recordings WHERE id = :i"), {"i": victim}).scalar_one()
    for key in pipeline.pack_keys(call_date, victim):
        s3.delete(s3.uri(key))
    shards = [pipeline.run_worker_local(j, s3_settings()) for j in jobs]
    result = loading.load_jobs(s3, pg, jobs, run)
    assert result.recordings == n - 1 and result.failed == 1
    rows = {r.id: r for r in _rows(pg, day).values()}
    assert rows[victim].status == "failed" and "pack" in rows[victim].last_error, rows[victim]
    assert {rows[i].status for i in ids if i != victim} == {"done"}
    assert shards
    discovery.release(pg, run)
    record_clean("one recording's pack lost before transcription", s3, pg, day, n, 1)


def test_either_pack_format_hands_the_worker_the_same_speech(stack, s3, pg):
    """A recording chunked with WAV packs (the default) and again with FLAC: the same chunks,
    and the worker reads the same samples from either (both are lossless)."""
    day = date(2026, 10, 15)
    upload_day(s3, day)
    run = "pack-formats"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    rid = ids[0]
    wav_entry, wav_refs = pipeline.chunk_one(s3, pg, rid, run_id=run)
    flac_entry, flac_refs = pipeline.chunk_one(s3, pg, rid, run_id=run, pack="flac")
    assert wav_entry.pack_uri.endswith(f"/{rid}.wav") and flac_entry.pack_uri.endswith(f"/{rid}.flac")
    assert wav_refs == flac_refs and wav_entry.audio_s == flac_entry.audio_s > 0
    wav_bytes, flac_bytes = s3.get_bytes(wav_entry.pack_uri), s3.get_bytes(flac_entry.pack_uri)
    assert len(flac_bytes) < len(wav_bytes)
    failures: dict[int, str] = {}
    fetched = [fetch_chunks(s3, JobManifest(job_id="j", run_id=run, engine="null", batch_audio_s=60.0,
                                            shard_uri=s3.uri("_callscribe/unused.parquet"),
                                            recordings=[entry], chunks=wav_refs), failures)
               for entry in (wav_entry, flac_entry)]
    assert not failures and len(fetched[0]) == len(wav_refs)
    assert all(np.array_equal(fetched[0][i], fetched[1][i]) for i in fetched[0])
    discovery.release(pg, run)


def test_a_bad_pack_format_fails_the_chunk_task_before_any_recording_is_touched(stack, s3, pg, monkeypatch):
    """A typo in CALLSCRIBE_PACK_FORMAT is the deployment's fault: the task fails (red, retried once
    it is mended), and no recording is charged an attempt, marked failed or chunked."""
    day = date(2026, 10, 16)
    upload_day(s3, day)
    run = "bad-pack-format"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    before = {k: (r.status, r.attempts) for k, r in _rows(pg, day).items()}
    monkeypatch.setenv("CALLSCRIBE_PACK_FORMAT", "mp3")
    with pytest.raises(ValueError, match="CALLSCRIBE_PACK_FORMAT='mp3'"):
        pipeline.chunk_group(s3, pg, ids, run, 0)
    with pytest.raises(ValueError, match="'ogg'"):
        pipeline.chunk_one(s3, pg, ids[0], run_id=run, pack="ogg")
    assert {k: (r.status, r.attempts) for k, r in _rows(pg, day).items()} == before
    monkeypatch.delenv("CALLSCRIBE_PACK_FORMAT")
    assert pipeline.chunk_group(s3, pg, ids, run, 0)  # mended: the same task goes through
    assert {r.status for r in _rows(pg, day).values()} == {"chunked"}
    discovery.release(pg, run)


def test_attempts_stop_at_the_limit(stack, s3, pg):
    """A recording whose job keeps dying is tried MAX_ATTEMPTS times, then stays failed with the reason."""
    day = date(2026, 10, 23)
    prefix = day_prefix("calls/", day)
    discovery.register(pg, [ObjectInfo("calls", prefix + "stuck.wav", "e1", 10)], day, "setup")
    for attempt in range(1, MAX_ATTEMPTS + 2):
        run = f"attempt-{attempt}"
        got = discovery.claim(pg, "calls", prefix, day, run)
        if attempt > MAX_ATTEMPTS:
            assert got == []  # no further tries
            break
        assert len(got) == 1
        # What a run whose transcription job died leaves: chunked (attempt counted), no transcript.
        with pg.begin() as c:
            c.execute(sa.text("UPDATE recordings SET status = 'chunked', attempts = attempts + 1, "
                              "last_error = 'transcription job job-00000 did not finish' WHERE id = :i"),
                      {"i": got[0]})
        figures = reporting.report_run(pg, run, "transcribe_calls", day, "whisper-tiny")
        assert figures["recordings_found"] == 1
    row = _rows(pg, day)["stuck.wav"]
    assert row.status == "failed" and row.attempts == MAX_ATTEMPTS, row
    assert f"after {MAX_ATTEMPTS} attempts" in row.last_error and "job-00000" in row.last_error
    chaos.record_counts("a recording whose job dies every run: 3 attempts, then failed", 1, MAX_ATTEMPTS,
                        lost=0, duplicates=0)


# ---------------------------------------------------------------- (3) late uploads


def test_a_late_upload_is_picked_up_by_the_next_days_run(stack, s3, pg):
    from callscribe.cli import run_day

    day = date(2026, 10, 14)
    first = sample_dir() / "call-0003.wav"
    upload_day(s3, day, files=[first])
    assert _state(run_day(day, {"lookback_days": 3})) == "success"
    late = sample_dir() / "call-0002.mp3"
    s3.put_bytes(s3.uri(day_prefix("calls/", day) + "late-" + late.name), late.read_bytes())
    assert audit_day(s3, pg, day).lost  # not yet
    upload_day(s3, day + timedelta(days=1), files=[first])
    assert _state(run_day(day + timedelta(days=1), {"lookback_days": 3})) == "success"
    assert _rows(pg, day)["late-" + late.name].status == "done"
    record_clean("an upload arriving after its day's run", s3, pg, day, 2, 1)
    record_clean("an upload arriving after its day's run (next day)", s3, pg, day + timedelta(days=1), 1, 0)


# ---------------------------------------------------------------- (4) stale and cleared runs


def test_an_old_runs_tasks_cleared_after_a_newer_run_change_nothing(stack, s3, pg):
    """Old run loads; a re-upload and a reprocess run load; the old run's tasks run again: harmless."""
    day = date(2026, 10, 17)
    files = [sample_dir() / "call-0003.wav", sample_dir() / "call-0001.wav"]
    n = upload_day(s3, day, files=files)
    old = "scheduled__old"
    ids = discovery.discover(s3, pg, day, "calls/", old)
    old_manifest = pipeline.chunk_group(s3, pg, ids, old, 0)
    old_jobs = pipeline.plan_jobs(s3, [old_manifest], old, "whisper-tiny")
    old_shards = [pipeline.run_worker_local(j, s3_settings()) for j in old_jobs]
    loading.load_shards(s3, pg, old_shards)
    reporting.report_run(pg, old, "transcribe_calls", day, "whisper-tiny")

    # The first call is uploaded again with other content; a reprocess run takes the day.
    key = day_prefix("calls/", day) + "call-0003-0.wav"
    s3.put_bytes(s3.uri(key), (sample_dir() / "call-0002.mp3").read_bytes())
    new = "manual__new"
    new_ids = discovery.discover(s3, pg, day, "calls/", new, reprocess=True)
    new_jobs = pipeline.plan_jobs(s3, [pipeline.chunk_group(s3, pg, new_ids, new, 0)], new, "whisper-tiny")
    new_shards = [pipeline.run_worker_local(j, s3_settings()) for j in new_jobs]
    loading.load_shards(s3, pg, new_shards)
    reporting.report_run(pg, new, "transcribe_calls", day, "whisper-tiny")

    def snapshot():
        with pg.connect() as c:
            return (
                c.execute(sa.text("SELECT id, status, last_error, loads, attempts, last_run_id FROM recordings "
                                  "WHERE call_date = :d ORDER BY id"), {"d": day}).all(),
                c.execute(sa.text("SELECT s.recording_id, s.channel, s.seq, s.text FROM segments s "
                                  "JOIN recordings r ON r.id = s.recording_id WHERE r.call_date = :d "
                                  "ORDER BY 1, 2, 3"), {"d": day}).all(),
            )

    before = snapshot()
    states = {r.id: r.status for r in before[0]}
    assert sorted(states.values()) == ["done", "done", "superseded"]
    assert states[min(i for i in ids if i not in new_ids)] == "superseded"  # the first upload of the key
    # Clearing the old run's tasks in the UI: each runs again with the old run's inputs.
    assert discovery.discover(s3, pg, day, "calls/", old) == []
    pipeline.chunk_group(s3, pg, ids, old, 0)
    for j in old_jobs:
        pipeline.run_worker_local(j, s3_settings())
    loading.load_shards(s3, pg, old_shards)
    reporting.report_run(pg, old, "transcribe_calls", day, "whisper-tiny")
    assert snapshot() == before  # fenced: the old run owns none of them any more
    chaos_entry = chaos.record("an old run's tasks cleared after a reupload and a reprocess",
                               [audit_day(s3, pg, day)], n + 1, 4, loads_expected=2)
    assert chaos_entry["lost"] == 0 and chaos_entry["duplicates"] == 0, chaos_entry["details"]

    # The same run's load run twice is a no-op too (not a second load).
    again = loading.load_jobs(s3, pg, new_jobs, new)
    assert again.recordings == 0 and again.shards == 1 and snapshot() == before


# ---------------------------------------------------------------- (5) the map limit


def test_a_day_bigger_than_the_map_limit_is_grouped_to_fit(stack, s3, pg, quick_retries, monkeypatch):
    from callscribe.cli import run_day

    day = date(2026, 10, 19)
    n = upload_day(s3, day, copies=2)
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    monkeypatch.setattr(pipeline, "DEFAULT_GROUP_SIZE", 1)  # one recording a group would be 6 groups
    dr = run_day(day)
    assert _state(dr) == "success"
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        chunk_tis = session.query(TaskInstance).filter_by(dag_id=dr.dag_id, run_id=dr.run_id, task_id="chunk").count()
    assert chunk_tis <= 2
    assert {r.status for r in _rows(pg, day).values()} == {"done"}
    record_clean("a day over the map limit", s3, pg, day, n, 0)


# ---------------------------------------------------------------- (6) timeouts and the local worker


def _watch_workers(seen: dict[int, dict], stop: threading.Event) -> None:
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                if "callscribe.worker" in " ".join(child.cmdline()) and child.pid not in seen:
                    seen[child.pid] = child.environ()
            except psutil.Error:
                continue
        time.sleep(0.05)


def test_a_timed_out_transcription_leaves_no_worker_behind(stack, s3, pg, quick_retries, monkeypatch):
    from callscribe.cli import run_day

    day = date(2026, 10, 21)
    # Eight calls in one job: several seconds of work, well past the 2 s limit (one call's job,
    # its fetch beside the model load, came to finish inside it).
    n = upload_day(s3, day, copies=8, files=[sample_dir() / "call-0001.wav"])
    monkeypatch.setenv("CALLSCRIBE_TRANSCRIBE_TIMEOUT_S", "2")
    seen: dict[int, dict] = {}
    with beside(_watch_workers, seen):
        dr = run_day(day)
    assert _state(dr) == "failed"
    assert seen, "no worker was ever started"
    time.sleep(3)  # long enough for an orphan to finish its job and write its shard
    alive = [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    # A killed worker leaves its progress note (by design: the next try reads it), but no shard.
    shards = [o.key for o in s3.list(f"{pipeline.WORK_PREFIX}/runs/{pipeline.run_key(dr.run_id)}/shards/")
              if not o.key.endswith(".progress.json")]
    assert shards == []
    sec = json.loads((stack.root / "secrets.json").read_text())
    not_for_workers = [sec[k] for k in ("pg_password", "analyst_password", "airflow_jwt_secret")]
    for env in seen.values():
        assert not [k for k in env if k.startswith("AIRFLOW") or "CONN" in k or "_PG_" in k], sorted(env)
        assert not [k for k, v in env.items() if any(s in v for s in not_for_workers)], sorted(env)
        assert env["CALLSCRIBE_S3_ENDPOINT"] and env["CALLSCRIBE_S3_SECRET_KEY"] == sec["s3_secret_key"]
    rows = _rows(pg, day)
    assert {r.status for r in rows.values()} == {"chunked"} and all("timed out" in r.last_error or
                                                                   "did not finish" in r.last_error
                                                                   for r in rows.values()), rows
    assert len(rows) == n
    # Left claimable with its reason (the next run takes it); counted, not lost.
    chaos.record_counts("transcribe timed out on every try: red, no worker left", n, 3, lost=0, duplicates=0)


# ---------------------------------------------------------------- found in review


def test_the_chunker_failing_on_one_recording_fails_only_that_recording(stack, s3, pg, quick_retries, monkeypatch):
    """The chunker raises on one recording every time: it ends `failed` with the error, its group-mates
    are transcribed, and each later run tries it again, 3 attempts in all. (A crash that kills the
    chunk task's process is test_chunk_crash.py's.)"""
    from callscribe.cli import run_day

    day = date(2026, 10, 25)
    n = upload_day(s3, day)
    bad = "call-0002-0.mp3"
    real = pipeline.chunk_recording

    def crashing(decoded, *args, **kwargs):
        if abs(decoded.duration_s - bad_duration) < 0.01:
            raise RuntimeError("simulated crash inside the chunker")
        return real(decoded, *args, **kwargs)

    from callscribe.audio import decode

    bad_duration = decode((sample_dir() / "call-0002.mp3").read_bytes(), bad).duration_s
    monkeypatch.setattr(pipeline, "chunk_recording", crashing)
    states = []
    for _ in range(MAX_ATTEMPTS + 1):
        dr = run_day(day)
        rows = _rows(pg, day)
        states.append((_state(dr), rows[bad].status, rows[bad].attempts))
        if len(states) == 1:
            # The first run loads the other two, in the same chunk task as the bad one.
            assert {k: r.status for k, r in rows.items() if k != bad} == {k: "done" for k in rows if k != bad}
            assert not {t for t, s in _task_states(dr).items() if "failed" in s}
    assert states == [("success", "failed", 1), ("success", "failed", 2), ("success", "failed", 3),
                      ("success", "failed", 3)]  # out of attempts: not taken again
    assert "chunking failed: RuntimeError: simulated crash inside the chunker" in _rows(pg, day)[bad].last_error
    assert set(loads(pg, day).values()) == {0, 1}
    record_clean("the chunker failing on one recording every run", s3, pg, day, n, MAX_ATTEMPTS)


def test_reprocess_under_the_same_run_id_loads_the_new_transcript(stack, s3, pg):
    """A run cleared whole in the UI keeps its run id: a reprocess under it still loads."""
    day = date(2026, 10, 27)
    n = upload_day(s3, day, files=[sample_dir() / "call-0003.wav"])
    run = "manual__cleared-whole"
    for reprocess in (False, True):
        ids = discovery.discover(s3, pg, day, "calls/", run, reprocess=reprocess)
        assert len(ids) == n
        jobs = pipeline.plan_jobs(s3, [pipeline.chunk_group(s3, pg, ids, run, 0)], run, "whisper-tiny")
        for j in jobs:
            pipeline.run_worker_local(j, s3_settings())
        assert loading.load_jobs(s3, pg, jobs, run).recordings == n
        reporting.report_run(pg, run, "transcribe_calls", day, "whisper-tiny")
    assert set(loads(pg, day).values()) == {2}
    record_clean("reprocess under a reused run id", s3, pg, day, n, 1, loads_expected=2)


def test_leases_of_a_run_that_is_over_do_not_hide_a_day(stack, s3, pg):
    """A run cut off by its timeout (never reported) still holds leases: the next run takes them over."""
    from callscribe.cli import run_day

    day = date(2026, 10, 29)
    n = upload_day(s3, day, files=[sample_dir() / "call-0003.wav"])
    prefix = day_prefix("calls/", day)
    discovery.register(pg, list(s3.list(prefix)), day, "setup")
    assert discovery.claim(pg, "calls", prefix, day, "scheduled__cut-off-by-its-timeout")
    assert _state(run_day(day)) == "success"
    assert {r.status for r in _rows(pg, day).values()} == {"done"}
    record_clean("leases of a run that died without reporting", s3, pg, day, n, 1)
