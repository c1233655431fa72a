"""A metadata fix in its upload's second, with the database's clock a few seconds ahead of the
store's. The chunker's read is stamped with the database's time (metadata_read_at), the fix with
the store's LastModified: the margin that decides whether the read may have come before the fix
must allow for the two clocks disagreeing, or the fix is never read and the call keeps its first
agent for good. Day 2084-03-01."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from callscribe import discovery
from callscribe.storage import ObjectInfo

pytestmark = pytest.mark.integration
DAY = date(2084, 3, 1)


def test_a_same_second_fix_is_read_again_when_the_database_clock_is_ahead(pg, s3):
    key = discovery.day_prefix("calls/", DAY) + "skewed-clock-fix.wav"
    uploaded = datetime(2084, 3, 1, 9, 0, 0, tzinfo=UTC)  # the store's whole second
    obj = ObjectInfo(s3.bucket, key, "skew-etag-1", 1000, uploaded)
    assert discovery.register(pg, [obj], DAY, "scheduled__skew-1") == 1
    # The chunker read the metadata 0.2 s after the upload (real time); the database's clock is
    # 5 s ahead of the store's, so its mark reads 09:00:05.2. The fix lands 0.3 s later, in the
    # upload's second: the listing shows the same LastModified.
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'done', metadata = '{}'::jsonb, "
                          "metadata_read_at = :at WHERE object_key = :key"),
                  {"at": uploaded + timedelta(seconds=5.2), "key": key})
    stale: list = []
    discovery.register(pg, [obj], DAY, "scheduled__skew-2", stale=stale)
    assert [r.object_key for r in stale] == [key]
