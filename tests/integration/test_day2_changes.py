"""An operator's day-2 changes while a run is live, on the real services: the database password
rotated between tasks, the object store's credentials rotated between chunking and the load, a task
run twice at once (a try Airflow took for a zombie while the first still ran). The promise: every
call ends known (done, failed with a reason, quarantined), none is dropped or loaded twice, the run
is red while calls are missing, and an outage spends none of a call's attempts."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from minio.error import S3Error

from callscribe import db, discovery, loading, pipeline, reporting
from callscribe.audit import run_verdict
from callscribe.config import s3_settings
from callscribe.job_notes import UNTRIED, forget_cause, leave_cause
from callscribe.manifests import JobManifest
from callscribe.storage import Store, unavailable
from tests.integration.helpers import day_rows, run_pod, run_through, upload_day
from tests.integration.test_worker_deaths import KILLING_ENGINE

pytestmark = pytest.mark.integration


def _listed(s3, pg, day: date, run: str) -> tuple[datetime, list[int]]:
    """A run's discover, as the task does it: its row, then the claim of its day."""
    started = datetime.now(UTC)
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    return started, discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)


def _states(pg, day: date) -> list[tuple[str, int, int]]:
    return [(r.status, r.attempts, r.loads) for r in day_rows(pg, day)]


def _planned(s3, pg, day: date, run: str) -> tuple[datetime, list[str], int]:
    """A run of ``day`` listed, chunked in one group and its jobs planned, as its tasks do it. Returns the
    listing's start, the jobs and how many calls."""
    n = upload_day(s3, day)
    started, ids = _listed(s3, pg, day, run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    return started, pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny"), n


# ---------------------------------------------------------------- a. the database password rotated


def test_a_database_password_rotated_between_chunk_and_load_is_an_outage_then_the_cleared_load_finishes(
        stack, s3, pg):
    """ALTER ROLE ... PASSWORD between a live run's chunk tasks and its load (the connection still
    holds the old one): the load task, a new process, cannot log in. It must fail as an outage (retried),
    touching nothing; once the connection is fixed the cleared load loads each call once, green."""
    day = date(2127, 1, 5)
    run = "scheduled__2127-01-05-pg-rotated"
    started, jobs, n = _planned(s3, pg, day, run)
    shards = [pipeline.run_worker_local(j, s3_settings()) for j in jobs]
    assert shards
    old = pg.url
    new_password = "rotated-" + old.password[:8]
    with pg.begin() as c:  # the operator rotates the role's password (sessions already open live on)
        c.execute(sa.text(f"ALTER ROLE callscribe PASSWORD '{new_password}'"))
    try:
        stale = sa.create_engine(old, poolclass=sa.pool.NullPool)  # the load task: a new process, the old password
        with pytest.raises(sa.exc.OperationalError) as refused:
            db.require_schema(stale)  # checked_engine, the task's first step
        assert db.unavailable(refused.value)  # retried by Airflow, never a call's fault
        with pytest.raises(sa.exc.OperationalError) as refused:
            loading.load_jobs(s3, stale, jobs, run)
        assert db.unavailable(refused.value)
        assert _states(pg, day) == [("chunked", 1, 0)] * n  # nothing loaded, nothing charged
        fixed = sa.create_engine(old.set(password=new_password), poolclass=sa.pool.NullPool)
        result = loading.load_jobs(s3, db.require_schema(fixed), jobs, run)  # the load cleared, with downstream
        assert result.recordings == n
        discovery.close_run(fixed, run, s3)
        verdict = run_verdict(s3, fixed, run, [day], "calls/", started)
        fixed.dispose()
    finally:
        with pg.begin() as c:
            c.execute(sa.text(f"ALTER ROLE callscribe PASSWORD '{old.password}'"))
    assert verdict.ok, verdict.problems()
    assert _states(pg, day) == [("done", 1, 1)] * n


# ---------------------------------------------------------------- b. the store's credentials rotated


def _rotated():
    """The connection's secret as the store no longer knows it (the key rotated on the store, the
    connection not yet updated): the real store answers SignatureDoesNotMatch."""
    return replace(s3_settings(), secret_key="rotated-away-" + "x" * 28)


def _transcribe_refused(s3, pg, day: date, run: str) -> tuple[datetime, list[str], int]:
    """A run of ``day`` listed and chunked, then every try of each job's transcribe task (the task and
    its two retries) refused by the store: the key rotated after the chunk tasks. Returns the listing's
    start, the jobs and how many calls."""
    started, jobs, n = _planned(s3, pg, day, run)
    rotated = _rotated()
    for job in jobs:
        for _try in range(3):
            with pytest.raises(S3Error) as refused:
                pipeline.run_worker_local(job, rotated)
            assert unavailable(refused.value), refused.value.code
    return started, jobs, n


def test_store_credentials_rotated_after_chunking_fail_transcribe_and_load_as_outages_and_a_clear_finishes(
        stack, s3, pg):
    """The key rotated between the chunk tasks and transcribe: every try of transcribe and of the load is
    refused by the store (an outage, retried), nothing is marked; the connection fixed and the failed
    tasks cleared with downstream, the run finishes green with one attempt each."""
    day, run = date(2127, 1, 6), "scheduled__2127-01-06-s3-rotated-clear"
    started, jobs, n = _transcribe_refused(s3, pg, day, run)
    with pytest.raises(S3Error) as refused:
        loading.load_jobs(Store(_rotated()), pg, jobs, run)
    assert unavailable(refused.value)
    assert _states(pg, day) == [("chunked", 1, 0)] * n
    for job in jobs:  # fixed; transcribe cleared with downstream
        pipeline.run_worker_local(job, s3_settings())
    assert loading.load_jobs(s3, pg, jobs, run).recordings == n
    discovery.close_run(pg, run, s3)
    verdict = run_verdict(s3, pg, run, [day], "calls/", started)
    assert verdict.ok, verdict.problems()
    assert _states(pg, day) == [("done", 1, 1)] * n


def test_store_credentials_rotated_under_transcribe_spend_no_attempt_when_the_fixed_load_finds_no_shard(
        stack, s3, pg):
    """The key rotated while the transcribe tasks ran (each try refused before its worker could read the
    job), and fixed before the run's load: that load finds no shard and no failure note. The calls
    were never heard, so their attempt is given back, as for a worker that exited before it read its
    job (README, "The deployment's faults do not spend the calls' attempts either"); the run is red, and
    the next run finishes the day with the calls' attempts as if the outage had not been."""
    day, run = date(2127, 1, 7), "scheduled__2127-01-07-s3-rotated-load"
    started, jobs, n = _transcribe_refused(s3, pg, day, run)
    result = loading.load_jobs(s3, pg, jobs, run)  # the connection fixed meanwhile
    assert result.unfinished_jobs == [j.rsplit("/", 1)[1].removesuffix(".json") for j in jobs]
    discovery.close_run(pg, run, s3)  # the report
    assert not run_verdict(s3, pg, run, [day], "calls/", started).ok  # red: calls missing
    rows = day_rows(pg, day)
    assert all(r.status == "chunked" and r.last_error for r in rows), rows  # known, with the job's reason
    assert [r.attempts for r in rows] == [0] * n, rows  # the outage spent none
    verdict = run_through(s3, pg, day, "manual__2127-01-07-s3-rotated-again")
    assert verdict.ok, verdict.problems()
    assert _states(pg, day) == [("done", 1, 1)] * n


def test_store_credentials_rotated_for_the_rest_of_a_run_spend_no_attempt_once_the_next_run_closes_it(
        stack, s3, pg):
    """The key rotated after the chunk tasks and fixed only the next morning: every try of transcribe, of
    the load and of the report is refused (the run red, its leases held). The next run of the day, with the
    connection fixed, closes the dead run: its calls were never heard, so their attempt is given back
    there, and that run finishes the day with one attempt each (before: two, an outage's)."""
    day, run = date(2127, 1, 10), "scheduled__2127-01-10-s3-rotated-night"
    _, jobs, n = _transcribe_refused(s3, pg, day, run)
    rotated = _rotated()
    with pytest.raises(S3Error):
        loading.load_jobs(Store(rotated), pg, jobs, run)
    with pytest.raises(S3Error):  # the report: its close pays what the run owes from the store first
        reporting.report_run(pg, run, "transcribe_calls", day, "whisper-tiny", store=Store(rotated))
    assert _states(pg, day) == [("chunked", 1, 0)] * n
    verdict = run_through(s3, pg, day, "manual__2127-01-10-s3-rotated-next")  # fixed; the dead run closed
    assert verdict.ok, verdict.problems()
    assert _states(pg, day) == [("done", 1, 1)] * n


# ---------------------------------------------------------------- c. a deploy that changes the job sizing


def test_a_deploy_that_shrinks_the_jobs_between_two_plans_of_a_run_charges_and_loads_each_call_once(
        stack, s3, pg, monkeypatch):
    """A new CALLSCRIBE_JOB_SLOTS / CALLSCRIBE_JOB_MIN_AUDIO_S deployed after plan_jobs planned three jobs and
    before any ran; plan_jobs cleared with downstream plans one. The first plan's jobs (their notes, no
    shards) are not this plan's: the run's close gives no attempt back for them (its calls were heard
    in the one job), each call is loaded once, green; a job of the first plan transcribed before the
    clear loads nothing."""
    from callscribe.batching import JobSizing

    day = date(2127, 1, 11)
    n = upload_day(s3, day)
    run = "scheduled__2127-01-11-sizing-deployed"
    started, ids = _listed(s3, pg, day, run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    first = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny", sizing=JobSizing(slots=4, min_s=1))
    assert len(first) == n
    pipeline.run_worker_local(first[-1], s3_settings())  # one of the first plan's jobs ran before the clear
    monkeypatch.setenv("CALLSCRIBE_JOB_SLOTS", "1")  # the deploy
    second = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    assert len(second) == 1
    pipeline.run_worker_local(second[0], s3_settings())
    assert loading.load_jobs(s3, pg, second, run).recordings == n
    discovery.close_run(pg, run, s3)
    verdict = run_verdict(s3, pg, run, [day], "calls/", started)
    assert verdict.ok, verdict.problems()
    assert _states(pg, day) == [("done", 1, 1)] * n


# ---------------------------------------------------------------- d. a task run twice at once


def _twice(fn, *args):
    """``fn(*args)`` in two threads started together (a try and the zombie try it replaced); the
    results (or exceptions) of both."""
    gate = threading.Barrier(2)
    out: list[object] = [None, None]

    def one(i: int) -> None:
        gate.wait()
        try:
            out[i] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - returned for the test to judge
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return out


def test_a_chunk_task_running_twice_at_once_leaves_every_call_known_and_loaded_once(stack, s3, pg):
    """A chunk task's next try started while the try Airflow took for a zombie still ran (a heartbeat
    lost, not the process): both chunk the same group of the same run at once, into one manifest.
    Every call must end known, loaded at most once, and the run green only when all are done."""
    day = date(2127, 1, 8)
    n = upload_day(s3, day, copies=2)
    run = "scheduled__2127-01-08-chunk-twice"
    started, ids = _listed(s3, pg, day, run)
    out = _twice(pipeline.chunk_group, s3, pg, ids, run, 0)
    manifests = [m for m in out if isinstance(m, str)]
    assert manifests, out
    jobs = pipeline.plan_jobs(s3, manifests[:1], run, "whisper-tiny")
    for job in jobs:
        pipeline.run_worker_local(job, s3_settings())
    loading.load_jobs(s3, pg, jobs, run)
    discovery.close_run(pg, run, s3)
    verdict = run_verdict(s3, pg, run, [day], "calls/", started)
    rows = day_rows(pg, day)
    assert len(rows) == n
    assert all(r.loads <= 1 and r.attempts == 1 for r in rows), rows
    assert all(r.status == "done" or r.last_error for r in rows), rows  # nothing unfinished without a reason
    # Red while a call is left unfinished; one the other try blamed for its "death" is failed with that
    # reason (a known state, retried by the next run: the try it blamed was alive, not dead).
    assert verdict.ok == all(r.status in ("done", "failed") for r in rows), (verdict.problems(), rows)
    assert run_through(s3, pg, day, "manual__2127-01-08-chunk-twice-again").ok  # the next run finishes the day
    assert {(r.status, r.loads) for r in day_rows(pg, day)} == {("done", 1)}


def test_a_load_task_running_twice_at_once_loads_each_call_once(stack, s3, pg):
    """The load's next try started while the zombie try still loaded the same shards: each call is
    loaded once, its segments once, and the run is green."""
    day = date(2127, 1, 9)
    run = "scheduled__2127-01-09-load-twice"
    started, jobs, n = _planned(s3, pg, day, run)
    for job in jobs:
        pipeline.run_worker_local(job, s3_settings())
    out = _twice(loading.load_jobs, s3, pg, jobs, run)
    assert not [o for o in out if isinstance(o, Exception)], out
    assert sum(o.recordings for o in out) == n, out
    discovery.close_run(pg, run, s3)
    verdict = run_verdict(s3, pg, run, [day], "calls/", started)
    assert verdict.ok, verdict.problems()
    assert _states(pg, day) == [("done", 1, 1)] * n
    with pg.connect() as c:
        doubled = c.execute(sa.text(
            "SELECT count(*) FROM (SELECT recording_id, channel, seq FROM segments WHERE call_date = :d "
            "GROUP BY 1, 2, 3 HAVING count(*) > 1) AS x"), {"d": day}).scalar_one()
    assert doubled == 0


# ---------------------------------------------------------------- e. plan_jobs cleared alone after its jobs ran


def _heard(pg, ids: set[int]) -> dict[int, tuple[str, int, str | None]]:
    with pg.connect() as c:
        return {r.id: (r.status, r.attempts, r.last_error) for r in c.execute(sa.text(
            "SELECT id, status, attempts, last_error FROM recordings WHERE id = ANY(:ids)"), {"ids": sorted(ids)})}


@pytest.mark.parametrize("noted", [True, False], ids=["kill-noted", "no-note"])
def test_plan_jobs_cleared_alone_after_a_call_killed_its_worker_gives_no_attempt_back(stack, s3, pg, tmp_path,
                                                                                     noted):
    """A call that kills the worker (OOM) on every try of its job's task: its attempt is spent, with the kill
    as its reason (or the load's "no shard" where no try could leave a note). plan_jobs is then cleared
    without transcribe (a re-plan no try of which runs): its calls were heard all the same, so neither the
    load nor the run's close may give that attempt back, nor tell them "the task never ran" (the re-plan's
    note did both)."""
    day = date(2130, 1, 3 if noted else 4)
    upload_day(s3, day)
    run = f"scheduled__{day}-replanned-alone"
    _, ids = _listed(s3, pg, day, run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    killer = JobManifest.model_validate_json(s3.get_bytes(jobs[0])).recordings[0].recording_id
    wrapper = KILLING_ENGINE.replace("KILLERS", repr({killer})).replace("SIGNAL", "SIGKILL")
    # Its task's tries (two: a third would leave the killer out), as the pod task runs them: the earlier try's
    # note gone, the pod OOM-killed, what the cluster said left as the note (or nothing: the note not written).
    for _try in range(2):
        forget_cause(s3, jobs[0])
        assert run_pod(wrapper, jobs[0], tmp_path, env={"CALLSCRIBE_WORKER_RESPAWNS": "0"}).returncode == -9
        if noted:
            leave_cause(s3, jobs[0], "pod Failed; container base exited 137 (OOMKilled)")
    for job in jobs[1:]:
        pipeline.run_worker_local(job, s3_settings())
    loading.load_jobs(s3, pg, jobs, run)
    discovery.close_run(pg, run, s3)  # the report
    heard = {r.recording_id for r in JobManifest.model_validate_json(s3.get_bytes(jobs[0])).recordings}
    before = _heard(pg, heard)
    assert all(a == 1 for _, a, _ in before.values()), before

    # plan_jobs cleared without transcribe (alone, or with the load): no try of the new plan runs.
    replanned = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    loading.load_jobs(s3, pg, replanned, run)
    discovery.close_run(pg, run, s3)  # the report again, or the next run of the day's close (release_dead)
    after = _heard(pg, heard)
    assert after == before, after
    assert not any(UNTRIED in (e or "") for _, _, e in after.values()), after
    discovery.release(pg, run)


def test_transcribe_marked_success_in_the_ui_without_running_is_red_and_spends_no_attempt(stack, s3, pg):
    """Each mapped transcribe marked success in the UI before it ran: the load finds no shard, only the
    note each job was planned with. The run must be red, the calls unheard: their attempt given back,
    their reason saying no try ran, and the next run finishes the day with one attempt each."""
    day, run = date(2132, 5, 1), "scheduled__2132-05-01-transcribe-marked"
    started, jobs, n = _planned(s3, pg, day, run)
    result = loading.load_jobs(s3, pg, jobs, run)  # downstream of the marked tasks
    assert result.recordings == 0 and len(result.unfinished_jobs) == len(jobs)
    discovery.close_run(pg, run, s3)  # the report
    assert not run_verdict(s3, pg, run, [day], "calls/", started).ok
    rows = day_rows(pg, day)
    assert all(r.attempts == 0 and UNTRIED in (r.last_error or "") for r in rows), rows
    assert run_through(s3, pg, day, "manual__2132-05-01-transcribe-marked-again").ok
    assert _states(pg, day) == [("done", 1, 1)] * n
