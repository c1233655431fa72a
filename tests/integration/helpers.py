"""Helpers the integration tests share: upload a day, load a call's segments, read loads, audit, run stages."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from callscribe import discovery, pipeline
from callscribe.audit import audit_day
from callscribe.config import day_zone, s3_settings
from callscribe.discovery import day_prefix
from callscribe.loading import load_shards
from callscribe.manifests import CONFIDENCE, SEGMENT_COLUMNS, WORD_STARTS, RecordingEntry, ShardInfo, to_parquet
from callscribe.samples import distinct_copy, sample_files
from tests import chaos


def upload_day(s3, day: date, copies: int = 1, files=None) -> int:
    """The sample calls (or ``files``) into the day's prefix, ``copies`` times (each copy another
    call's bytes: identical uploads of a day are one call); returns how many."""
    prefix = day_prefix("calls/", day)
    n = 0
    for i in range(copies):
        for f in files or sample_files():
            s3.put_bytes(s3.uri(f"{prefix}{f.stem}-{i}{f.suffix}"), distinct_copy(f.read_bytes(), f.suffix, i))
            n += 1
    return n


def load_call(pg, s3, key: str, day: date, segments: list[tuple], metadata: dict | None = None,
              agent: str = "t1", etag: str = "e") -> int:
    """One two-channel call loaded through the real loader, from (channel, speaker, start, end, text[,
    word starts[, confidence]]) rows in order; returns its recording id."""
    with pg.begin() as c:
        rid = c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, agent_id, status, channels, "
            "duration_s, last_run_id, metadata) VALUES ('calls', :k, :e, :d, :k, :a, 'chunked', 2, :dur, :run, "
            "CAST(:m AS jsonb)) RETURNING id"),
            {"k": key, "e": etag, "d": day, "a": agent, "dur": max(s[3] for s in segments) + 1, "run": f"load-{key}",
             "m": json.dumps(metadata or {})}).scalar_one()
    seq = {0: 0, 1: 0}
    rows = []
    for ch, speaker, start, end, text, *extra in segments:
        rows.append((rid, ch, seq[ch], speaker, start, end, text, extra[0] if extra else None,
                     extra[1] if len(extra) > 1 else None))
        seq[ch] += 1
    info = ShardInfo(job_id=f"load-{rid}", run_id=f"load-{key}", engine="test", batches=[],
                     recordings=[RecordingEntry(recording_id=rid, n_channels=2)])
    uri = s3.uri(f"_callscribe/tests/load-{rid}.parquet")
    s3.put_bytes(uri, to_parquet(pd.DataFrame(rows, columns=[*SEGMENT_COLUMNS, WORD_STARTS, CONFIDENCE]), info))
    load_shards(s3, pg, [uri])
    return rid


def loads(pg, day: date) -> dict[str, int]:
    """object name -> times loaded, for the live rows of a day."""
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT object_key, loads FROM recordings WHERE call_date = :d "
                                 "AND status <> 'superseded'"), {"d": day})
        return {k.rsplit("/", 1)[1]: n for k, n in rows}


def record_clean(case: str, s3, pg, day: date, inputs: int, faults: int, loads_expected: int = 1) -> None:
    """Audit the day into the chaos ledger and require nothing lost and nothing twice."""
    entry = chaos.record(case, [audit_day(s3, pg, day)], inputs, faults, loads_expected)
    assert entry["lost"] == 0 and entry["duplicates"] == 0, entry["details"]


def chunk_to_shards(s3, pg, ids: list[int], run_id: str) -> tuple[str, list[str], list[str]]:
    """chunk -> plan -> worker, without Airflow; returns the chunk manifest, job and shard URIs."""
    manifest = pipeline.chunk_group(s3, pg, ids, run_id, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run_id, "whisper-tiny")
    return manifest, jobs, [pipeline.run_worker_local(j, s3_settings()) for j in jobs]


def shards_for(s3, pg, day: date, run_id: str, **claim) -> tuple[list[int], list[str]]:
    """A day discovered and transcribed up to its shards (not loaded); returns ids and shard URIs."""
    ids = discovery.discover(s3, pg, day, "calls/", run_id, **claim)
    return ids, chunk_to_shards(s3, pg, ids, run_id)[2]


def wait_for_lock_wait(pg, statement_part: str, timeout: float = 30) -> None:
    """Until a session running a statement that mentions ``statement_part`` waits on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pg.connect() as c:
            waiting = c.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :part"),
                {"part": f"%{statement_part}%"}).scalar_one()
        if waiting:
            return
        time.sleep(0.1)
    pytest.fail(f"no statement on {statement_part} ever waited on the lock")


@contextmanager
def beside(watch: Callable[..., None], *args) -> Iterator[None]:
    """Run ``watch(*args, stop)`` in a thread for the duration of the block (a killer, a watcher)."""
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(*args, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_through(s3, pg, day: date, run: str, before_chunk=None, close: bool = True, reprocess: bool = False,
                stop: str | None = None, is_live: Callable[[str], bool] | None = None, lookback_days: int = 0):
    """One run of ``day`` through the pipeline's own functions (no Airflow): discover, chunk, plan, the
    local worker, load, the report's close; returns the run's verdict. ``before_chunk`` runs between
    listing and chunking (an upload racing the run); ``close=False`` dies before the report, ``stop``
    earlier still (``"listed"``, ``"chunked"``; None is returned then). Other runs are over unless
    ``is_live`` says they are live; ``lookback_days`` as the DAG's Param."""
    from datetime import UTC, datetime

    from callscribe import loading, reporting
    from callscribe.audit import run_verdict

    started = datetime.now(UTC)
    # As `discover` does first: the run's row, which its claim then records what a reprocess held back in.
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", store=s3)
    ids = discovery.discover(s3, pg, day, "calls/", run, reprocess=reprocess, is_live=is_live or (lambda r: False),
                             lookback_days=lookback_days)
    if before_chunk:
        before_chunk()
    if stop == "listed":
        return None
    if ids:
        manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
        if stop == "chunked":
            return None
        jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
        for job in jobs:
            pipeline.run_worker_local(job, s3_settings())
        if jobs:
            loading.load_jobs(s3, pg, jobs, run)
    if close:
        discovery.close_run(pg, run)
    return run_verdict(s3, pg, run, discovery.run_days(day, lookback_days), "calls/", started, is_live=is_live)


def transcribe_and_close(s3, pg, manifests: list[str], run: str) -> None:
    """What follows a run's chunk tasks (as run_through does): plan its jobs, run them on the local
    worker, load them, close the run."""
    from callscribe import loading

    jobs = pipeline.plan_jobs(s3, manifests, run, "whisper-tiny")
    for job in jobs:
        pipeline.run_worker_local(job, s3_settings())
    if jobs:
        loading.load_jobs(s3, pg, jobs, run)
    discovery.close_run(pg, run)


def key_versions(pg, day: date, key: str) -> list[sa.Row]:
    """Every row of one object key of ``day``, oldest first, with how many segments each holds."""
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT r.id, r.etag, r.status, r.attempts, r.last_error, r.last_run_id, "
            "(SELECT count(*) FROM segments s WHERE s.recording_id = r.id) AS segments "
            "FROM recordings r WHERE r.call_date = :d AND r.object_key = :k ORDER BY r.id"),
            {"d": day, "k": key}).all()


def run_pod(wrapper: str, job_uri: str, tmp_path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The worker as a pod runs it, in a process of its own with the pod's environment (the S3
    settings only): ``wrapper`` is a script that puts its stand-in engine in place and ends with
    ``sys.exit(worker.main(sys.argv[1:]))``, so the command line, the store and the exit status are real."""
    return subprocess.run([sys.executable, "-c", wrapper, "--job", job_uri, "--xcom-path", str(tmp_path / "x.json"),
                           "--error-path", str(tmp_path / "err.txt")],
                          env={**pipeline.worker_environment(s3_settings()), **(env or {})}, capture_output=True,
                          text=True, timeout=300)


def downgrade(pg, revision: str) -> None:
    """The schema down to ``revision`` (alembic), as an operator rolling back would leave it."""
    from alembic import command

    from callscribe import db

    cfg = db.alembic_config(pg)
    with pg.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    pg.dispose()


def run_covered(pg, dr) -> tuple[date, list[str]]:
    """The day a finished DAG run reported, and the states of that day's recordings."""
    with pg.connect() as c:
        day = c.execute(sa.text("SELECT call_date FROM pipeline_runs WHERE run_id = :r"),
                        {"r": dr.run_id}).scalar_one()
        states = c.execute(sa.text("SELECT status FROM recordings WHERE call_date = :d ORDER BY id"),
                           {"d": day}).scalars().all()
    return day, states


def airflow_api(port: int, method: str, path: str, body: dict | None = None) -> dict:
    """One call to the test Airflow's REST API (v2), JSON in and out."""
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def wait_for(what: str, check: Callable[[], object], timeout: float, logs: Callable[[], str]) -> object:
    """``check()``'s first true answer, polled every 0.5 s (an unreachable server counts as no); the test
    fails with the components' logs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}\n{logs()}")


@contextmanager
def airflow_running(stack) -> Iterator[tuple[object, Callable[[], str]]]:
    """The Airflow components (API server, scheduler, DAG processor, triggerer) on the test services,
    up until the DAG is parsed: yields the stack and a function giving their logs' ends."""
    from callscribe.dev import services

    logdir = stack.airflow_home / "component-logs"
    procs = services.airflow_up(stack, logdir)

    def logs() -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in logdir.glob("*.log"))

    try:
        wait_for("the DAG to be parsed", lambda: airflow_api(stack.api_port, "GET", "/dags/transcribe_calls"),
                 240, logs)
        yield stack, logs
    finally:
        _stop_triggerer_at_once(procs)
        services.airflow_down(procs)


def _stop_triggerer_at_once(procs: list[subprocess.Popen]) -> None:
    """The triggerer told twice to stop: at the first signal it gives its trigger runner 10 s to end
    before it kills it; a second is its own way to kill the runner and exit at once
    (TriggererJobRunner._exit_gracefully). No test reads a trigger's end."""
    import os
    import signal

    from callscribe.dev import services

    triggerer = procs[[c[0] for c in services.AIRFLOW_COMPONENTS].index("triggerer")]
    for _ in range(2):
        if triggerer.poll() is None:
            os.kill(triggerer.pid, signal.SIGTERM)
            time.sleep(0.2)  # two signals at once would be one


def serialize_dags_here() -> None:
    """Parse the DAG folder in this process and serialize its DAGs as they are here (``dag.test()``
    does the same): what an earlier test's Airflow, in another environment, leaves behind."""
    from airflow.configuration import conf
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(conf.get("core", "dags_folder")), "dags-folder", None)


def serialized_zone(dag_id: str = "transcribe_calls") -> str | None:
    """The time zone of the DAG's timetable in its latest serialization, the one a backfill and the
    scheduler read; None before the first. (The DAG's next run, shown by the API, is updated at each
    parse, and may be a newer parse's than this.)"""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        latest = session.scalar(SerializedDagModel.latest_item_select_object(dag_id))
        return None if latest is None else latest.dag.timetable.serialize().get("timezone")


# ---------------------------------------------------------------- a live Airflow, driven as the UI does


@contextmanager
def airflow_reparsed(stack) -> Iterator[tuple[int, Callable[[], str]]]:
    """``airflow_running``, until the DAG processor has parsed the DAG again in this environment (an
    earlier module's Airflow may have serialized it with another zone or deadline), with the DAG
    unpaused; yields the API port and the logs."""
    from datetime import UTC, datetime

    since = datetime.now(UTC)
    with airflow_running(stack) as (running, logs):
        port = running.api_port

        def parsed() -> bool:
            last = airflow_api(port, "GET", "/dags/transcribe_calls").get("last_parsed_time")
            return (bool(last) and datetime.fromisoformat(last) > since
                    and serialized_zone() == day_zone().key)

        wait_for("the DAG to be parsed again", parsed, 300, logs)
        airflow_api(port, "PATCH", "/dags/transcribe_calls", {"is_paused": False})
        yield port, logs


@contextmanager
def airflow_for_ui_actions(stack) -> Iterator[tuple[int, Callable[[], str]]]:
    """``airflow_reparsed`` as a deployment runs it (the DAG's default deadline), with a second
    between a task's tries, so a test's marks and clears do not wait minutes for retries."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")
        mp.delenv("CALLSCRIBE_DEADLINE_HOURS", raising=False)
        with airflow_reparsed(stack) as running:
            yield running


def airflow_cancel_open_backfills(port: int, dag_id: str = "transcribe_calls") -> None:
    """Cancel a backfill an earlier module left open (its scheduler stopped before marking it
    complete): Airflow refuses a second active backfill of a DAG (409)."""
    for b in airflow_api(port, "GET", f"/backfills?dag_id={dag_id}")["backfills"]:
        if b.get("completed_at") is None:
            airflow_api(port, "PUT", f"/backfills/{b['id']}/cancel")


def airflow_trigger(port: int, day: date, at_midnight: bool = False) -> str:
    """A manual run of ``day`` (the Trigger dialog): by the ``date`` Param, or with the day's midnight
    as its logical date (a backfill finds that run by it); returns its run id."""
    body = ({"logical_date": f"{day}T00:00:00Z", "conf": {"lookback_days": 0}} if at_midnight
            else {"logical_date": None, "conf": {"date": str(day), "lookback_days": 0}})
    return airflow_api(port, "POST", "/dags/transcribe_calls/dagRuns", body)["dag_run_id"]


def airflow_finished(port: int, run_id: str, logs: Callable[[], str], timeout: float = 600) -> str:
    """The run's end state, once it is success or failed."""
    def state():
        s = airflow_api(port, "GET", f"/dags/transcribe_calls/dagRuns/{run_id}")["state"]
        return s if s in ("success", "failed") else None

    return wait_for(f"run {run_id} to finish", state, timeout, logs)


def airflow_task_running(port: int, run_id: str, task: str, logs: Callable[[], str], timeout: float = 600) -> None:
    """Until ``task`` (map index 0 of a mapped one) of the run is running: polled often, to act mid-task."""
    import urllib.error

    path = f"/dags/transcribe_calls/dagRuns/{run_id}/taskInstances/{task}" + (
        "/0" if task in ("chunk", "transcribe") else "")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = airflow_api(port, "GET", path)["state"]
        except urllib.error.HTTPError:
            state = None  # not mapped yet
        if state == "running":
            return
        assert state not in ("success", "failed", "skipped"), f"{task} ended ({state}) before it was caught running"
        time.sleep(0.3)
    pytest.fail(f"{task} of {run_id} never ran\n{logs()}")


def airflow_task_states(port: int, run_id: str) -> dict[str, str]:
    tis = airflow_api(port, "GET", f"/dags/transcribe_calls/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else ""): t["state"] for t in tis}


def day_rows(pg, day: date) -> list[sa.Row]:
    """A day's recordings (status, reason, owner, lease, loads), by key."""
    with pg.connect() as c:
        return c.execute(sa.text("SELECT object_key, status, last_error, last_run_id, lease_until, loads, attempts "
                                 "FROM recordings WHERE call_date = :d ORDER BY object_key"), {"d": day}).all()


def chunked_calls(pg, day: date, run: str, n: int, name: str = "c", duration_s: float = 1.0) -> list[int]:
    """``n`` mono calls of ``day`` registered as chunked by ``run`` (an attempt each), as the chunk
    stage leaves them before their load; returns their ids in key order of creation."""
    with pg.begin() as c:
        return c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels, duration_s, "
            "last_run_id, attempts, attempted_run_id) "
            "SELECT 'calls', :prefix || :name || '-' || g || '.wav', md5(g::text), :d, :name || '-' || g, 'chunked', "
            "1, :dur, :run, 1, :run FROM generate_series(1, :n) AS g RETURNING id"),
            {"prefix": f"calls/{day:%Y/%m/%d}/", "name": name, "d": day, "run": run, "n": n,
             "dur": duration_s}).scalars().all()
