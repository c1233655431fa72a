"""Faults injected into real runs against the embedded services, then an audit after recovery.

Each scenario kills, stops or races something real (a worker process, PostgreSQL, the object
store, a second run of the same day), lets the pipeline recover the way production would
(task retries, the next run), and then reconciles the bucket with Postgres: every recording
accounted for once, none lost, none loaded twice. Each adds a line to the summary that
`make test` and `make chaos` print.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import psutil
import pytest
import sqlalchemy as sa

from callscribe import discovery, pipeline
from callscribe.audit import audit_day
from callscribe.config import s3_settings
from callscribe.dev import services
from callscribe.discovery import day_prefix
from callscribe.loading import load_shards
from callscribe.samples import sample_files
from callscribe.storage import ObjectInfo
from tests import chaos
from tests.integration.helpers import (
    beside,
    chunk_to_shards,
    loads,
    record_clean,
    shards_for,
    upload_day,
    wait_for_lock_wait,
)

pytestmark = pytest.mark.integration
# Two of the samples, a WAV and an MP3, for the faults that need a day of calls but not the long
# stereo one (call-0001): the fault and the recovery are the same, the transcriptions shorter.
SHORT_DAY = [f for f in sample_files() if f.name != "call-0001.wav"]


@pytest.fixture
def quick_retries(monkeypatch):
    """Task retries after a second instead of minutes (read when the DAG file is parsed)."""
    monkeypatch.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")


# ---------------------------------------------------------------- claims


def test_claims_made_at_the_same_moment_never_overlap(pg):
    """Eight runs claim one day's 300 recordings at once: each recording goes to exactly one."""
    day = date(2026, 11, 5)
    objects = [ObjectInfo("calls", f"{day_prefix('calls/', day)}c{i:04d}.wav", f"e{i}", 1000) for i in range(300)]
    discovery.register(pg, objects, day, "setup")
    barrier = threading.Barrier(8)

    def claim(k: int) -> list[int]:
        barrier.wait()
        return discovery.claim(pg, "calls", day_prefix("calls/", day), day, f"racer-{k}", max_recordings=60)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, range(8)))
    taken = [rid for r in results for rid in r]
    chaos.record_counts("eight runs claiming one day at once", 300, 1, lost=300 - len(set(taken)),
                        duplicates=len(taken) - len(set(taken)))
    assert len(taken) == len(set(taken)) == 300  # disjoint, and together everything
    # No run takes more than its limit. Runs that reach the last free rows together share them
    # row by row (each skips what another has just locked), so five or more runs take work.
    assert all(len(r) <= 60 for r in results)
    assert sum(1 for r in results if r) >= 5

    # A run's retried discover gets its own recordings back; a released claim is free again.
    again = discovery.claim(pg, "calls", day_prefix("calls/", day), day, "racer-0")
    assert again == results[0]
    assert discovery.release(pg, "racer-0") == len(results[0])
    assert discovery.claim(pg, "calls", day_prefix("calls/", day), day, "late-run") == results[0]


def test_an_expired_lease_frees_the_recordings_of_a_run_that_died(pg):
    day = date(2026, 11, 6)
    objects = [ObjectInfo("calls", f"{day_prefix('calls/', day)}d{i}.wav", f"e{i}", 1000) for i in range(5)]
    discovery.register(pg, objects, day, "setup")
    prefix = day_prefix("calls/", day)
    first = discovery.claim(pg, "calls", prefix, day, "died", lease_s=0.001)
    time.sleep(0.05)
    assert discovery.claim(pg, "calls", prefix, day, "next") == first


# ---------------------------------------------------------------- the same day twice at once


def test_the_same_day_run_twice_at_once_transcribes_each_recording_once(stack, s3, pg, quick_retries):
    """A scheduled run and a manual run for the same day (different logical dates), at once."""
    day = date(2026, 11, 7)
    n = upload_day(s3, day, copies=2)
    cmd = [sys.executable, "-m", "callscribe.cli", "run", "--date", str(day)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The second starts once the first has claimed the day (both then run side by side); starting
    # both in the same instant would only race Airflow's own DAG-version sync, not callscribe.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        with pg.connect() as c:
            if c.execute(sa.text("SELECT count(*) FROM recordings WHERE call_date = :d AND lease_until > now()"),
                         {"d": day}).scalar_one():
                break
        time.sleep(0.2)
    second = subprocess.Popen(cmd + ["--logical-date", f"{day}T09:30:00+00:00"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs = [first, second]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert first.poll() is not None
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-4000:]
    with pg.connect() as c:
        owners = c.execute(sa.text("SELECT last_run_id, count(*) FROM recordings WHERE call_date = :d GROUP BY 1"),
                           {"d": day}).all()
    assert sum(k for _, k in owners) == n
    with pg.connect() as c:
        found = c.execute(sa.text("SELECT recordings_found FROM pipeline_runs WHERE call_date = :d"),
                          {"d": day}).scalars().all()
    assert len(found) == 2 and sum(found) == n  # each recording counted by exactly one of the runs
    assert set(loads(pg, day).values()) == {1}
    record_clean("same day triggered twice at once", s3, pg, day, n, 1)


# ---------------------------------------------------------------- a worker killed mid-job


def _kill_first_worker(killed: list[int], stop: threading.Event, after_s: float = 1.5) -> None:
    """SIGKILL the first worker process once it has run for ``after_s`` (its model is loading or running)."""
    me = psutil.Process()
    while not stop.is_set() and not killed:
        for child in me.children(recursive=True):
            try:
                if "callscribe.worker" in " ".join(child.cmdline()) and time.time() - child.create_time() > after_s:
                    child.send_signal(signal.SIGKILL)
                    killed.append(child.pid)
                    return
            except psutil.Error:
                continue
        time.sleep(0.1)


def test_a_worker_killed_mid_job_is_retried_and_loaded_once(stack, s3, pg, quick_retries):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from callscribe.cli import run_day

    day = date(2026, 11, 8)
    n = upload_day(s3, day)
    killed: list[int] = []
    with beside(_kill_first_worker, killed):
        dr = run_day(day)
    assert killed, "the worker was never seen running"
    assert str(dr.state).endswith("success")
    with create_session() as session:
        tries = [ti.try_number for ti in session.query(TaskInstance).filter_by(
            dag_id=dr.dag_id, run_id=dr.run_id, task_id="transcribe")]
    assert tries == [2]  # the killed attempt, then the retry
    assert set(loads(pg, day).values()) == {1}
    record_clean("worker killed mid-job (task retry)", s3, pg, day, n, 1)

    # Re-running the whole day afterwards changes nothing.
    with pg.connect() as c:
        before = c.execute(sa.text("SELECT count(*), sum(length(text)) FROM segments s JOIN recordings r "
                                   "ON r.id = s.recording_id WHERE r.call_date = :d"), {"d": day}).one()
    assert str(run_day(day, logical_date=None).state).endswith("success")
    with pg.connect() as c:
        after = c.execute(sa.text("SELECT count(*), sum(length(text)) FROM segments s JOIN recordings r "
                                  "ON r.id = s.recording_id WHERE r.call_date = :d"), {"d": day}).one()
    assert tuple(after) == tuple(before)
    assert set(loads(pg, day).values()) == {1}


# ---------------------------------------------------------------- PostgreSQL restarted during a load


def _forget_airflow_connections() -> None:
    """This process also holds Airflow's ORM session (dag.test): drop its dead connections too."""
    settings = sys.modules.get("airflow.settings")
    if settings is not None and settings.Session is not None:
        settings.Session().invalidate()  # its open transaction died with the server: no rollback
        settings.Session.remove()
        if settings.engine is not None:
            settings.engine.dispose()


def test_postgres_restarted_during_a_load_leaves_nothing_half_loaded(stack, s3, pg):
    day = date(2026, 11, 9)
    n = upload_day(s3, day, files=SHORT_DAY)
    ids, shards = shards_for(s3, pg, day, "pg-restart")

    # Hold a lock the load needs, so the restart lands while its transaction is open.
    blocker = pg.connect()
    blocker.execute(sa.text("LOCK TABLE segments IN EXCLUSIVE MODE"))
    failure: list[BaseException] = []

    def load() -> None:
        try:
            load_shards(s3, pg, shards)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            failure.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    wait_for_lock_wait(pg, "DELETE FROM segments WHERE recording_id")
    services.postgres_down(stack)
    loader.join(60)
    blocker.invalidate()
    services.up(stack, airflow=False)
    _forget_airflow_connections()
    assert failure and isinstance(failure[0], sa.exc.OperationalError | sa.exc.DBAPIError), failure

    with pg.connect() as c:
        half = c.execute(sa.text("SELECT count(*) FROM segments WHERE recording_id = ANY(:ids)"),
                         {"ids": ids}).scalar_one()
        states = set(c.execute(sa.text("SELECT status FROM recordings WHERE id = ANY(:ids)"), {"ids": ids}).scalars())
    assert half == 0 and states == {"chunked"}  # the whole load rolled back

    load_shards(s3, pg, shards)  # the task's retry
    discovery.release(pg, "pg-restart")
    assert set(loads(pg, day).values()) == {1}
    record_clean("postgres restarted during a load (retry)", s3, pg, day, n, 1)


# ---------------------------------------------------------------- the object store down for a while


def test_an_object_store_outage_fails_the_task_not_the_recordings(stack, s3, pg):
    """Chunking while the store is down raises (Airflow retries the task); no recording is charged."""
    day = date(2026, 11, 11)
    n = upload_day(s3, day, files=SHORT_DAY)
    ids = discovery.discover(s3, pg, day, "calls/", "outage-chunk")
    services.s3_down(stack)
    try:
        with pytest.raises(Exception) as err:
            pipeline.chunk_group(s3, pg, ids, "outage-chunk", 0)
    finally:
        services.up(stack, airflow=False)
    assert "Connection refused" in str(err.value) or "Max retries" in str(err.value)
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT status, attempts FROM recordings WHERE id = ANY(:ids)"), {"ids": ids}).all()
    assert {tuple(r) for r in rows} == {("pending", 0)}
    load_shards(s3, pg, chunk_to_shards(s3, pg, ids, "outage-chunk")[2])  # the retry, once the store is back
    discovery.release(pg, "outage-chunk")
    record_clean("object store down during chunking (retry)", s3, pg, day, n, 1)


def test_a_run_started_while_the_store_is_down_recovers_by_retrying(stack, s3, pg, quick_retries):
    from callscribe.cli import run_day

    day = date(2026, 11, 19)  # a day of its own: the same sample on another test's day is that day's copy
    n = upload_day(s3, day, files=SHORT_DAY)
    services.s3_down(stack)
    back = threading.Timer(8.0, services.up, args=(stack,), kwargs={"airflow": False})
    back.start()
    try:
        dr = run_day(day)
    finally:
        back.join()
    assert str(dr.state).endswith("success")
    assert set(loads(pg, day).values()) == {1}
    record_clean("object store down at the start of a run (retries)", s3, pg, day, n, 1)


# ---------------------------------------------------------------- reprocess is atomic


def test_reprocess_keeps_the_old_transcript_visible_until_the_new_one_commits(stack, s3, pg):
    day = date(2026, 11, 13)
    n = upload_day(s3, day, files=SHORT_DAY)
    ids, shards = shards_for(s3, pg, day, "first")
    load_shards(s3, pg, shards)
    discovery.release(pg, "first")
    with pg.connect() as c:
        old = c.execute(sa.text("SELECT count(*) FROM segments WHERE recording_id = ANY(:ids)"),
                        {"ids": ids}).scalar_one()
    assert old > 0

    assert discovery.discover(s3, pg, day, "calls/", "again", reprocess=True) == ids
    shards = chunk_to_shards(s3, pg, ids, "again")[2]  # the reprocess run's own shards
    # Block the load's last statement: its replacement of the segments is done, not committed.
    blocker = pg.connect()
    blocker.execute(sa.text("LOCK TABLE batch_metrics IN EXCLUSIVE MODE"))
    loader = threading.Thread(target=load_shards, args=(s3, pg, shards))
    loader.start()
    try:
        wait_for_lock_wait(pg, "batch_metrics")
        with pg.connect() as c:
            seen = c.execute(sa.text("SELECT count(*) FROM analytics.segments WHERE recording_id = ANY(:ids)"),
                             {"ids": ids}).scalar_one()
            done = c.execute(sa.text("SELECT count(*) FROM recordings WHERE id = ANY(:ids) AND status = 'done'"),
                             {"ids": ids}).scalar_one()
        assert seen == old and done == len(ids)  # mid-load, readers still see the old transcripts
    finally:
        blocker.rollback()
        blocker.close()
        loader.join(60)
    discovery.release(pg, "again")
    assert set(loads(pg, day).values()) == {2}
    record_clean("reprocess replaces atomically", s3, pg, day, n, 0, loads_expected=2)


# ---------------------------------------------------------------- hours-long recordings


@pytest.mark.parametrize(("hours", "day"), [
    (2, date(2026, 11, 15)),
    pytest.param(8, date(2026, 11, 17), marks=pytest.mark.chaos),  # a whole shift: make chaos only
])
def test_a_recording_hours_long_is_transcribed(stack, s3, pg, hours, day):
    import io

    import numpy as np
    import soundfile as sf

    from callscribe.cli import run_day

    speech, sr = sf.read(str(sample_files()[0]), dtype="float32", always_2d=True)
    speech = speech[:, 0]
    rate = 8000
    total = int(hours * 3600 * rate)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(total) * 0.002).astype(np.float32)  # line noise between the talk
    if sr != rate:
        import soxr

        speech = soxr.resample(speech, sr, rate).astype(np.float32)
    for start in range(0, total - len(speech), 15 * 60 * rate):  # someone speaks every 15 minutes
        audio[start : start + len(speech)] += speech
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="ULAW")
    s3.put_bytes(s3.uri(day_prefix("calls/", day) + "long call.wav"), buf.getvalue())
    dr = run_day(day)
    assert str(dr.state).endswith("success")
    with pg.connect() as c:
        rec = c.execute(sa.text("SELECT id, status, duration_s FROM recordings WHERE call_date = :d"),
                        {"d": day}).one()
        last = c.execute(sa.text("SELECT max(end_s) FROM segments WHERE recording_id = :r"), {"r": rec.id}).scalar()
    assert rec.status == "done" and abs(rec.duration_s - hours * 3600) < 1
    assert last > hours * 3600 - 16 * 60  # talk near the end was transcribed too
    record_clean(f"{hours:g}-hour recording", s3, pg, day, 1, 0)


def test_the_audit_catches_lost_and_doubled_recordings(stack, s3, pg):
    """The audit behind every line of the summary must be able to say no."""
    day = date(2026, 11, 16)
    upload_day(s3, day)
    ids, shards = shards_for(s3, pg, day, "audited")
    load_shards(s3, pg, shards)
    assert audit_day(s3, pg, day).clean

    prefix = day_prefix("calls/", day)
    s3.put_bytes(s3.uri(prefix + "arrived-late.wav"), b"RIFF")  # in the bucket, never registered
    with pg.begin() as c:
        c.execute(sa.text("INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, "
                          "text_redacted, call_date) SELECT recording_id, channel, seq + 1000, speaker, start_s, "
                          "end_s, text, text_redacted, call_date FROM segments "
                          "WHERE recording_id = :r ORDER BY seq LIMIT 1"), {"r": ids[0]})
        c.execute(sa.text("UPDATE recordings SET loads = 2 WHERE id = :r"), {"r": ids[1]})
        c.execute(sa.text("UPDATE recordings SET status = 'chunked' WHERE id = :r"), {"r": ids[2]})
    result = audit_day(s3, pg, day)
    assert [x.split(":")[0] for x in result.lost] == [prefix + "arrived-late.wav"]
    assert len(result.duplicated) == 1 and "repeated segments" in result.duplicated[0]
    assert len(result.unfinished) == 1 and result.loads[2] == 1
    entry = chaos.record("audit self-check (planted faults, not counted)", [result], 0, 0)
    chaos.LEDGER.remove(entry)
    assert entry["lost"] == 2 and entry["duplicates"] == 2


# ---------------------------------------------------------------- every task run again


def test_running_any_task_again_changes_nothing(stack, s3, pg):
    """Each stage run a second time with the same inputs, as clearing a task in the UI does."""
    day = date(2026, 11, 18)
    n = upload_day(s3, day, files=SHORT_DAY)
    run = "rerun-each"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest, jobs, shards = chunk_to_shards(s3, pg, ids, run)
    load_shards(s3, pg, shards)

    def snapshot():
        with pg.connect() as c:
            return (
                c.execute(sa.text("SELECT id, status, last_error FROM recordings WHERE call_date = :d ORDER BY id"),
                          {"d": day}).all(),
                c.execute(sa.text("SELECT recording_id, channel, seq, speaker, start_s, end_s, text FROM segments "
                                  "WHERE recording_id = ANY(:ids) ORDER BY 1, 2, 3"), {"ids": ids}).all(),
                c.execute(sa.text("SELECT count(*) FROM analytics.calls WHERE call_date = :d"), {"d": day}).scalar(),
            )

    before = snapshot()
    assert discovery.discover(s3, pg, day, "calls/", run) == []  # nothing left to claim
    assert pipeline.chunk_group(s3, pg, ids, run, 0) == manifest
    assert snapshot() == before  # re-chunking leaves done recordings done, transcripts in place
    assert pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny") == jobs
    assert [pipeline.run_worker_local(j, s3_settings()) for j in jobs] == shards
    assert load_shards(s3, pg, shards).recordings == 0  # already this run's transcripts: not a second load
    assert snapshot() == before
    discovery.release(pg, run)
    assert set(loads(pg, day).values()) == {1}
    record_clean("every task run a second time", s3, pg, day, n, 5)
