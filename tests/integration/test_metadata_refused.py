"""A metadata fix whose HEAD the store refuses (a policy on the key: any 403 to a HEAD reads as
AccessDenied). Before, the row stayed "modified since read" and every listing of its day HEADed it
again, for ever (each run, and each later run's lookback_days). Day 2082-06-02."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from minio.error import S3Error

from callscribe import discovery
from callscribe.reporting import day_status
from tests.integration.copies import call_bytes
from tests.integration.helpers import run_through
from tests.integration.test_metadata_fixes import _call, _fix_metadata, _put

pytestmark = pytest.mark.integration
DAY = date(2082, 6, 2)


class _Heads:
    """The store's HEADs of one key counted, and refused while ``deny`` is set (as a policy on the
    key would: the store's real answer to the others)."""

    def __init__(self, s3, key: str) -> None:
        self.key, self.deny, self.count, self._real = key, True, 0, s3.stat

    def __call__(self, bucket: str, key: str):
        if key == self.key:
            self.count += 1
            if self.deny:
                raise S3Error(None, "AccessDenied", "Access Denied", key, "req", "host", bucket, key)
        return self._real(bucket, key)


def _discover(s3, pg, run: str) -> None:
    discovery.discover(s3, pg, DAY, "calls/", run, is_live=lambda r: False)


def _warning(pg, key: str) -> str | None:
    return next(r["warning"] for r in day_status(pg, DAY) if r["object_key"] == key)


def test_a_key_refusing_its_metadata_read_is_not_headed_at_every_listing(stack, s3, pg, monkeypatch):
    key = _put(s3, DAY, "brackenridge-refused.wav", call_bytes(48262), {"agent-id": "BR-1"})
    assert run_through(s3, pg, DAY, "scheduled__brackenridge-refused-0").ok
    _fix_metadata(s3, key, {"agent-id": "BR-2"})
    heads = _Heads(s3, key)
    monkeypatch.setattr(s3, "stat", heads)

    _discover(s3, pg, "scheduled__brackenridge-refused-1")
    assert heads.count == 1
    call = _call(pg, key)
    assert (call.status, call.agent_id) == ("done", "BR-1"), call  # the transcript kept, the old agent too
    _discover(s3, pg, "scheduled__brackenridge-refused-2")
    _discover(s3, pg, "scheduled__brackenridge-refused-3")
    assert heads.count == 1, f"{heads.count} HEADs of a key that refuses them: one a listing"
    warning = _warning(pg, key)
    assert warning and "AccessDenied" in warning, warning  # the operator sees why the fix is not applied

    # Another fix (LastModified moves): read at once, back-off or not; refused again.
    _fix_metadata(s3, key, {"agent-id": "BR-3"})
    _discover(s3, pg, "scheduled__brackenridge-refused-4")
    assert heads.count == 2

    # The policy is lifted: the next read once the back-off is over applies the fix.
    heads.deny = False
    _discover(s3, pg, "scheduled__brackenridge-refused-5")
    assert heads.count == 2
    with pg.begin() as c:  # the back-off's time passes
        c.execute(sa.text("UPDATE recordings SET metadata_retry_at = now() - interval '1 second' "
                          "WHERE object_key = :k"), {"k": key})
    _discover(s3, pg, "scheduled__brackenridge-refused-6")
    assert heads.count == 3
    call = _call(pg, key)
    assert (call.status, call.agent_id, call.seg_agents) == ("done", "BR-3", ["BR-3"]), call
    assert _warning(pg, key) is None
