"""Metadata fixes that meet a call's transcription under way.

The chunker reads the upload's metadata once, when it begins on the call, and writes it when it
is done; a fix another run of the day applies in between must not be lost to that write. A fix
that renames a mono call's speakers while its last attempt is on its way to the load is owed
still, with attempts of its own.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, pipeline
from tests.integration.copies import call_bytes
from tests.integration.helpers import run_through, transcribe_and_close
from tests.integration.test_metadata_fixes import _call, _fix_metadata, _mono_call, _put

pytestmark = pytest.mark.integration


def test_a_fix_another_run_applies_while_the_call_is_chunked_is_not_undone(stack, s3, pg, monkeypatch):
    day = date(2037, 12, 2)
    key = _put(s3, day, "a.wav", call_bytes(12201), {"agent-id": "A-1"})
    run = "scheduled__metarace-1-1"
    ids = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    real, fired = pipeline.chunk_recording, []

    def fixed_meanwhile(*args, **kw):
        # The chunker has read the metadata; the operator fixes it, another run of the day lists it.
        if not fired:
            fired.append(1)
            _fix_metadata(s3, key, {"agent-id": "A-2"})
            discovery.discover(s3, pg, day, "calls/", "scheduled__metarace-1-2", is_live=lambda r: r == run)
            assert _call(pg, key).agent_id == "A-2"
        return real(*args, **kw)

    monkeypatch.setattr(pipeline, "chunk_recording", fixed_meanwhile)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    monkeypatch.setattr(pipeline, "chunk_recording", real)
    assert fired
    transcribe_and_close(s3, pg, [manifest], run)
    discovery.close_run(pg, "scheduled__metarace-1-2")
    verdict = run_through(s3, pg, day, "scheduled__metarace-1-3")
    assert verdict.ok, verdict.problems()
    after = _call(pg, key)
    assert (after.agent_id, after.metadata.get("agent-id"), after.seg_agents, after.analyst_agent) == \
        ("A-2", "A-2", ["A-2"], "A-2"), after


def test_a_relabel_met_by_the_calls_last_attempt_in_flight_is_still_transcribed_again(stack, s3, pg):
    """Two runs died after chunking it; the third chunked it when the fix renamed its speakers, and
    loads the transcript named from the old metadata. The fix is owed: a later run transcribes it."""
    day = date(2037, 12, 4)
    key = _put(s3, day, "m.wav", _mono_call(), {"first-speaker": "agent"})
    for n in (1, 2):
        run_through(s3, pg, day, f"scheduled__metarace-2-{n}", stop="chunked")
        discovery.close_run(pg, f"scheduled__metarace-2-{n}")
    third = "scheduled__metarace-2-3"
    ids = discovery.discover(s3, pg, day, "calls/", third, is_live=lambda r: False)
    manifest = pipeline.chunk_group(s3, pg, ids, third, 0)
    assert _call(pg, key).attempts == 3
    _fix_metadata(s3, key, {"first-speaker": "customer"})
    beside = "scheduled__metarace-2-4"  # another run of the day, while the third is live
    assert discovery.discover(s3, pg, day, "calls/", beside, is_live=lambda r: r == third) == []
    discovery.close_run(pg, beside)
    transcribe_and_close(s3, pg, [manifest], third)
    assert _call(pg, key).first == "agent"  # named from what the chunker read
    later = run_through(s3, pg, day, "scheduled__metarace-2-5")
    assert later.ok, later.problems()
    after = _call(pg, key)
    assert after.first == "customer" and after.metadata.get("first-speaker") == "customer", after


def test_a_fix_after_the_upgrade_of_a_call_registered_before_it_reaches_the_call(stack, s3, pg):
    """Days a scheduled run no longer lists (past its lookback) are listed again only by a backfill:
    by then a row from before migration 0026 has a fix made since its registration to read, which
    its first listing must not take as read."""
    day = date(2037, 12, 6)
    key = _put(s3, day, "a.wav", call_bytes(12601), {"agent-id": "A-1"})
    assert run_through(s3, pg, day, "scheduled__metarace-3-1").ok
    with pg.begin() as c:  # what migration 0026 leaves on a row registered before it
        c.execute(sa.text("UPDATE recordings SET object_modified = NULL WHERE object_key = :k"), {"k": key})
    _fix_metadata(s3, key, {"agent-id": "A-2"})  # after the upgrade, before the day is listed again
    verdict = run_through(s3, pg, day, "backfill__metarace-3-2")
    assert verdict.ok, verdict.problems()
    after = _call(pg, key)
    assert (after.agent_id, after.seg_agents, after.analyst_agent, after.loads) == ("A-2", ["A-2"], "A-2", 1), after
    assert run_through(s3, pg, day, "backfill__metarace-3-3").ok  # read once: nothing more to read
    assert _call(pg, key) == after
