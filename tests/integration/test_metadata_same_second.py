"""A metadata fix in the same second as its upload. Stores stamp LastModified in whole seconds, so
a fix (a copy onto the key itself, new x-amz-meta-*) that lands in the upload's second, after the
chunker read the metadata, leaves the listing as it was: before, no listing ever read it again and
the call kept its first agent for good. Days 2082-07-01..03 (one per try at the race)."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from minio.commonconfig import REPLACE, CopySource

from callscribe import discovery
from tests.integration.copies import call_bytes
from tests.integration.helpers import run_through
from tests.integration.test_metadata_fixes import _call, _put

pytestmark = pytest.mark.integration
FIRST_DAY = date(2082, 7, 1)
TRIES = 3


def _modified(s3, key: str):
    return next(o.last_modified for o in s3.list(key) if o.key == key)


def _fix_right_after_the_chunkers_read(s3, pg, day: date, n: int) -> tuple[str, object] | None:
    """Upload at the start of a second and run the day; the operator's fix lands just after the
    chunker's HEAD. The key and its LastModified when the fix kept the upload's second, else None."""
    time.sleep(1.02 - time.time() % 1)
    key = _put(s3, day, f"brackenridge-second-{n}.wav", call_bytes(48271 + n), {"agent-id": "SS-1"})
    uploaded = _modified(s3, key)
    real, fired = s3.stat, []

    def read_then_fix(bucket: str, k: str):
        got = real(bucket, k)
        if k == key and not fired:
            fired.append(time.time())
            s3.client.copy_object(s3.bucket, key, CopySource(s3.bucket, key), metadata={"agent-id": "SS-2"},
                                  metadata_directive=REPLACE)
        return got

    with pytest.MonkeyPatch.context() as m:
        m.setattr(s3, "stat", read_then_fix)
        assert run_through(s3, pg, day, f"scheduled__brackenridge-second-{n}-1").ok
    assert fired and _call(pg, key).agent_id == "SS-1"  # the chunker read the metadata before the fix
    return (key, uploaded) if _modified(s3, key) == uploaded else None


def test_a_fix_in_the_second_of_the_upload_reaches_the_call(stack, s3, pg, monkeypatch):
    monkeypatch.setattr(discovery, "STORE_CLOCK_SKEW_S", 1.0)  # one machine's clock: the settling below is quick
    for n in range(TRIES):
        day = FIRST_DAY + timedelta(days=n)
        raced = _fix_right_after_the_chunkers_read(s3, pg, day, n)
        if raced:
            break
    else:
        pytest.fail(f"the fix never landed in its upload's second in {TRIES} tries (a slow machine)")
    key, modified = raced
    time.sleep(max(0.0, modified.timestamp() + 3 - time.time()))  # the second and its margin are over

    heads = []
    real = s3.stat
    monkeypatch.setattr(s3, "stat", lambda b, k: heads.append(k) or real(b, k))
    discovery.discover(s3, pg, day, "calls/", f"scheduled__brackenridge-second-{n}-2", is_live=lambda r: False)
    call = _call(pg, key)
    assert (call.status, call.agent_id, call.seg_agents) == ("done", "SS-2", ["SS-2"]), call
    assert heads == [key]

    # Read after the second was over: settled, no HEAD at later listings.
    discovery.discover(s3, pg, day, "calls/", f"scheduled__brackenridge-second-{n}-3", is_live=lambda r: False)
    assert heads == [key], heads
