"""Recordings deleted from the bucket leave search; erasure on request; the work-area sweep.

Real DAG runs (dag.test()) against the embedded Postgres and object store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from callscribe import discovery, retention
from callscribe.audit import audit_day, key_hash
from callscribe.discovery import day_prefix
from callscribe.erasure import NothingToErase, erase
from callscribe.manifests import from_parquet
from callscribe.pipeline import pack_key, run_key
from callscribe.samples import sample_dir
from callscribe.search import SearchFilters, search
from callscribe.storage import ObjectInfo

pytestmark = pytest.mark.integration
DELETED_DAY = date(2026, 12, 10)
ERASED_DAY = date(2026, 12, 11)
GUARD_DAY = date(2026, 12, 12)
FILES = ("call-0002.mp3", "call-0003.wav")
CLI = [sys.executable, "-m", "callscribe.cli"]


def _upload(s3, day: date, name: str) -> str:
    key = day_prefix("calls/", day) + name
    s3.put_bytes(s3.uri(key), (sample_dir() / name).read_bytes())
    return key


def _run(day: date):
    from callscribe.local_run import run_day

    dr = run_day(day)
    assert str(dr.state).endswith("success"), dr.state
    return dr


def _row(pg, key: str):
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT r.id, r.status, r.loads, r.last_error, "
            "(SELECT count(*) FROM segments s WHERE s.recording_id = r.id) AS segments, "
            "(SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts "
            "FROM recordings r WHERE r.object_key = :k ORDER BY r.id DESC LIMIT 1"), {"k": key}).one_or_none()


def _a_word(pg, rid: int) -> str:
    with pg.connect() as c:
        text = c.execute(sa.text("SELECT string_agg(text_redacted, ' ') FROM segments WHERE recording_id = :r"),
                         {"r": rid}).scalar_one()
    return max(text.split(), key=len).strip(".,?!")


def _hits(pg, word: str, day: date, key: str) -> int:
    hits = search(pg, word, limit=100, filters=SearchFilters(from_date=day, to_date=day, fuzzy=False))
    return sum(h["object_key"] == key for h in hits)


def test_a_recording_deleted_from_the_bucket_leaves_search_and_comes_back_when_uploaded_again(stack, s3, pg):
    gone, kept = (_upload(s3, DELETED_DAY, f) for f in FILES)
    _run(DELETED_DAY)
    before = _row(pg, gone)
    assert before.status == "done" and before.segments > 0
    word = _a_word(pg, before.id)
    assert _hits(pg, word, DELETED_DAY, gone) >= 1

    s3.delete(s3.uri(gone))
    _run(DELETED_DAY)  # the next discovery of its day
    after = _row(pg, gone)
    assert (after.id, after.status, after.segments, after.transcripts) == (before.id, "deleted", 0, 0)
    assert "deleted from the bucket" in after.last_error
    assert _hits(pg, word, DELETED_DAY, gone) == 0
    assert _row(pg, kept).status == "done" and _row(pg, kept).segments > 0
    audit = audit_day(s3, pg, DELETED_DAY)
    assert audit.clean and audit.states["deleted"] == 1, audit.as_dict()

    _upload(s3, DELETED_DAY, FILES[0])  # the same content again: transcribed again, once
    _run(DELETED_DAY)
    back = _row(pg, gone)
    assert (back.id, back.status, back.loads) == (before.id, "done", 1) and back.segments == before.segments
    assert _hits(pg, word, DELETED_DAY, gone) >= 1
    assert audit_day(s3, pg, DELETED_DAY).clean


def _states(pg, day: date) -> dict[str, str]:
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT object_key, status FROM recordings WHERE call_date = :d ORDER BY id"),
                         {"d": day})
        return {k.rsplit("/", 1)[1]: st for k, st in rows}


def test_a_listing_missing_most_of_a_day_is_not_taken_as_deletions(stack, pg):
    prefix = day_prefix("calls/", GUARD_DAY)
    objects = [ObjectInfo("calls", f"{prefix}call-{i:02d}.wav", f"e{i}", 10) for i in range(12)]
    in_bucket = {o.key for o in objects}

    def deletions(**kw):
        return discovery.Deletions("calls", prefix, lambda key: key not in in_bucket, **kw)

    discovery.register(pg, objects, GUARD_DAY, "guard-1", deletions())
    with pytest.raises(discovery.DeletionRefused, match="11 of the 12 recordings"):
        discovery.register(pg, objects[:1], GUARD_DAY, "guard-2", deletions())
    assert set(_states(pg, GUARD_DAY).values()) == {"pending"}  # nothing forgotten, nothing half done
    discovery.register(pg, objects[:1], GUARD_DAY, "guard-2", deletions(refuse=False))  # an earlier day's: logged
    assert set(_states(pg, GUARD_DAY).values()) == {"pending"}

    # A listing older than rows another run registered since: only what the store confirms gone goes.
    in_bucket -= {objects[10].key, objects[11].key}
    discovery.register(pg, objects[:9], GUARD_DAY, "guard-3", deletions())
    states = _states(pg, GUARD_DAY)
    assert [states[f"call-{i:02d}.wav"] for i in (9, 10, 11)] == ["pending", "deleted", "deleted"]
    # A listing of another prefix of the day forgets nothing outside it.
    discovery.register(pg, [], GUARD_DAY, "guard-4", discovery.Deletions("calls", prefix + "other/", lambda k: True))
    assert list(_states(pg, GUARD_DAY).values()).count("deleted") == 2

    # Deleted, replaced by other content, then the first content is back: it is the newest version.
    key = objects[10].key
    discovery.register(pg, [*objects[:10], ObjectInfo("calls", key, "other", 10)], GUARD_DAY, "guard-5", deletions())
    discovery.register(pg, objects[:11], GUARD_DAY, "guard-6", deletions())
    with pg.connect() as c:
        versions = c.execute(sa.text("SELECT etag, status FROM recordings WHERE object_key = :k ORDER BY id"),
                             {"k": key}).all()
    # One live row, the content listed; the first row stays (erasure finds it), its etag given up.
    assert [(etag.split("#")[0], status) for etag, status in versions] == [
        ("e10", "deleted"), ("other", "superseded"), ("e10", "pending")]
    assert versions[0][0].startswith("e10#")


def test_a_run_whose_listing_lacks_its_day_is_red_until_told_the_deletion_is_real(stack, pg, monkeypatch):
    """An empty bucket where a day had calls (wrong credentials, a wiped bucket): the run says so
    and forgets nothing; a run with accept_mass_deletion takes it as deletions and is green."""
    from callscribe.local_run import run_day

    monkeypatch.setenv("CALLSCRIBE_RETRY_DELAY_S", "1")
    day = date(2026, 12, 15)
    with pg.begin() as c:
        for i in range(12):
            c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels) "
                "VALUES ('calls', :k, 'e', :d, :i, 'done', 1)"), {"k": f"{day_prefix('calls/', day)}c{i}.wav",
                                                                  "d": day, "i": f"c{i}"})
    red = run_day(day)
    assert str(red.state).endswith("failed")
    assert set(_states(pg, day).values()) == {"done"}  # nothing forgotten on a listing not believed
    green = run_day(day, conf={"accept_mass_deletion": True})
    assert str(green.state).endswith("success")
    assert set(_states(pg, day).values()) == {"deleted"}


def _work_area_ids(s3) -> set[int]:
    """Recording ids found in any shard or manifest of the work area."""
    found = set()
    for obj in s3.list("_callscribe/runs/"):
        try:
            if obj.key.endswith(".parquet"):
                df, meta = from_parquet(s3.get_bytes(s3.uri(obj.key)))
                if "recording_id" in df.columns:
                    found |= set(df["recording_id"].astype(int))
                found |= {e["recording_id"] for e in meta.get("recordings", [])}
            elif obj.key.endswith(".json") and not obj.key.endswith(".failed.json"):
                body = json.loads(s3.get_bytes(s3.uri(obj.key)))
                found |= {e["recording_id"] for part in ("chunks", "recordings") for e in body.get(part, [])}
        except ValueError:  # a file other tests damaged on purpose (test_reuploads): it names no call
            continue
    return found


def test_erasure_removes_a_recording_everywhere_and_it_stays_erased(stack, s3, pg):
    key, other = (_upload(s3, ERASED_DAY, f) for f in FILES)
    _run(ERASED_DAY)
    rid, other_id = _row(pg, key).id, _row(pg, other).id
    with pg.begin() as c:
        for r in (rid, other_id):
            c.execute(sa.text("SELECT analytics.log_access('ana', 'play', NULL, :r)"), {"r": r})
    assert {rid, other_id} <= _work_area_ids(s3)
    pack = s3.uri(pack_key(ERASED_DAY, rid, "wav"))  # the default format
    assert s3.exists(pack)
    # A pack from a run made while CALLSCRIBE_PACK_FORMAT was flac: the same speech, gone too.
    older = s3.uri(pack_key(ERASED_DAY, rid, "flac"))
    s3.put_bytes(older, b"fLaC")

    dry = subprocess.run([*CLI, "erase", "--key", key, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0 and dry.stdout.startswith("would erase 1 version(s)"), dry.stderr
    assert _row(pg, key).status == "done" and s3.exists(pack)  # a dry run changes nothing

    done = erase(s3, pg, key, actor="dpo@example.com")
    assert done.segments > 0 and done.access_entries == 1 and done.packs == [pack, older] and done.rewritten
    assert _row(pg, key) is None and not s3.exists(pack) and not s3.exists(older)
    assert rid not in _work_area_ids(s3) and other_id in _work_area_ids(s3)
    assert s3.exists(s3.uri(key))  # the audio is the customer's unless asked
    # Its run's `load` cleared in the UI after the erasure: the scrubbed shard still loads, as one
    # whole with its job, and brings nothing of the erased call back.
    from callscribe.loading import load_jobs

    with pg.connect() as c:
        run_id = c.execute(sa.text("SELECT last_run_id FROM recordings WHERE id = :i"), {"i": other_id}).scalar_one()
    jobs = [s3.uri(o.key) for o in s3.list(f"_callscribe/runs/{run_key(run_id)}/jobs/")
            if not o.key.endswith(".failed.json")]
    reloaded = load_jobs(s3, pg, jobs, run_id)
    assert jobs and not reloaded.unfinished_jobs and not reloaded.failed
    assert _row(pg, key) is None and _row(pg, other).status == "done" and _row(pg, other).segments > 0
    with pg.connect() as c:
        log = c.execute(sa.text("SELECT actor, action, recording_id, key_sha256, detail FROM access_log "
                                "WHERE recording_id IN (:a, :b) OR key_sha256 = :h ORDER BY id"),
                        {"a": rid, "b": other_id, "h": key_hash(key)}).all()
        assert c.execute(sa.text("SELECT count(*) FROM erasures WHERE key_sha256 = :h"),
                         {"h": key_hash(key)}).scalar_one() == 1
        assert c.execute(sa.text("SELECT count(*) FROM access_log WHERE detail LIKE :k OR actor LIKE :k"),
                         {"k": f"%{key}%"}).scalar_one() == 0
    assert [(e.actor, e.action, e.recording_id) for e in log] == [("ana", "play", other_id),
                                                                     ("dpo@example.com", "erase", None)]

    # Erased before it was ever discovered: it never will be.
    early = _upload(s3, ERASED_DAY, "call-0001.wav")
    assert erase(s3, pg, early, actor="dpo@example.com").recording_ids == []
    # The audio is still there, re-exported with other bytes: not transcribed again, and the run is green.
    s3.put_bytes(s3.uri(key), (sample_dir() / FILES[0]).read_bytes() + b"\0")
    _run(ERASED_DAY)
    assert _row(pg, key) is None and _row(pg, early) is None and _row(pg, other).status == "done"
    audit = audit_day(s3, pg, ERASED_DAY)
    assert audit.clean and audit.states["erased"] == 2, audit.as_dict()

    again = erase(s3, pg, key, actor="dpo@example.com")  # finishes (repeats) the clean-up, harmlessly
    assert again.finished_earlier and again.recording_ids == [rid] and again.segments == 0
    erase(s3, pg, other, actor="dpo@example.com", delete_audio=True)
    assert not s3.exists(s3.uri(other)) and _row(pg, other) is None
    assert audit_day(s3, pg, ERASED_DAY).clean
    with pytest.raises(NothingToErase):
        erase(s3, pg, day_prefix("calls/", ERASED_DAY) + "never-was.wav", actor="dpo@example.com")


def test_the_sweep_deletes_old_intermediates_but_not_what_a_live_run_holds(stack, s3, pg):
    day = date(2026, 12, 13)
    area = f"_callscribe/chunks/{day}/"
    with pg.begin() as c:
        held = c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, last_run_id, lease_until) "
            "VALUES ('calls', 'calls/2026/12/13/held.wav', 'e', :d, 'held', 'chunked', 'sweep-live-run', "
            "now() + interval '1 hour') RETURNING id"), {"d": day}).scalar_one()
    for name in (f"{held}.flac", f"{held}.wav", "1.flac", "2.wav"):
        s3.put_bytes(s3.uri(area + name), b"pack")
    live_file = s3.uri("_callscribe/runs/sweep-live-run/jobs/job-00000.json")
    s3.put_bytes(live_file, b"{}")

    later = datetime.now(UTC) + timedelta(minutes=5)
    kept = retention.sweep(s3, pg, timedelta(days=1), now=later, under=area)
    assert (kept.deleted, kept.kept_recent, kept.kept_live) == (0, 2, 2)
    dry = retention.sweep(s3, pg, timedelta(0), now=later, under=area, dry_run=True)
    assert dry.deleted == 2 and len(list(s3.list(area))) == 4
    swept = retention.sweep(s3, pg, timedelta(0), now=later, under=area)
    assert (swept.deleted, swept.kept_live) == (2, 2)
    assert sorted(o.key for o in s3.list(area)) == [f"{area}{held}.flac", f"{area}{held}.wav"]
    assert retention.sweep(s3, pg, timedelta(0), now=later, under="_callscribe/runs/sweep-live-run/").kept_live == 1
    assert s3.exists(live_file)
    with pytest.raises(ValueError, match="only deletes under"):
        retention.sweep(s3, pg, timedelta(0), under="calls/")


def test_the_maintenance_dag_runs(stack, pg):
    from airflow.dag_processing.dagbag import DagBag

    from callscribe.partitions import month_table
    from tests.integration.test_dag_integrity import REPO

    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("callscribe_maintenance")
    dr = dag.test(logical_date=datetime(2026, 12, 14, tzinfo=UTC), run_conf={"dry_run": True})
    assert str(dr.state).endswith("success")
    this = datetime.now(UTC).date().replace(day=1)
    ahead = [month_table(this), month_table((this + timedelta(days=32)).replace(day=1))]
    with pg.connect() as c:  # this month and the next made ahead of their loads
        made = c.execute(sa.text("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = "
                                 "'segments'::regclass AND inhrelid::regclass::text = ANY(:names)"),
                         {"names": ahead}).scalars().all()
    assert sorted(made) == sorted(ahead)
