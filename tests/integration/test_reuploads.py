"""What operators do to a day after its run: upload a key again (wrong file, a fix, a broken
file), restore an earlier version, run a few calls by hand, lose a work file. Each sequence
once left a day red for ever, or loaded nothing; each must end with the bucket's current
content transcribed once, or in a known state with its reason, and the runs green.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, loading, pipeline
from callscribe.audit import audit_day
from callscribe.config import s3_settings
from callscribe.discovery import day_prefix
from callscribe.samples import distinct_copy, sample_dir
from tests.integration.helpers import key_versions as _versions
from tests.integration.helpers import record_clean, upload_day
from tests.integration.helpers import run_through as _run

pytestmark = pytest.mark.integration

CALL_A = sample_dir() / "call-0003.wav"
CALL_B = sample_dir() / "call-0001.wav"


def _state(dr) -> str:
    return str(dr.state).rsplit(".", 1)[-1].lower()


def _etag(s3, key: str) -> str:
    return next(iter(s3.list(key))).etag


def test_a_key_restored_to_its_earlier_content_is_transcribed_again(stack, s3, pg):
    """K = A, run; K = B (the wrong file), run; K = A again (restored), run: A's transcript, green."""
    from callscribe.cli import run_day

    day = date(2025, 3, 3)
    key = day_prefix("calls/", day) + "k.wav"
    for content in (CALL_A, CALL_B, CALL_A):
        s3.put_bytes(s3.uri(key), content.read_bytes())
        assert _state(run_day(day)) == "success"
        live = [v for v in _versions(pg, day, key) if v.status != "superseded"]
        assert [(v.etag, v.status) for v in live] == [(_etag(s3, key), "done")]
        assert live[0].segments > 0
        assert all(v.segments == 0 for v in _versions(pg, day, key) if v.status == "superseded")
    record_clean("a key restored to its earlier content", s3, pg, day, 1, 1)


def test_a_broken_upload_over_a_done_call_retires_the_old_transcript(stack, s3, pg):
    """K done; K uploaded again as bytes that are not audio: the new version is quarantined with its
    reason, the old transcript (of content no longer in the bucket) leaves search, and every run is
    green; restoring a good file brings a transcript back."""
    from callscribe.cli import run_day

    day = date(2025, 3, 5)
    key = day_prefix("calls/", day) + "k.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    assert _state(run_day(day)) == "success"
    s3.put_bytes(s3.uri(key), b"RIFF not really a wav file" * 20)
    assert [_state(run_day(day)) for _ in range(2)] == ["success", "success"]
    old, new = _versions(pg, day, key)
    assert new.status == "quarantined" and "cannot decode" in new.last_error and new.etag == _etag(s3, key)
    assert old.status == "superseded" and old.segments == 0
    assert "could not be transcribed" in old.last_error
    record_clean("a broken upload over a done call", s3, pg, day, 1, 1)

    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())  # the original restored
    assert _state(run_day(day)) == "success"
    live = [v for v in _versions(pg, day, key) if v.status not in ("superseded",)]
    assert [v.status for v in live] == ["done"] and live[0].segments > 0
    record_clean("a good file restored over a broken upload", s3, pg, day, 1, 0)


def test_a_run_limited_by_max_recordings_is_green_and_leaves_the_rest_to_the_next(stack, s3, pg):
    from callscribe.cli import run_day

    day = date(2025, 3, 7)
    prefix = day_prefix("calls/", day)
    for i in range(3):
        s3.put_bytes(s3.uri(f"{prefix}c{i}.wav"), distinct_copy(CALL_A.read_bytes(), ".wav", i))
    dr = run_day(day, {"max_recordings": 1, "lookback_days": 0})
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT status, last_error, last_run_id FROM recordings WHERE call_date = :d "
                                 "ORDER BY id"), {"d": day}).all()
        report = c.execute(sa.text("SELECT recordings_found, recordings_done, recordings_unfinished FROM pipeline_runs "
                                   "WHERE run_id = :r"), {"r": dr.run_id}).one()
    assert _state(dr) == "success"
    assert [r.status for r in rows] == ["done", "pending", "pending"]
    assert all(r.last_error is None and r.last_run_id is None for r in rows[1:])  # not this run's to finish
    assert tuple(report) == (1, 1, 0)
    assert _state(run_day(day, {"lookback_days": 0})) == "success"
    record_clean("a run limited by max_recordings, then a whole run", s3, pg, day, 3, 0)


def test_a_reupload_between_listing_and_chunking_is_the_next_runs(stack, s3, pg, monkeypatch):
    """New content that arrives after the run listed the bucket is not the run's to answer for."""
    from callscribe.cli import run_day

    day = date(2025, 4, 5)
    key = day_prefix("calls/", day) + "k.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    chunk_group = pipeline.chunk_group

    def upload_again_first(store, engine, ids, *args, **kw):
        s3.put_bytes(s3.uri(key), CALL_B.read_bytes())
        return chunk_group(store, engine, ids, *args, **kw)

    monkeypatch.setattr(pipeline, "chunk_group", upload_again_first)
    assert _state(run_day(day)) == "success"
    monkeypatch.setattr(pipeline, "chunk_group", chunk_group)
    assert _state(run_day(day)) == "success"
    live = [v for v in _versions(pg, day, key) if v.status != "superseded"]
    assert [(v.etag, v.status) for v in live] == [(_etag(s3, key), "done")]
    record_clean("a re-upload between listing and chunking", s3, pg, day, 1, 1)


def test_a_lost_job_manifest_holds_back_only_its_own_shard(stack, s3, pg, monkeypatch):
    day = date(2025, 4, 9)
    upload_day(s3, day, copies=2)
    monkeypatch.setenv("CALLSCRIBE_JOB_SLOTS", "3")
    monkeypatch.setenv("CALLSCRIBE_JOB_MIN_AUDIO_S", "1")
    run = "reuploads-lost-job-manifest"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny")
    assert len(jobs) >= 2
    for job in jobs:
        pipeline.run_worker_local(job, s3_settings())
    lost = jobs[-1]
    s3.put_bytes(lost, b"{not json")  # damaged after the workers ran
    with pytest.raises(loading.LoadIncomplete, match="job manifest"):
        loading.load_jobs(s3, pg, jobs, run)
    with pg.connect() as c:
        states = c.execute(sa.text("SELECT status, count(*) FROM recordings WHERE call_date = :d GROUP BY 1"),
                           {"d": day}).all()
    done = dict(states).get("done", 0)
    assert 0 < done < len(ids)  # the other jobs' shards loaded
    assert dict(states).get("chunked", 0) == len(ids) - done  # the lost job's: the next run takes them
    discovery.close_run(pg, run)


def test_the_audit_still_says_doubled_when_two_versions_hold_transcripts(stack, s3, pg):
    from callscribe.cli import run_day

    day = date(2025, 4, 11)
    key = day_prefix("calls/", day) + "k.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    assert _state(run_day(day)) == "success"
    s3.put_bytes(s3.uri(key), CALL_B.read_bytes())
    assert _state(run_day(day)) == "success"
    old, new = _versions(pg, day, key)
    with pg.begin() as c:  # a planted fault: the old version back as done beside the new one
        c.execute(sa.text("UPDATE recordings SET status = 'done' WHERE id = :i"), {"i": old.id})
    try:
        result = audit_day(s3, pg, day)
    finally:
        with pg.begin() as c:  # the fault taken out again, for the tests after this one
            c.execute(sa.text("UPDATE recordings SET status = 'superseded' WHERE id = :i"), {"i": old.id})
    assert result.duplicated == [f"{key}: 2 versions done"]
    assert audit_day(s3, pg, day).clean


# ---------------------------------------------------------------- found in a review of the fixes above


def _restored_before_transcribed(s3, pg, day: date, tag: str) -> str:
    """K = A, transcribed; K = B, taken by a run; A put back before that run chunks B. Returns K."""
    key = day_prefix("calls/", day) + "k.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    assert _run(s3, pg, day, f"{tag}-r1").ok
    s3.put_bytes(s3.uri(key), CALL_B.read_bytes())
    _run(s3, pg, day, f"{tag}-r2", before_chunk=lambda: s3.put_bytes(s3.uri(key), CALL_A.read_bytes()))
    return key


def test_a_key_restored_before_its_new_upload_was_transcribed_keeps_its_transcript(stack, s3, pg):
    """K = A, done; K = B, registered; A put back before B is chunked. B's content is gone, so B must
    not fail run after run until, out of attempts, it retires the transcript of what the bucket holds."""
    day = date(2025, 6, 3)
    key = _restored_before_transcribed(s3, pg, day, "restore")
    verdicts = [_run(s3, pg, day, f"restore-r{i}") for i in (3, 4, 5)]
    a, b = _versions(pg, day, key)
    assert a.etag == _etag(s3, key) and a.status == "done" and a.segments > 0
    assert b.status == "superseded" and "restored" in b.last_error
    assert all(v.ok for v in verdicts), [v.problems() for v in verdicts]
    record_clean("a key restored before its new upload was transcribed", s3, pg, day, 1, 1)


def test_a_broken_upload_whose_run_died_before_its_report_is_retired_by_the_next_run(stack, s3, pg):
    day = date(2025, 6, 5)
    key = day_prefix("calls/", day) + "k.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    assert _run(s3, pg, day, "dead-r1").ok
    s3.put_bytes(s3.uri(key), b"RIFF not really a wav file" * 20)
    _run(s3, pg, day, "dead-r2", close=False)  # killed before its report: no close_run
    with pg.begin() as c:  # and its leases ran out before the next daily run
        c.execute(sa.text("UPDATE recordings SET lease_until = now() - interval '1 hour' "
                          "WHERE last_run_id = 'dead-r2' AND lease_until IS NOT NULL"))
    stale = audit_day(s3, pg, day)
    assert [u.split(":")[0] for u in stale.unfinished] == [key]  # an operator's audit says so meanwhile
    assert _run(s3, pg, day, "dead-r3").ok
    old, new = _versions(pg, day, key)
    assert new.status == "quarantined" and old.status == "superseded" and old.segments == 0
    record_clean("a broken upload whose run died before its report", s3, pg, day, 1, 1)


def test_erasing_a_key_restored_to_earlier_content_erases_every_version(stack, s3, pg):
    """A -> B -> A: the first version's row must stay findable, or erasure leaves its speech pack and
    its rows in the first run's shards."""
    from callscribe import reporting
    from callscribe.erasure import erase
    from callscribe.manifests import from_parquet
    from callscribe.pipeline import pack_keys, run_key

    day = date(2025, 6, 7)
    key = day_prefix("calls/", day) + "k.wav"
    runs = []
    for i, content in enumerate((CALL_A, CALL_B, CALL_A)):
        s3.put_bytes(s3.uri(key), content.read_bytes())
        run = f"erase-restored-r{i}"
        reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny")
        assert _run(s3, pg, day, run).ok
        runs.append(run)
    versions = _versions(pg, day, key)
    assert len(versions) == 3 and [v.status for v in versions] == ["superseded", "superseded", "done"]
    first = versions[0].id
    done = erase(s3, pg, key, actor="test")
    assert first in done.recording_ids
    assert not [u for u in (s3.uri(k) for k in pack_keys(day, first)) if s3.exists(u)]
    for obj in s3.list(f"_callscribe/runs/{run_key(runs[0])}/"):
        if obj.key.endswith(".parquet"):
            df, _ = from_parquet(s3.get_bytes(s3.uri(obj.key)))
            assert "recording_id" not in df.columns or not (df["recording_id"] == first).any(), obj.key


# ---------------------------------------------------------------- a restore makes the newest row a superseded one

BROKEN = b"RIFF not really a wav file" * 20


def _put_then_two_runs_end_with_it(s3, pg, day: date, key: str, content, tag: str) -> None:
    """``content`` into K, two runs: one live version, the bucket's, done, and both runs green."""
    s3.put_bytes(s3.uri(key), content.read_bytes())
    verdicts = [_run(s3, pg, day, f"{tag}-{i}") for i in (1, 2)]
    live = [(v.etag, v.status) for v in _versions(pg, day, key) if v.status not in ("superseded", "deleted")]
    assert live == [(_etag(s3, key), "done")]
    assert all(v.ok for v in verdicts), [v.problems() for v in verdicts]


def test_an_upload_superseded_by_a_restore_is_registered_when_it_comes_back(stack, s3, pg):
    day = date(2025, 8, 3)
    key = _restored_before_transcribed(s3, pg, day, "back")
    assert _run(s3, pg, day, "back-r3").ok
    _put_then_two_runs_end_with_it(s3, pg, day, key, CALL_B, "back-again")  # B again


def test_contents_flipped_back_and_forth_end_with_the_buckets(stack, s3, pg):
    day = date(2025, 8, 4)
    key = day_prefix("calls/", day) + "k.wav"
    for content in (CALL_A, CALL_B):
        s3.put_bytes(s3.uri(key), content.read_bytes())
        assert _run(s3, pg, day, f"flip-{content.stem}").ok
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    discovery.discover(s3, pg, day, "calls/", "flip-discover-only", is_live=lambda r: False)  # lists A, dies
    discovery.close_run(pg, "flip-discover-only")
    s3.put_bytes(s3.uri(key), CALL_B.read_bytes())
    assert _run(s3, pg, day, "flip-r3").ok
    _put_then_two_runs_end_with_it(s3, pg, day, key, CALL_A, "flip-back")


def test_a_broken_upload_restored_over_a_later_one_still_retires_the_old_transcript(stack, s3, pg):
    day = date(2025, 8, 5)
    key = day_prefix("calls/", day) + "k.wav"
    s3.put_bytes(s3.uri(key), CALL_A.read_bytes())
    assert _run(s3, pg, day, "broken-back-r1").ok
    s3.put_bytes(s3.uri(key), BROKEN)
    _run(s3, pg, day, "broken-back-r2", close=False)  # killed before its report
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET lease_until = now() - interval '1 hour' "
                          "WHERE last_run_id = 'broken-back-r2' AND lease_until IS NOT NULL"))
    s3.put_bytes(s3.uri(key), CALL_B.read_bytes())
    _run(s3, pg, day, "broken-back-r3", before_chunk=lambda: s3.put_bytes(s3.uri(key), BROKEN))
    verdicts = [_run(s3, pg, day, f"broken-back-r{i}") for i in (4, 5)]
    first = _versions(pg, day, key)[0]
    assert first.status == "superseded" and first.segments == 0
    assert all(v.ok for v in verdicts), [v.problems() for v in verdicts]
    assert audit_day(s3, pg, day).clean


def test_a_reprocess_run_redoes_a_key_whose_newer_upload_a_restore_superseded(stack, s3, pg):
    day = date(2025, 8, 7)
    key = _restored_before_transcribed(s3, pg, day, "redo")
    assert _run(s3, pg, day, "redo-r3").ok
    a = _versions(pg, day, key)[0]
    assert a.status == "done"
    ids = discovery.discover(s3, pg, day, "calls/", "redo-reprocess", reprocess=True, is_live=lambda r: False)
    discovery.close_run(pg, "redo-reprocess")
    assert a.id in ids


def test_a_listing_older_than_a_new_upload_does_not_take_it_for_a_restore(stack, pg):
    """Two runs of a day at once: one lists K = A, the other then lists K = B and registers it, and only
    then the first registers its (stale) listing. That is not A put back: B stays to be transcribed.
    A listing that began after B was registered and still shows A is a restore."""
    from callscribe.storage import ObjectInfo

    day = date(2025, 8, 9)
    key = day_prefix("calls/", day) + "k.wav"

    def listing(etag: str) -> list[ObjectInfo]:
        return [ObjectInfo("calls", key, etag, 10)]

    def now():
        with pg.connect() as c:
            return c.execute(sa.text("SELECT clock_timestamp()")).scalar_one()

    discovery.register(pg, listing("a"), day, "stale-r1")
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'done' WHERE object_key = :k"), {"k": key})
    stale_listed_at = now()  # the first run lists K = A ...
    discovery.register(pg, listing("b"), day, "stale-r2", listed_at=now())  # ... the second registers B
    discovery.register(pg, listing("a"), day, "stale-r1", listed_at=stale_listed_at)
    assert [(v.etag, v.status) for v in _versions(pg, day, key)] == [("a", "done"), ("b", "pending")]
    discovery.register(pg, listing("a"), day, "stale-r3", listed_at=now())  # A really put back
    assert [(v.etag, v.status) for v in _versions(pg, day, key)] == [("a", "done"), ("b", "superseded")]
