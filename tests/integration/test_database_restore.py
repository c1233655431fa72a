"""The callscribe database restored to an earlier point (a failed disk, a migration rolled back by
a restore, a DBA's point-in-time recovery) while the bucket and Airflow keep their state.

Real DAG runs (dag.test()) against a database of the test's own, backed up and restored with the
server's pg_dump and pg_restore (tests/integration/restore.py); the bucket is the session's.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.audit import audit_day, key_hash
from callscribe.discovery import day_prefix
from callscribe.erasure import erase
from callscribe.manifests import from_parquet
from callscribe.pipeline import run_key
from callscribe.samples import sample_dir
from tests.integration.restore import bucket_of_its_own

pytestmark = pytest.mark.integration
FILES = ("call-0002.mp3", "call-0003.wav")
CLI = [sys.executable, "-m", "callscribe.cli"]
OWN_BUCKET = "callsrestore"


@pytest.fixture
def own(s3, restorable):
    """The test's bucket, the pipeline's configured one while it runs (restore.bucket_of_its_own): its
    `sweep --after-restore` must not sweep the session's bucket, nor its notes reach the session's runs."""
    with bucket_of_its_own(s3, OWN_BUCKET) as store:
        yield store


def _upload(own, day: date, name: str) -> str:
    key = day_prefix("calls/", day) + name
    own.put_bytes(own.uri(key), (sample_dir() / name).read_bytes())
    return key


def _run(day: date, **conf):
    from callscribe.local_run import run_day

    return run_day(day, conf or None)


def _green(dr) -> None:
    assert str(dr.state).endswith("success"), dr.state


def _rows(engine, key: str) -> list[sa.Row]:
    with engine.connect() as c:
        return c.execute(sa.text(
            "SELECT r.id, r.status, (SELECT count(*) FROM segments s WHERE s.recording_id = r.id) AS segments "
            "FROM recordings r WHERE r.object_key = :k ORDER BY r.id"), {"k": key}).all()


def _erased(engine, key: str) -> bool:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM erasures WHERE key_sha256 = :h"),
                         {"h": key_hash(key)}).scalar_one() == 1


def test_a_call_erased_after_the_backup_point_is_not_transcribed_again_after_the_restore(stack, own, restorable):
    """Backed up before the day's run; the run transcribes, a call is erased; the database is restored.
    The next run of the day (its run cleared, or a later run's lookback) must not transcribe it again."""
    day = date(2041, 3, 2)
    erased, kept = (_upload(own, day, f) for f in FILES)
    backup = restorable.backup()
    _green(_run(day))
    erase(own, restorable.engine, erased, actor="dpo@example.com")
    assert _rows(restorable.engine, erased) == []

    restorable.restore(backup)
    _green(_run(day))
    assert _rows(restorable.engine, erased) == [], "the erased call was registered and transcribed again"
    assert _erased(restorable.engine, erased)
    assert [r.status for r in _rows(restorable.engine, kept)] == ["done"]
    assert audit_day(own, restorable.engine, day).clean


def test_a_call_erased_after_the_backup_point_leaves_search_again_at_the_next_listing_of_its_day(
        stack, own, restorable):
    """Backed up after the day was transcribed, before the erasure: the restore brings the erased call's
    transcript back into search. The next discovery of its day takes it out again."""
    day = date(2041, 3, 3)
    erased, kept = (_upload(own, day, f) for f in FILES)
    _green(_run(day))
    backup = restorable.backup()
    erase(own, restorable.engine, erased, actor="dpo@example.com")

    restorable.restore(backup)
    assert _rows(restorable.engine, erased)[0].segments > 0  # what a restore does: the text is back
    _green(_run(day))
    assert _rows(restorable.engine, erased) == [], "the erased call's transcript is searchable again"
    assert _erased(restorable.engine, erased)
    assert [r.status for r in _rows(restorable.engine, kept)] == ["done"]


def test_after_a_restore_erase_reapply_takes_out_erasures_of_days_no_run_lists_again(stack, own, restorable):
    """The runbook's step: a day older than any run's lookback is never listed again, so only
    `callscribe erase --reapply` takes its erased call (restored with the database) out of search; a
    key erased before any run registered it stays blocked too."""
    day = date(2041, 3, 4)
    erased, kept = (_upload(own, day, f) for f in FILES)
    _green(_run(day))
    backup = restorable.backup()
    erase(own, restorable.engine, erased, actor="dpo@example.com")
    early = _upload(own, day, "call-0001.wav")  # erased on request before any run found it
    erase(own, restorable.engine, early, actor="dpo@example.com")

    restorable.restore(backup)
    assert _rows(restorable.engine, erased)[0].segments > 0 and not _erased(restorable.engine, early)
    cli = subprocess.run([*CLI, "erase", "--reapply", "--actor", "ops@example.com"], capture_output=True, text=True,
                         timeout=120)
    # (The bucket is the module's: its other tests' notes are re-applied too.)
    assert cli.returncode == 0 and "erasures re-applied" in cli.stdout, (cli.stdout, cli.stderr)
    assert _rows(restorable.engine, erased) == [] and _erased(restorable.engine, erased)
    assert _erased(restorable.engine, early) and [r.status for r in _rows(restorable.engine, kept)] == ["done"]
    with restorable.engine.connect() as c:
        logged = c.execute(sa.text("SELECT actor FROM access_log WHERE action = 'erase' AND key_sha256 IN (:a, :b)"),
                           {"a": key_hash(erased), "b": key_hash(early)}).scalars().all()
    assert logged == ["ops@example.com", "ops@example.com"]
    again = subprocess.run([*CLI, "erase", "--reapply"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith("0 erasures re-applied"), again.stderr


def _texts_in_shards(own, run_ids: list[str]) -> set[str]:
    out: set[str] = set()
    for run_id in run_ids:
        for obj in own.list(f"_callscribe/runs/{run_key(run_id)}/shards/"):
            if obj.key.endswith(".parquet"):
                out.update(from_parquet(own.get_bytes(own.uri(obj.key)))[0]["text"])
    return out


def test_after_a_restore_the_lost_runs_work_files_keep_no_text_of_a_call_erased_since(stack, s3, own, restorable):
    """A run after the backup's point left shards the restored database knows nothing of (its run,
    its ids). A call erased after the restore is found in the work area only by the ids the database
    has now: the runbook's sweep (`callscribe sweep --after-restore`) removes the lost runs' files."""
    day = date(2041, 3, 5)
    erased, _ = (_upload(own, day, f) for f in FILES)
    backup = restorable.backup()
    lost = _run(day)
    _green(lost)
    with restorable.engine.connect() as c:
        said = set(c.execute(sa.text("SELECT s.text FROM segments s JOIN recordings r ON r.id = s.recording_id "
                                     "WHERE r.object_key = :k"), {"k": erased}).scalars())
    assert said and said <= _texts_in_shards(own, [lost.run_id])

    restorable.restore(backup)
    again = _run(day)  # the day transcribed again, as the runbook's last step does
    _green(again)
    # Another test's work file in the session's bucket (a session fixture's shard, a live run's files):
    # the restored database holds no lease on it, so a sweep of that bucket would take it.
    canary = s3.put_bytes(s3.uri("_callscribe/tests/restore-canary.json"), b"{}")
    swept = subprocess.run([*CLI, "sweep", "--after-restore"], capture_output=True, text=True, timeout=120)
    assert swept.returncode == 0, swept.stderr
    assert s3.exists(canary), "the test's sweep took the session bucket's work files"
    assert not list(own.list(f"_callscribe/runs/{run_key(lost.run_id)}/")), "the lost run's files were not swept"
    erase(own, restorable.engine, erased, actor="dpo@example.com")
    assert not said & _texts_in_shards(own, [lost.run_id, again.run_id]), "the erased call's text is in the bucket"
