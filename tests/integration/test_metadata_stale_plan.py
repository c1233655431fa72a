"""discover_metadata_stale.sql runs at every registration of a day: on a database of many days it
must read the day's rows, not the whole table's (no sequential scan of ``recordings``)."""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import db

pytestmark = pytest.mark.integration

DAY = date(2038, 1, 1)
N = 20_000


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_the_stale_metadata_lookup_reads_only_its_days_rows(stack, pg):
    with pg.connect() as c:
        t = c.begin()
        try:
            # A 20,000-call day among ten such days' rows, and its listing (rolled back after).
            c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status, "
                "object_modified) SELECT 'calls', 'calls/plan/' || g || '.wav', md5('p' || g), 1000, "
                "CAST(:day AS date) - 1 - (g % 10), 'p' || g, 'done', now() FROM generate_series(1, :n) g"),
                {"day": DAY, "n": 10 * N})
            c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status, "
                "object_modified) SELECT 'calls', 'calls/2038/01/01/c' || g || '.wav', md5(g::text), 1000, "
                ":day, 'c' || g, 'done', now() FROM generate_series(1, :n) g"), {"day": DAY, "n": N})
            c.execute(sa.text("ANALYZE recordings"))
            c.execute(db.q("discover_listing"))
            c.execute(sa.text(
                "INSERT INTO listing SELECT 'calls', 'calls/2038/01/01/c' || g || '.wav', md5(g::text), 1000, "
                "'c' || g, 'pending', NULL, now() FROM generate_series(1, :n) g"), {"n": N})
            c.execute(db.q("discover_listing_index"))
            plan = c.execute(sa.text("EXPLAIN (FORMAT JSON) " + db.q("discover_metadata_stale").text),
                             {"call_date": DAY, "skew_s": 60.0}).scalar_one()
        finally:
            t.rollback()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    scans = [(n["Node Type"], n.get("Relation Name")) for n in _nodes(plan[0]["Plan"])
             if n.get("Relation Name") == "recordings"]
    assert scans and ("Seq Scan", "recordings") not in scans, scans
