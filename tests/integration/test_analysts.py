"""Analyst search, views and redaction against the real Postgres, loaded through the real loader."""

from __future__ import annotations

import os
from datetime import date

import psycopg2
import pytest
import sqlalchemy as sa

from callscribe.search import SearchFilters, search

pytestmark = pytest.mark.integration

def _keys(hits) -> list[str]:
    return sorted({h["object_key"].rsplit("-", 1)[1].removesuffix(".wav") for h in hits
                   if "analyst-" in h["object_key"]})


def _q(pg, query, **kw):
    limit = kw.pop("limit", 50)
    return search(pg, query, limit=limit, filters=SearchFilters(**kw))


def test_phrase_found_within_and_across_segments(pg, loaded):
    hits = [h for h in _q(pg, '"cancel my account"') if "analyst-" in h["object_key"]]
    assert _keys(hits) == ["a", "b"]
    across = next(h for h in hits if h["object_key"].endswith("analyst-a.wav"))
    assert across["match"] == "across segments"
    assert (across["start_s"], across["end_s"]) == (10.0, 15.0)  # from the first part to the end of the second
    assert "\x02cancel\x03" in across["snippet"] and "\x02account\x03" in across["snippet"]
    own = next(h for h in hits if h["object_key"].endswith("analyst-b.wav"))
    assert own["match"] == "text" and (own["start_s"], own["end_s"]) == (1.0, 4.0)


def test_or_and_exclusion(pg, loaded):
    assert _keys(_q(pg, "refund OR discount")) == ["a", "b", "c"]
    assert _keys(_q(pg, "discount -refund")) == ["b"]


def test_speaker_agent_date_and_duration_filters(pg, loaded):
    assert _keys(_q(pg, "refund", speaker="customer")) == ["c"]
    assert _keys(_q(pg, "refund OR discount", agent="a2")) == ["b"]
    assert _keys(_q(pg, "refund OR discount", from_date=date(2026, 10, 2))) == ["b", "c"]
    assert _keys(_q(pg, "refund OR discount", to_date=date(2026, 10, 1))) == ["a"]
    assert _keys(_q(pg, "refund OR discount", min_duration_s=100)) == ["a", "c"]


def test_every_hit_says_where_to_listen(pg, loaded):
    for h in _q(pg, "refund OR discount OR cancel"):
        assert h["object_key"] and h["speaker"] and h["channel"] in (0, 1)
        assert 0 <= h["start_s"] <= h["end_s"]


def test_fuzzy_names_and_misspellings(pg, loaded):
    assert _keys(_q(pg, "Siobahn", fuzzy=False)) == []
    hits = _q(pg, "Siobahn", fuzzy=True)
    assert _keys(hits) == ["a"] and hits[0]["match"] == "fuzzy"
    assert [h["match"] for h in _q(pg, "Siobahn") if "analyst-" in h["object_key"]] == ["fuzzy"]  # the fallback
    assert _keys(_q(pg, "discont", fuzzy=True)) == ["b", "c"]


@pytest.mark.parametrize("evil", [
    "'; DELETE FROM recordings; --",
    "\") OR 1=1 --",
    "refund' OR '1'='1",
    "<script>alert(1)</script>",
    "!!! & | ( :* ",
    "%_\\",
])
def test_injection_strings_are_just_text(pg, loaded, evil):
    with pg.connect() as c:
        before = c.execute(sa.text("SELECT count(*) FROM recordings")).scalar_one()
    for fuzzy in (False, True, None):
        hits = _q(pg, evil, fuzzy=fuzzy)
        assert all("analyst-" not in h["object_key"] or "refund" in h["snippet"].lower() for h in hits)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM recordings")).scalar_one() == before


def _login(stack, pg, role: str):
    password = os.environ["CALLSCRIBE_ANALYST_PASSWORD"]
    user = "analyst" if role == "analyst" else "privileged_test"
    if user != "analyst":
        with pg.begin() as c:
            c.exec_driver_sql(f"DROP ROLE IF EXISTS {user}")
            c.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE callscribe_privileged")
    return psycopg2.connect(host="127.0.0.1", port=stack.pg_port, dbname="callscribe", user=user,
                            password=password)


def test_redaction_for_analysts_raw_text_for_privileged(stack, pg, loaded):
    analyst = _login(stack, pg, "analyst")
    try:
        with analyst.cursor() as cur:
            cur.execute("SELECT text FROM analytics.segments WHERE recording_id = %s ORDER BY start_s",
                        (loaded["a"],))
            texts = [r[0] for r in cur.fetchall()]
            assert "My card number is [redacted] and it expires soon." in texts
            assert not any("4111" in t for t in texts)
            cur.execute("SELECT text FROM analytics.segments WHERE recording_id = %s", (loaded["c"],))
            texts = " ".join(r[0] for r in cur.fetchall())
            assert "[redacted]" in texts and "four five six" not in texts
            assert "12.99" in texts  # prices are not account numbers
            cur.execute("SELECT text FROM analytics.transcripts WHERE recording_id = %s AND channel = 1",
                        (loaded["a"],))
            assert "4111" not in cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM analytics.search('4111')")
            assert cur.fetchone()[0] == 0  # numbers are not in the index either
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT text FROM public.segments")
    finally:
        analyst.close()
    privileged = _login(stack, pg, "privileged")
    try:
        with privileged.cursor() as cur:
            cur.execute("SELECT text FROM public.segments WHERE recording_id = %s AND text LIKE %s",
                        (loaded["a"], "%4111%"))
            assert cur.fetchone()[0].startswith("My card number is 4111 1111 1111 1111")
    finally:
        privileged.close()


def test_calls_view_talk_time_silence_and_overlap(pg, loaded):
    with pg.connect() as c:
        row = c.execute(sa.text("SELECT * FROM analytics.calls WHERE recording_id = :r"), {"r": loaded["a"]}).one()
    # agent: 3.5 + 5.0 s; customer: 2 + 2.5 + 6 s; agent and customer overlap 25-26 s.
    assert float(row.agent_talk_s) == pytest.approx(8.5)
    assert float(row.customer_talk_s) == pytest.approx(10.5)
    assert float(row.overlap_s) == pytest.approx(1.0)
    assert float(row.silence_share) == pytest.approx(1 - 18.0 / 120.0, abs=1e-3)
    assert row.segments == 5 and row.status == "done"


def test_the_documented_example_queries_run_as_the_analyst(stack, pg, loaded):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "analysts.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    assert len(queries) >= 5
    conn = _login(stack, pg, "analyst")
    try:
        with conn.cursor() as cur:
            for sql in queries:
                cur.execute(sql)
                cur.fetchall()
            cur.execute(queries[1])  # per agent and day: the loaded cancel calls are counted
            counted = {(str(d), a): n for d, a, n in cur.fetchall()}
            assert counted[("2026-10-01", "a1")] >= 1 and counted[("2026-10-02", "a2")] >= 1
    finally:
        conn.close()


def test_call_metrics_are_computed_at_load(pg, loaded):
    with pg.connect() as c:
        row = c.execute(sa.text("SELECT * FROM analytics.calls WHERE recording_id = :r"), {"r": loaded["a"]}).one()
        stored = c.execute(sa.text("SELECT segments, overlap_s FROM call_metrics WHERE recording_id = :r"),
                           {"r": loaded["a"]}).one()
        days = c.execute(sa.text("SELECT DISTINCT call_date, agent_id FROM segments WHERE recording_id = :r"),
                         {"r": loaded["a"]}).all()
    # The customer's three segments (10-26 s) are one turn; the call is 120 s with 18 s of talk.
    assert (float(row.longest_monologue_s), row.longest_monologue_speaker) == (16.0, "customer")
    assert float(row.silence_s) == pytest.approx(102.0)
    assert (stored.segments, float(stored.overlap_s)) == (5, 1.0)
    assert [(str(d), a) for d, a in days] == [("2026-10-01", "a1")]  # the recording's, on every segment


def test_deleting_segments_deletes_their_metrics(pg, s3):
    from tests.integration.helpers import load_call

    rid = load_call(pg, s3, "calls/2026/07/02/metrics-gone.wav", date(2026, 7, 2),
                    [(0, "agent", 0.0, 2.0, "hello"), (1, "customer", 2.5, 4.0, "hi")])
    with pg.begin() as c:
        assert c.execute(sa.text("SELECT segments FROM call_metrics WHERE recording_id = :r"), {"r": rid}).scalar() == 2
        c.execute(sa.text("DELETE FROM segments WHERE recording_id = :r"), {"r": rid})  # as discovery's forget does
        assert c.execute(sa.text("SELECT count(*) FROM call_metrics WHERE recording_id = :r"),
                         {"r": rid}).scalar() == 0
        assert c.execute(sa.text("SELECT segments FROM analytics.calls WHERE recording_id = :r"),
                         {"r": rid}).scalar() == 0


WINDOW_NEW, WINDOW_OLD = date(2026, 6, 30), date(2026, 6, 1)


@pytest.fixture(scope="module")
def windowed(pg, s3) -> dict[str, int]:
    from tests.integration.helpers import load_call

    # 15 plain mentions on the newer day; one that ranks higher (the word three times) a month before.
    new = load_call(pg, s3, "calls/2026/06/30/window-new.wav", WINDOW_NEW,
                    [(i % 2, "agent" if i % 2 == 0 else "customer", i * 5.0, i * 5.0 + 4, f"the quokka number {i}")
                     for i in range(15)])
    old = load_call(pg, s3, "calls/2026/06/01/window-old.wav", WINDOW_OLD,
                    [(0, "agent", 0.0, 4.0, "quokka quokka quokka")])
    return {"new": new, "old": old}


def test_ranking_is_bounded_to_a_recent_window_that_widens_on_demand(pg, windowed):
    def keys(hits):
        return [h["object_key"].rsplit("/", 1)[1] for h in hits]

    # One hit asked: the newest day (June 30) holds enough matches (2 x 1 + 10), so the better-ranked
    # older segment is not ranked at all.
    assert keys(_q(pg, "quokka", to_date=WINDOW_NEW, limit=1)) == ["window-new.wav"]
    # recent_days => NULL ranks every match in the range: the older, better one wins.
    assert keys(_q(pg, "quokka", to_date=WINDOW_NEW, limit=1, recent_days=None)) == ["window-old.wav"]
    # Twenty asked: the day has too few, so the window widens (7, then 30 days) and finds June 1.
    hits = _q(pg, "quokka", to_date=WINDOW_NEW, limit=20)
    assert keys(hits)[0] == "window-old.wav" and len(hits) == 16
    # An explicit range is respected whatever the window.
    assert keys(_q(pg, "quokka", from_date=WINDOW_OLD, to_date=WINDOW_OLD)) == ["window-old.wav"]
