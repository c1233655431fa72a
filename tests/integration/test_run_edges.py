"""Runs at their edges: keys at the store's length limit, Params a run cannot use, the days a verdict
judges, a day reprocessed in slices, run ids that share a work area (call days in 2093 and 2098 only)."""

from __future__ import annotations

import time
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.discovery import day_prefix
from callscribe.samples import distinct_copy, sample_files
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def _rows(pg, day: date) -> dict[str, sa.Row]:
    with pg.connect() as c:
        return {r.object_key: r for r in c.execute(sa.text(
            "SELECT id, object_key, status, last_error, attempts, loads FROM recordings WHERE call_date = :d "
            "ORDER BY id"), {"d": day})}


def test_keys_at_the_stores_length_limit_and_deep_folders_end_done(stack, s3, pg):
    """Keys of 1024 bytes (S3's limit, multi-byte too), calls in deep folders under the day and a
    folder marker: each ends in a known state once, the run is green."""
    day = date(2093, 1, 10)
    prefix = day_prefix("calls/", day)
    wav = next(f for f in sample_files() if f.suffix == ".wav")
    keys = []
    # The store here (SeaweedFS) takes at most 255 bytes a folder or file name: long keys in several.
    def long_key(char: str) -> str:
        key = prefix + "team-a/"
        while len((key + char * 80 + "/").encode()) + len("call.wav") <= 1024:
            key += char * (80 // len(char.encode()) or 1) + "/"
        fill = 1024 - len(key.encode()) - len(".wav")
        return key + char * (fill // len(char.encode())) + ".wav"
    long_ascii, long_utf8 = long_key("x"), long_key("通")
    deep = prefix + "/".join(f"d{i}" for i in range(60)) + "/call.wav"
    nested_day = prefix + "archive/2093/01/09/call.wav"
    for i, key in enumerate([long_ascii, long_utf8, deep, nested_day]):
        assert len(key.encode()) <= 1024, len(key.encode())
        s3.put_bytes(s3.uri(key), distinct_copy(wav.read_bytes(), wav.suffix, 100 + i))
        keys.append(key)
    s3.put_bytes(s3.uri(prefix + "team-b/"), b"")  # a folder marker ("Create folder" in a console)
    listed = {o.key for o in s3.list(prefix)}
    assert set(keys) <= listed, listed

    verdict = run_through(s3, pg, day, "review2-long-keys")
    assert verdict.ok, verdict.problems()
    rows = _rows(pg, day)
    for key in keys:
        assert rows[key].status == "done", (key[-40:], rows[key].status, rows[key].last_error)
        assert rows[key].loads == 1
    if prefix + "team-b/" in listed:  # a store that lists folder markers (SeaweedFS does not)
        marker = rows[prefix + "team-b/"]  # not a call: a known state with its reason, never transcribed
        assert marker.status == "quarantined" and "not a recording" in marker.last_error, marker


def _tries(dr) -> dict[str, tuple[str, int]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: (str(ti.state), ti.try_number)
                for ti in session.query(TaskInstance).filter_by(dag_id=dr.dag_id, run_id=dr.run_id)}


def test_a_run_whose_day_the_params_cannot_give_fails_report_and_verify_at_once(stack, s3, pg, monkeypatch):
    """A day the package refuses (here: a date whose lookback reaches before the year 1, which the
    Param schema takes; a scheduled run read in another zone is the same) fails discover for good.
    report and verify derive the day the same way: a retry cannot change it, so they fail at once
    instead of being retried (minutes of back-off before the run turns red and alerts)."""
    from datetime import UTC, datetime

    from callscribe.local_run import run_day

    monkeypatch.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")
    dr = run_day(date(1, 1, 2), {"lookback_days": 3}, logical_date=datetime(2093, 1, 12, tzinfo=UTC))
    tries = _tries(dr)
    assert tries["discover"] == ("failed", 1), tries
    assert tries["report"] == ("failed", 1), tries
    assert tries["verify"] == ("failed", 1), tries


def test_the_verdict_judges_the_days_its_discover_listed_not_a_later_param_default(stack, s3, pg, monkeypatch):
    """A scheduled run has no conf: each task takes the Params' defaults from the DAG file as its own
    worker parses it (CALLSCRIBE_LOOKBACK_DAYS read there). A deploy that changes the lookback (the
    setting, or a package with another default) while a run is in flight, or workers whose settings
    differ, gives verify other days than discover listed. The verdict must judge what the run listed:
    here discover listed its own day only, and a late upload three days back, which the run never
    listed (the next run's, with the new lookback), turned it red."""
    from callscribe import discovery, local_run

    day = date(2093, 2, 10)
    wav = next(f for f in sample_files() if f.suffix == ".wav")
    s3.put_bytes(s3.uri(day_prefix("calls/", day) + "own.wav"), distinct_copy(wav.read_bytes(), wav.suffix, 201))
    late = day_prefix("calls/", date(2093, 2, 8)) + "late.wav"
    s3.put_bytes(s3.uri(late), distinct_copy(wav.read_bytes(), wav.suffix, 202))

    dag = local_run.get_dag()
    assert dag.params["lookback_days"] == 0  # the suite's CALLSCRIBE_LOOKBACK_DAYS
    real = discovery.discover

    def discover_then_redeploy(*a, **kw):
        out = real(*a, **kw)
        # What verify's worker parses after the deploy: CALLSCRIBE_LOOKBACK_DAYS=3.
        dag.task_dict["verify"].params["lookback_days"] = 3
        return out

    monkeypatch.setattr(local_run, "get_dag", lambda: dag)
    monkeypatch.setattr(discovery, "discover", discover_then_redeploy)
    dr = local_run.run_day(day)
    tries = _tries(dr)
    assert str(dr.state).rsplit(".", 1)[-1].lower() == "success", tries
    rows = _rows(pg, day)
    assert [r.status for r in rows.values()] == ["done"]
    assert _rows(pg, date(2093, 2, 8)) == {}  # never listed by this run: the next run's


def _slice(s3, pg, day: date, run: str, **claim) -> list[int]:
    """One run of the day through the pipeline's functions with the given claim Params; returns the ids
    it took."""
    from callscribe import discovery, loading
    from tests.integration.helpers import chunk_to_shards

    ids = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False, **claim)
    if ids:
        _, jobs, _ = chunk_to_shards(s3, pg, ids, run)
        loading.load_jobs(s3, pg, jobs, run)
    discovery.close_run(pg, run)
    return ids


def test_a_day_reprocessed_in_slices_reaches_every_call(stack, s3, pg):
    """`reprocess` with `max_recordings` (a day redone with a new engine a slice a night, to bound the
    GPU time): each run must take calls the slices before did not, or the same first calls are
    transcribed again every time, the rest never, and every run is green."""
    from tests.integration.helpers import upload_day

    day = date(2093, 3, 5)
    n = upload_day(s3, day)
    assert n == 3
    assert len(_slice(s3, pg, day, "review2-slices-first")) == 3
    taken = [_slice(s3, pg, day, f"review2-slice-{k}", reprocess=True, max_recordings=1) for k in range(3)]
    assert all(len(t) == 1 for t in taken), taken
    assert len({t[0] for t in taken}) == 3, f"the slices took {taken}: the same call again"
    assert sorted(r.loads for r in _rows(pg, day).values()) == [2, 2, 2]


def test_two_runs_whose_ids_differ_only_in_replaced_characters_keep_their_work_apart(stack, s3, pg):
    """A run id given in the Trigger form or the REST API may hold any of [A-Za-z0-9_.~:+-] (Airflow's
    default allowed_run_id_pattern); config.run_key maps '~', ':' and '+' to '_', so "redo:2093-03-20"
    and "redo+2093-03-20" (or a typed "manual__2093-03-20T00_00_00_00_00" beside Airflow's own
    "manual__2093-03-20T00:00:00+00:00") are one work area. Two such runs write each other's chunk
    manifests, job manifests and shards: the second run's chunk task overwrote the first's manifest
    before the first planned its jobs, and the first planned (and transcribed) the second's calls, its
    own never. The second run is refused at discover now, before it lists or writes anything."""
    from callscribe import discovery, pipeline, reporting
    from callscribe.config import run_key
    from callscribe.manifests import JobManifest

    a, b = "review2-redo:2093-03-20", "review2-redo+2093-03-20"
    assert run_key(a) == run_key(b)
    wav = next(f for f in sample_files() if f.suffix == ".wav")
    ids = {}
    for run, day, i in ((a, date(2093, 3, 20), 301), (b, date(2093, 3, 21), 302)):
        s3.put_bytes(s3.uri(day_prefix("calls/", day) + "call.wav"), distinct_copy(wav.read_bytes(), wav.suffix, i))
        try:  # as the discover task does first
            reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny", reporting.run_source(s3.bucket,
                                                                                                      "calls/"))
        except reporting.ForeignRun as exc:
            assert run == b and a in str(exc) and "another run id" in str(exc), exc
            continue
        ids[run] = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    assert b not in ids, "the second run with the same work area was not refused"
    (job_a,) = pipeline.plan_jobs(s3, [pipeline.chunk_group(s3, pg, ids[a], a, 0)], a, "whisper-tiny")
    planned = [r.recording_id for r in JobManifest.model_validate_json(s3.get_bytes(job_a)).recordings]
    assert planned == ids[a]
    # The refused run still reports (its report task runs whatever discover did), and that does not
    # lock the first run out: cleared, it lists again (its own run id is not another run).
    reporting.report_run(pg, b, "transcribe_calls", date(2093, 3, 21), "whisper-tiny", store=s3,
                         source=reporting.run_source(s3.bucket, "calls/"))
    reporting.run_listed(pg, a, "transcribe_calls", date(2093, 3, 20), "whisper-tiny",
                         reporting.run_source(s3.bucket, "calls/"))


def test_the_verdict_judges_the_day_its_discover_listed_not_one_read_in_a_zone_changed_since(
        stack, s3, pg, monkeypatch):
    """A run's day is its logical date read in CALLSCRIBE_TIMEZONE by each task. A deploy that changes the
    zone while a manual run is in flight (or workers set apart) gives verify the day before: a call of the
    day discover listed and lost was not judged, and the run was green."""
    from callscribe import discovery, local_run

    day = date(2098, 2, 10)
    wav = next(f for f in sample_files() if f.suffix == ".wav")
    key = day_prefix("calls/", day) + "own.wav"
    s3.put_bytes(s3.uri(key), distinct_copy(wav.read_bytes(), wav.suffix, 211))
    time.sleep(1.1)  # listed in a later second than its upload (one in the listing's own second is late)
    real = discovery.discover

    def discover_then_rezone(*a, **kw):
        out = real(*a, **kw)
        with pg.begin() as c:  # a registration that went missing: the verdict must see it
            c.execute(sa.text("DELETE FROM recordings WHERE object_key = :k"), {"k": key})
        monkeypatch.setenv("CALLSCRIBE_TIMEZONE", "America/New_York")  # what later tasks' workers read
        return out

    monkeypatch.setattr(discovery, "discover", discover_then_rezone)
    monkeypatch.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")
    dr = local_run.run_day(day)
    tries = _tries(dr)
    assert str(dr.state).rsplit(".", 1)[-1].lower() == "failed", tries
    assert tries["verify"] == ("failed", 1), tries
