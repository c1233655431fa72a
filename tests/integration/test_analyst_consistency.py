"""Figures analysts read must agree with each other.

- A reprocess run's chunk step writes the object's current metadata (its agent) onto a recording
  that stays `done` with its old transcript; when the run's transcription never loads (a worker
  dying on every try, a red run), the segments (what search's agent filter and per-agent segment
  counts read) must name the agent `analytics.calls` names, not the old one.
- `analytics.pipeline_runs` was made as `SELECT *` in 0003, which froze its columns that day: the
  counts added since (`recordings_unfinished`, `recordings_duplicate`) must reach analysts too, or
  `recordings_found` does not add up.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import db, discovery
from callscribe.samples import sample_dir
from callscribe.search import SearchFilters, search
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration

DAY = date(2026, 12, 11)
KEY = "calls/2026/12/11/agent-fix.wav"


def test_a_red_reprocess_leaves_the_calls_agent_and_its_segments_agent_the_same(stack, pg, s3):
    audio = (sample_dir() / "call-0001.wav").read_bytes()
    s3.put_bytes(s3.uri(KEY), audio, "audio/wav", metadata={"agent-id": "agent-before-fix"})
    run_through(s3, pg, DAY, "scheduled__agent-fix-1")
    etag, _ = s3.stat("calls", KEY)
    # The recorder's export is corrected: the same bytes, another agent (the etag is the content's).
    s3.put_bytes(s3.uri(KEY), audio, "audio/wav", metadata={"agent-id": "agent-after-fix"})
    assert s3.stat("calls", KEY)[0] == etag
    # A reprocess whose transcription never lands (the job dies on every try): chunked, then reported.
    run_through(s3, pg, DAY, "manual__agent-fix-2", reprocess=True, stop="chunked")
    discovery.close_run(pg, "manual__agent-fix-2")
    analyst = db.analyst_engine()
    with analyst.connect() as c:
        call = c.execute(sa.text("SELECT status, agent_id, segments FROM analytics.calls WHERE object_key = :k "
                                 "AND status = 'done'"), {"k": KEY}).one()
        seg_agents = set(c.execute(sa.text("SELECT DISTINCT agent_id FROM analytics.segments WHERE object_key = :k"),
                                   {"k": KEY}).scalars())
    assert call.segments > 0  # the old transcript stays, as documented
    hits = search(analyst, "thank", limit=50, filters=SearchFilters(from_date=DAY, to_date=DAY, agent=call.agent_id,
                                                                     recent_days=None, fuzzy=False))
    assert seg_agents == {call.agent_id}, (
        f"analytics.calls says agent {call.agent_id!r}, the call's segments say {seg_agents}")
    assert hits, f"search with agent {call.agent_id!r} (the call's agent in analytics.calls) finds nothing of it"


def test_the_analysts_run_view_has_every_count_of_a_run(stack, pg):
    analyst = db.analyst_engine()
    with analyst.connect() as c:
        columns = set(c.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analytics' "
            "AND table_name = 'pipeline_runs'")).scalars())
    missing = {"recordings_unfinished", "recordings_duplicate"} - columns
    assert not missing, f"analytics.pipeline_runs lacks {sorted(missing)}: found no longer adds up for analysts"
