"""Word times: each segment keeps when its words start, and a search hit starts at its word.

``segments.word_starts`` holds, per whitespace-separated word of the segment's text, its start
in seconds in the recording (null where the engine gave no word times). ``analytics.search``
gains ``hit_s``: the start of the first word of the hit that matches the query (the most similar
word for fuzzy hits), else the segment's start. Words are matched in the redacted text, and
only where it still has one word per time (a redaction that merged words falls back to the
segment's start), so a hit's time says nothing the snippet does not.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

WORD_TIME = r"""
CREATE FUNCTION analytics.word_time(words text, starts real[], lexemes text[], similar_to text)
RETURNS real LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- The first word with one of the lexemes; with similar_to, the word most similar to it.
    WITH w AS (
        SELECT t.word, t.start, t.i
        FROM unnest(regexp_split_to_array(btrim(words), '\s+'), starts) WITH ORDINALITY AS t(word, start, i)
        WHERE cardinality(starts) = cardinality(regexp_split_to_array(btrim(words), '\s+'))
    )
    SELECT w.start FROM w
    WHERE similar_to IS NOT NULL OR tsvector_to_array(to_tsvector('english', w.word)) && lexemes
    ORDER BY CASE WHEN similar_to IS NOT NULL THEN word_similarity(similar_to, w.word) END DESC NULLS LAST, w.i
    LIMIT 1
$$
"""

SEGMENTS_VIEW = """
CREATE OR REPLACE VIEW analytics.segments AS
SELECT s.id AS segment_id, s.recording_id, r.object_key, r.bucket, r.call_date, r.agent_id,
       r.duration_s AS call_duration_s, s.channel, s.seq, s.speaker, s.start_s, s.end_s,
       s.text_redacted AS text, callscribe_redact(s.next_text) AS next_text, s.tsv, s.tsv_pair,
       s.word_starts
FROM segments AS s
JOIN recordings AS r ON r.id = s.recording_id
"""

# 0003's search with hit_s added (the word the hit is about); otherwise the same.
SEARCH_FUNCTION = """
CREATE FUNCTION analytics.search(
    query text,
    from_date date DEFAULT NULL,
    to_date date DEFAULT NULL,
    speaker_filter text DEFAULT NULL,
    agent_filter text DEFAULT NULL,
    min_duration_s double precision DEFAULT NULL,
    fuzzy boolean DEFAULT false,
    max_hits integer DEFAULT 20
) RETURNS TABLE (
    object_key text, bucket text, call_date date, agent_id text, channel smallint, speaker text,
    start_s real, end_s real, snippet text, rank real, match text, hit_s real
)
LANGUAGE sql STABLE SECURITY INVOKER AS $$
WITH q AS (SELECT websearch_to_tsquery('english', query) AS tsq),
scope AS NOT MATERIALIZED (
    SELECT s.* FROM analytics.segment_search AS s
    WHERE (speaker_filter IS NULL OR s.speaker = speaker_filter)
      AND ((from_date IS NULL AND to_date IS NULL AND agent_filter IS NULL AND min_duration_s IS NULL)
           OR EXISTS (SELECT 1 FROM analytics.recordings AS r
                      WHERE r.recording_id = s.recording_id
                        AND (from_date IS NULL OR r.call_date >= from_date)
                        AND (to_date IS NULL OR r.call_date <= to_date)
                        AND (agent_filter IS NULL OR r.agent_id = agent_filter)
                        AND (min_duration_s IS NULL OR r.duration_s >= min_duration_s)))
),
candidates AS (
    SELECT s.segment_id, s.recording_id, s.channel, s.seq, s.tsv @@ q.tsq AS own,
           ts_rank_cd(s.tsv_pair, q.tsq) AS rank, false AS is_fuzzy
    FROM scope AS s, q
    WHERE s.tsv_pair @@ q.tsq
    UNION ALL
    SELECT s.segment_id, s.recording_id, s.channel, s.seq, true, (word_similarity(query, s.text) / 10)::real, true
    FROM scope AS s, q
    WHERE fuzzy AND query <% s.text AND NOT (s.tsv_pair @@ q.tsq)
),
top AS (
    SELECT * FROM candidates ORDER BY is_fuzzy, rank DESC, segment_id DESC LIMIT 2 * max_hits + 10
),
detail AS (
    SELECT t.*, seg.object_key, seg.bucket, seg.call_date, seg.agent_id, seg.speaker, seg.start_s, seg.end_s,
           seg.text, seg.next_text, seg.word_starts, nx.end_s AS next_end,
           COALESCE(nx.tsv @@ q.tsq, false) AS next_own, q.tsq
    FROM top AS t
    CROSS JOIN q
    JOIN analytics.segments AS seg ON seg.segment_id = t.segment_id
    LEFT JOIN analytics.segment_search AS nx
           ON nx.recording_id = t.recording_id AND nx.channel = t.channel AND nx.seq = t.seq + 1
)
SELECT d.object_key, d.bucket, d.call_date, d.agent_id, d.channel, d.speaker, d.start_s,
       CASE WHEN d.own THEN d.end_s ELSE COALESCE(d.next_end, d.end_s) END,
       CASE WHEN d.is_fuzzy THEN d.text
            ELSE ts_headline('english',
                             CASE WHEN d.own THEN d.text ELSE d.text || ' ' || COALESCE(d.next_text, '') END,
                             d.tsq, 'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=30, MinWords=8')
       END,
       d.rank,
       CASE WHEN d.is_fuzzy THEN 'fuzzy' WHEN d.own THEN 'text' ELSE 'across segments' END,
       COALESCE(analytics.word_time(d.text, d.word_starts, tsvector_to_array(to_tsvector('english', query)),
                                    CASE WHEN d.is_fuzzy THEN query END), d.start_s)
FROM detail AS d
WHERE d.is_fuzzy OR d.own OR NOT d.next_own
ORDER BY d.is_fuzzy, d.rank DESC, d.call_date DESC, d.object_key, d.start_s
LIMIT max_hits
$$
"""

SEARCH_ARGS = "text, date, date, text, text, double precision, boolean, integer"


def _raw(sql: str) -> None:
    # Function bodies hold regex text that SQLAlchemy would read as binds.
    with op.get_bind().connection.driver_connection.cursor() as cur:
        cur.execute(sql)


def _revision_0003():
    path = Path(__file__).with_name("0003_analyst_views_search_redaction.py")
    spec = importlib.util.spec_from_file_location("callscribe_migration_0003", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute("ALTER TABLE segments ADD COLUMN word_starts real[]")
    _raw(SEGMENTS_VIEW)
    _raw(WORD_TIME)
    op.execute(f"DROP FUNCTION analytics.search({SEARCH_ARGS})")
    _raw(SEARCH_FUNCTION)
    op.execute("GRANT EXECUTE ON FUNCTION analytics.word_time TO callscribe_analyst")
    op.execute("GRANT EXECUTE ON FUNCTION analytics.search TO callscribe_analyst")


def downgrade() -> None:
    old = _revision_0003()
    op.execute(f"DROP FUNCTION analytics.search({SEARCH_ARGS})")
    op.execute("DROP FUNCTION analytics.word_time(text, real[], text[], text)")
    op.execute("DROP VIEW analytics.segments")
    _raw(old.SEGMENTS_VIEW)
    op.execute("GRANT SELECT ON analytics.segments TO callscribe_analyst")
    _raw(old.SEARCH_FUNCTION)
    op.execute("GRANT EXECUTE ON FUNCTION analytics.search TO callscribe_analyst")
    op.execute("ALTER TABLE segments DROP COLUMN word_starts")
