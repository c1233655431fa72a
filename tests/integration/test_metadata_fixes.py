"""Metadata corrected after upload: the object copied onto itself with new ``x-amz-meta-*`` values.

The bytes, so the etag, stay the same; only the listing's LastModified moves. Before, a run
registered nothing new and the call kept its first agent for good (README's "not picked up").
"""

from __future__ import annotations

import io
import time
from datetime import date

import pytest
import soundfile as sf
import sqlalchemy as sa
from minio.commonconfig import REPLACE, CopySource

from callscribe.dev import diarization_eval
from callscribe.discovery import day_prefix
from tests.integration.copies import call_bytes, newest, table
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def _put(s3, day: date, name: str, data: bytes, meta: dict[str, str]) -> str:
    key = day_prefix("calls/", day) + name
    s3.put_bytes(s3.uri(key), data, "audio/wav", metadata=meta)
    return key


def _fix_metadata(s3, key: str, meta: dict[str, str]) -> None:
    """What an operator's metadata fix does: a server-side copy onto the key itself, metadata replaced.
    Stores stamp whole seconds, so the fix waits for the next one to move LastModified."""
    time.sleep(1.1)
    s3.client.copy_object(s3.bucket, key, CopySource(s3.bucket, key), metadata=meta, metadata_directive=REPLACE)


def _call(pg, key: str) -> sa.Row:
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT r.id, r.status, r.agent_id, r.metadata, r.loads, r.attempts, r.last_error, "
            "(SELECT array_agg(DISTINCT s.agent_id) FROM segments s WHERE s.recording_id = r.id) AS seg_agents, "
            "(SELECT s.speaker FROM segments s WHERE s.recording_id = r.id ORDER BY s.start_s LIMIT 1) AS first, "
            "(SELECT array_agg(DISTINCT s.speaker ORDER BY s.speaker) FROM segments s "
            " WHERE s.recording_id = r.id) AS speakers, "
            "(SELECT a.agent_id FROM analytics.calls a WHERE a.recording_id = r.id) AS analyst_agent "
            "FROM recordings r WHERE r.object_key = :k AND r.status <> 'superseded' ORDER BY r.id DESC LIMIT 1"),
            {"k": key}).one()


def _mono_call() -> bytes:
    m = diarization_eval.mixdown()
    buf = io.BytesIO()
    sf.write(buf, m.audio, m.rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_a_corrected_agent_reaches_the_call_and_its_lines_without_transcribing_again(stack, s3, pg):
    day = date(2039, 2, 2)
    key = _put(s3, day, "a.wav", call_bytes(11201), {"agent-id": "A-17", "queue": "billing"})
    assert run_through(s3, pg, day, "scheduled__meta-1-1").ok
    before = _call(pg, key)
    assert (before.status, before.agent_id, before.seg_agents) == ("done", "A-17", ["A-17"]), before
    _fix_metadata(s3, key, {"agent-id": "A-42", "queue": "billing"})
    verdict = run_through(s3, pg, day, "scheduled__meta-1-2")
    assert verdict.ok, verdict.problems()
    after = _call(pg, key)
    assert after.id == before.id and after.loads == 1, (before, after)  # the same transcript
    assert (after.agent_id, after.metadata.get("agent-id"), after.analyst_agent) == ("A-42", "A-42", "A-42"), after
    assert after.seg_agents == ["A-42"], after
    # Listed again with nothing new: nothing changes, nothing is read again.
    assert run_through(s3, pg, day, "scheduled__meta-1-3").ok
    assert _call(pg, key) == after


def test_a_fix_of_a_copy_or_a_failed_call_is_kept_for_analysts_too(stack, s3, pg):
    day = date(2039, 2, 4)
    data = call_bytes(11401)
    _put(s3, day, "a.wav", data, {"agent-id": "A-1"})
    copy = _put(s3, day, "b.wav", data, {"agent-id": "A-1"})
    bad = _put(s3, day, "c.wav", b"RIFF not really a wave file", {"agent-id": "A-1"})
    assert run_through(s3, pg, day, "scheduled__meta-2-1").ok
    rows = newest(pg, day)
    assert rows["b.wav"].status == "duplicate" and rows["c.wav"].status in ("failed", "quarantined"), table(pg, day)
    _fix_metadata(s3, copy, {"agent-id": "A-2"})
    s3.client.copy_object(s3.bucket, bad, CopySource(s3.bucket, bad), metadata={"agent-id": "A-3"},
                          metadata_directive=REPLACE)
    assert run_through(s3, pg, day, "scheduled__meta-2-2").ok
    assert _call(pg, copy).metadata.get("agent-id") == "A-2"
    assert newest(pg, day)["b.wav"].status == "duplicate"
    assert _call(pg, bad).status == rows["c.wav"].status  # a fix of its metadata does not retry its bytes


def test_who_speaks_first_corrected_on_a_mono_call_relabels_its_speakers(stack, s3, pg):
    """A mono call's two voices are named from ``first-speaker``: a fix of it changes every line's
    speaker, so the call is transcribed again (its old transcript searchable until the new loads)."""
    day = date(2039, 2, 6)
    key = _put(s3, day, "m.wav", _mono_call(), {"agent-id": "A-5", "first-speaker": "agent"})
    assert run_through(s3, pg, day, "scheduled__meta-3-1").ok
    before = _call(pg, key)
    assert before.speakers == ["agent", "customer"] and before.first == "agent", before
    _fix_metadata(s3, key, {"agent-id": "A-5", "first-speaker": "customer"})
    verdict = run_through(s3, pg, day, "scheduled__meta-3-2")
    assert verdict.ok, verdict.problems()
    after = _call(pg, key)
    assert after.id == before.id and after.loads == 2, (before, after)
    assert after.first == "customer" and after.speakers == ["agent", "customer"], after
    assert after.metadata.get("first-speaker") == "customer"
    assert run_through(s3, pg, day, "scheduled__meta-3-3").ok
    assert _call(pg, key).loads == 2


@pytest.mark.parametrize(("stop", "day"), [("chunked", date(2039, 2, 8)), ("listed", date(2039, 2, 10))])
def test_a_relabel_the_run_did_not_finish_leaves_it_red_until_one_does(stack, s3, pg, stop, day):
    """The run dies after chunking, or its chunk task is marked success in the UI (nothing chunked):
    no new transcript; the report closes the run."""
    key = _put(s3, day, "m.wav", _mono_call(), {"first-speaker": "agent"})
    assert run_through(s3, pg, day, f"scheduled__meta-4-{stop}-1").ok
    _fix_metadata(s3, key, {"first-speaker": "customer"})
    run = f"scheduled__meta-4-{stop}-2"
    run_through(s3, pg, day, run, stop=stop)
    from callscribe import discovery
    from callscribe.audit import run_verdict

    discovery.close_run(pg, run)
    verdict = run_verdict(s3, pg, run, [day], "calls/", None, is_live=lambda r: False)
    assert not verdict.ok and any("m.wav" in p for p in verdict.problems()), verdict.problems()
    assert _call(pg, key).first == "agent"  # the earlier transcript, still searchable
    later = run_through(s3, pg, day, f"scheduled__meta-4-{stop}-3")
    assert later.ok, later.problems()
    assert _call(pg, key).first == "customer"
