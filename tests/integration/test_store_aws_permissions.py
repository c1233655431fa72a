"""What the code asks of the object store beyond the S3 calls SeaweedFS (the test store, no IAM)
answers for anyone: on AWS S3 (and MinIO with policies) each is an IAM action of its own.

ListObjectVersions needs ``s3:ListBucketVersions``, which ``s3:ListBucket`` does not give, and
GetBucketVersioning ``s3:GetBucketVersioning`` (AWS's API reference for ListObjectVersions: "you must
have permissions to perform the s3:ListBucketVersions action. Be aware of the name difference").
docs/connections.md's IRSA policy grants neither: every version listing is AccessDenied there.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from minio.error import S3Error

from callscribe import reporting, retention
from callscribe.erasure import CleanupUnfinished, erase
from callscribe.pipeline import pack_key
from callscribe.storage import VersionsRefused
from tests.integration.copies import call_bytes, locked, newest, put
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def _documented_policy(monkeypatch, s3, versioning_readable: bool = False) -> list[str]:
    """The client as docs/connections.md's policy let it act on AWS before: list, get, put, delete, but
    no version listing (s3:ListBucketVersions) nor, unless ``versioning_readable``, versioning status
    (s3:GetBucketVersioning)."""
    refused: list[str] = []
    client = s3.client
    real_list, real_versioning = client.list_objects, client.get_bucket_versioning

    def denied(what: str, bucket: str) -> S3Error:
        refused.append(what)
        return S3Error(None, "AccessDenied", "Access Denied", f"/{bucket}", "req", "host", bucket, None)

    def list_objects(bucket, *a, include_version=False, **kw):
        if include_version:
            raise denied("ListObjectVersions", bucket)
        return real_list(bucket, *a, **kw)

    def get_bucket_versioning(bucket, *a, **kw):
        raise denied("GetBucketVersioning", bucket)

    monkeypatch.setattr(client, "list_objects", list_objects)
    if not versioning_readable:
        monkeypatch.setattr(client, "get_bucket_versioning", get_bucket_versioning)
    monkeypatch.setattr(s3, "_unversioned", {})  # what an earlier test's refusal found
    monkeypatch.setattr(s3, "_versioning_unknown", {})
    assert real_versioning(s3.bucket).status != "Enabled"  # the test bucket keeps no versions
    return refused


def test_an_erasure_on_aws_with_the_documented_policy_removes_the_packs_and_work_files(stack, s3, pg, monkeypatch):
    """Before: the erasure committed in the database, then stopped at its first version listing with a bare
    AccessDenied: the call's speech pack (its audio) and its rows in the run's shards stayed in the bucket,
    and the same erase run again failed the same way, for ever."""
    day = date(2094, 3, 1)
    key = put(s3, day, "erase-me.wav", call_bytes(49401))
    put(s3, day, "keep-me.wav", call_bytes(49402))
    # As the DAG's discover does: the run's row, which an erasure finished later finds the run by.
    reporting.run_listed(pg, "manual__rv3-erase-aws", "transcribe_calls", day, "whisper-tiny")
    verdict = run_through(s3, pg, day, "manual__rv3-erase-aws")
    assert verdict.ok, verdict.problems()
    rid = newest(pg, day)["erase-me.wav"].id
    pack = s3.uri(pack_key(day, rid, "wav"))
    assert s3.exists(pack)

    # Without s3:GetBucketVersioning either, whether older versions keep the call's bytes is unknown:
    # a clear error naming the grants (before: a bare AccessDenied), the database's erasure done.
    refused = _documented_policy(monkeypatch, s3)
    with pytest.raises(CleanupUnfinished, match="s3:ListBucketVersions, s3:GetBucketVersioning") as stopped:
        erase(s3, pg, key, actor="dpo@example.com")
    assert isinstance(stopped.value.__cause__, VersionsRefused)
    assert "committed in the database" in str(stopped.value)
    assert refused, "the erasure never asked for versions: the test no longer reproduces the gap"
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM recordings WHERE object_key = :k"), {"k": key}).scalar_one() == 0
    assert s3.exists(pack)

    # With it (the bucket keeps no versions), the same erase again finishes the work area.
    monkeypatch.undo()
    refused = _documented_policy(monkeypatch, s3, versioning_readable=True)
    done = erase(s3, pg, key, actor="dpo@example.com")
    assert refused
    assert done.packs == [pack] and done.rewritten
    assert not s3.exists(pack)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM recordings WHERE object_key = :k"), {"k": key}).scalar_one() == 0


def test_the_sweep_on_aws_with_the_documented_policy_deletes_old_intermediates(stack, s3, pg, monkeypatch):
    """Before: the daily sweep failed at once (its listing of delete markers is a version listing), so no
    speech pack or shard was ever deleted: the work area kept every call's audio and text for good."""
    area = "_callscribe/chunks/2094-03-02/"
    for name in ("1.wav", "2.flac"):
        s3.put_bytes(s3.uri(area + name), b"pack")
    refused = _documented_policy(monkeypatch, s3)
    swept = retention.sweep(s3, pg, timedelta(0), now=datetime.now(UTC) + timedelta(minutes=5), under=area)
    assert refused
    assert swept.deleted == 2 and list(s3.list(area)) == []


def test_a_refused_version_listing_on_a_bucket_that_keeps_versions_is_a_clear_error(stack, s3, monkeypatch):
    """Where older versions keep the bytes, the plain listing is no answer: the erasure or sweep stops
    naming the permission to grant, instead of deleting current objects and leaving their versions."""
    from minio.versioningconfig import ENABLED, VersioningConfig

    uri = s3.uri("_callscribe/chunks/2094-03-03/1.wav")
    s3.put_bytes(uri, b"pack")
    _documented_policy(monkeypatch, s3)
    monkeypatch.setattr(s3.client, "get_bucket_versioning", lambda bucket: VersioningConfig(ENABLED))
    with pytest.raises(VersionsRefused, match="s3:ListBucketVersions"):
        s3.purge(uri)
    monkeypatch.undo()
    assert s3.purge(uri) == 1


def test_a_version_the_store_will_not_delete_does_not_stop_the_sweep(stack, s3, pg, monkeypatch):
    """S3 Object Lock (a bucket default retention, which a call-recording bucket under a records rule has,
    and which reaches the work area in the same bucket): a locked version's DELETE is refused (403
    AccessDenied) until its retention ends; SeaweedFS has no Object Lock. Before: the first locked object
    stopped the sweep, so nothing after it in key order was ever deleted, and the error named no key.
    Now the rest is swept, and the sweep still fails, naming what it could not delete."""
    from callscribe.retention import SweepRefused

    area = "_callscribe/chunks/2094-03-04/"
    for name in ("1.wav", "2.wav", "3.wav"):
        s3.put_bytes(s3.uri(area + name), b"pack")
    locked = area + "1.wav"
    real = s3.client.remove_object

    def remove_object(bucket, key, *a, **kw):
        if key == locked:
            raise S3Error(None, "AccessDenied", "Access Denied because object protected by object lock.",
                          f"/{bucket}/{key}", "req", "host", bucket, key)
        return real(bucket, key, *a, **kw)

    monkeypatch.setattr(s3.client, "remove_object", remove_object)
    with pytest.raises(SweepRefused, match="1.wav") as refused:
        retention.sweep(s3, pg, timedelta(0), now=datetime.now(UTC) + timedelta(minutes=5), under=area)
    assert refused.value.sweep.deleted == 2
    assert [o.key for o in s3.list(area)] == [locked]
    monkeypatch.undo()
    assert retention.sweep(s3, pg, timedelta(0), now=datetime.now(UTC) + timedelta(minutes=5), under=area).deleted == 1


def test_an_erasure_whose_pack_the_store_will_not_delete_says_what_is_left(stack, s3, pg, monkeypatch):
    """A speech pack under an Object Lock retention (a bucket default retention reaches the work area):
    its DELETE is refused (403 AccessDenied). Before: the erase failed with the store's bare error
    after the database had committed, reading as "nothing was erased", the pack left unnamed. Now it
    says the erasure stands and what is left, without the call's key; run again once the lock is
    gone, the same erase removes the pack."""
    day = date(2094, 3, 5)
    key = put(s3, day, "locked-pack.wav", call_bytes(49405))
    reporting.run_listed(pg, "manual__rv3-erase-locked", "transcribe_calls", day, "whisper-tiny")
    verdict = run_through(s3, pg, day, "manual__rv3-erase-locked")
    assert verdict.ok, verdict.problems()
    pack = s3.uri(pack_key(day, newest(pg, day)["locked-pack.wav"].id, "wav"))
    assert s3.exists(pack)
    locked(s3, monkeypatch, pack)  # an Object Lock retention on the pack
    with pytest.raises(CleanupUnfinished, match="committed in the database") as stopped:
        erase(s3, pg, key, actor="dpo@example.com")
    assert pack in str(stopped.value) and "AccessDenied" in str(stopped.value)
    assert "locked-pack" not in str(stopped.value)  # the message reaches logs, which outlive the erasure
    assert s3.exists(pack)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM recordings WHERE object_key = :k"), {"k": key}).scalar_one() == 0

    monkeypatch.undo()  # the retention is over
    done = erase(s3, pg, key, actor="dpo@example.com")
    assert done.finished_earlier and done.packs == [pack] and not s3.exists(pack)
