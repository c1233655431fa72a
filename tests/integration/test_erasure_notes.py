"""Erasure notes (``_callscribe_erasures/``) as an operator meets them: a preview of the runbook's
``erase --reapply``, erasures made with ``--bucket``, a note the store refused after the database
had committed the erasure. Days 2041-11-01..28."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import cli
from callscribe.audit import key_hash
from callscribe.discovery import day_prefix
from callscribe.erasure import erase, note_key
from callscribe.samples import sample_dir
from callscribe.storage import Store
from tests.integration.restore import bucket_of_its_own

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "callscribe.cli"]
OTHER = "callsnotes"  # a bucket of the same deployment other than the configured one


@pytest.fixture
def own(s3, restorable):
    """A configured bucket of the tests' own: their notes must not reach the session database's runs."""
    with bucket_of_its_own(s3, "callsnotesown") as store:
        yield store


def _erased(engine, bucket: str, key: str) -> bool:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM erasures WHERE bucket = :b AND key_sha256 = :h"),
                         {"b": bucket, "h": key_hash(key)}).scalar_one() == 1


def _rows(engine, bucket: str, key: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM recordings WHERE bucket = :b AND object_key = :k"),
                         {"b": bucket, "k": key}).scalar_one()


def _reapply(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "erase", "--reapply", *extra], capture_output=True, text=True, timeout=120)


def test_erase_reapply_dry_run_changes_nothing(stack, own, restorable):
    """An operator previews the runbook's step with --dry-run: it must say what it would re-apply
    and write nothing (no erasures row, no access log entry, no rows removed)."""
    key = day_prefix("calls/", date(2041, 11, 2)) + "notes-dry-run.wav"
    own.put_bytes(own.uri(key), (sample_dir() / "call-0001.wav").read_bytes())
    backup = restorable.backup()
    erase(own, restorable.engine, key, actor="dpo@example.com")  # before any run found it
    restorable.restore(backup)
    assert not _erased(restorable.engine, own.bucket, key)

    dry = _reapply("--dry-run", "--actor", "ops@example.com")
    assert dry.returncode == 0, dry.stderr
    assert "would" in dry.stdout, dry.stdout
    assert not _erased(restorable.engine, own.bucket, key), "--dry-run re-applied an erasure"
    with restorable.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM access_log WHERE actor = 'ops@example.com'")).scalar_one() == 0

    done = _reapply("--actor", "ops@example.com")
    assert done.returncode == 0, done.stderr
    assert _erased(restorable.engine, own.bucket, key)


def test_erase_reapply_takes_back_erasures_made_with_bucket(stack, own, restorable):
    """`erase --bucket B` notes its erasure under `_callscribe_erasures/B/` (in the configured bucket).
    The runbook's step (`erase --reapply`, no --bucket) must re-apply it too: the operator following
    it does not know which buckets were named in erasure requests since the backup."""
    other = Store(replace(own.settings, bucket=OTHER))
    if not other.client.bucket_exists(OTHER):
        other.client.make_bucket(OTHER)
    day = date(2041, 11, 3)
    key = day_prefix("calls/", day) + "notes-other-bucket.wav"
    other.put_bytes(other.uri(key), (sample_dir() / "call-0001.wav").read_bytes())
    with restorable.engine.begin() as c:
        c.execute(sa.text("INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status) "
                          "VALUES (:b, :k, 'e', :d, 'notes-other-bucket', 'done')"), {"b": OTHER, "k": key, "d": day})
    backup = restorable.backup()
    erase(own, restorable.engine, key, actor="dpo@example.com", bucket=OTHER)
    assert own.exists(own.uri(note_key(OTHER, key_hash(key), day)))
    restorable.restore(backup)
    assert _rows(restorable.engine, OTHER, key) == 1  # what a restore does: the call is back

    done = _reapply("--actor", "ops@example.com")
    assert done.returncode == 0, done.stderr
    assert _rows(restorable.engine, OTHER, key) == 0, "an erasure made with --bucket was not re-applied"
    assert _erased(restorable.engine, OTHER, key)


def test_an_erasure_whose_note_the_store_refuses_says_so_and_a_rerun_writes_it(stack, s3, pg, monkeypatch, capsys):
    """The store goes down after the database committed the erasure: the operator must be told the
    call is erased in the database but its note (and the clean-up) is not done, to run the same
    command again; running it again writes the note."""
    key = day_prefix("calls/", date(2041, 11, 4)) + "notes-store-down.wav"
    s3.put_bytes(s3.uri(key), (sample_dir() / "call-0001.wav").read_bytes())
    note = s3.uri(note_key(s3.bucket, key_hash(key), date(2041, 11, 4)))
    real_put = Store.put_bytes

    def down_for_notes(self, uri, *a, **kw):
        if "/_callscribe_erasures/" in uri:
            raise ConnectionError("store down")
        return real_put(self, uri, *a, **kw)

    monkeypatch.setattr(Store, "put_bytes", down_for_notes)
    rc = cli.main(["erase", "--key", key, "--actor", "dpo@example.com"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "again" in err and "note" in err, err
    assert _erased(pg, "calls", key) and not s3.exists(note)

    monkeypatch.setattr(Store, "put_bytes", real_put)
    assert cli.main(["erase", "--key", key, "--actor", "dpo@example.com"]) == 0
    assert s3.exists(note)
