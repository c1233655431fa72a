"""Search forgives spelling: no exact hit falls back to similar ones, typos and split words included.

``analytics.search``'s ``fuzzy`` argument now has three states: NULL (the default) searches
exactly and, only when nothing matches exactly, returns similar hits; true returns exact hits
and then similar ones; false returns exact hits only. Similar means either:

- the query's words with two neighbouring letters swapped ("Daivd" finds "David"), through
  ``analytics.typo_query`` and the same full-text index as exact search, or
- trigram word similarity with the text (misspellings, "Springfield" against "Spring Field").

Similar hits are ranked by how close they are (a swap counts as 0.9), and their snippet marks
the closest words. Everything is matched in the redacted text, as exact search is.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Per query word of 4+ letters that is not a stop word: the word or any of its adjacent-letter
# swaps; all words required. Only letters reach to_tsquery, so no query syntax gets through.
TYPO_QUERY = r"""
CREATE FUNCTION analytics.typo_query(query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsquery('english', string_agg('(' || alts || ')', ' & '))
    FROM (
        SELECT (SELECT string_agg(DISTINCT v, ' | ')
                FROM (SELECT w.word AS v
                      UNION ALL
                      SELECT substr(w.word, 1, i - 1) || substr(w.word, i + 1, 1) || substr(w.word, i, 1)
                             || substr(w.word, i + 2)
                      FROM generate_series(1, length(w.word) - 1) AS i) AS variants) AS alts
        FROM regexp_split_to_table(lower(query), '[^[:alpha:]]+') AS w(word)
        WHERE length(w.word) >= 4 AND to_tsvector('english', w.word) <> ''::tsvector
    ) AS per_word
$$
"""

# The one or two neighbouring words of a text most similar to the query, marked as exact
# search marks its words: "Spring Field" as a whole for "Springfield".
MARK_SIMILAR = r"""
CREATE FUNCTION analytics.mark_similar(text_ text, query text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH w AS (
        SELECT t.word, t.i FROM regexp_split_to_table(text_, '\s+') WITH ORDINALITY AS t(word, i)
    ), extents AS (
        SELECT a.i AS first, a.i AS last, a.word AS span FROM w AS a
        UNION ALL
        SELECT a.i, b.i, a.word || ' ' || b.word FROM w AS a JOIN w AS b ON b.i = a.i + 1
    ), best AS (
        SELECT first, last FROM extents
        ORDER BY similarity(query, span) DESC, last - first, first LIMIT 1
    )
    SELECT string_agg(CASE WHEN w.i = best.first THEN chr(2) ELSE '' END || w.word
                      || CASE WHEN w.i = best.last THEN chr(3) ELSE '' END, ' ' ORDER BY w.i)
    FROM w, best
$$
"""

SEARCH_FUNCTION = """
CREATE FUNCTION analytics.search(
    query text,
    from_date date DEFAULT NULL,
    to_date date DEFAULT NULL,
    speaker_filter text DEFAULT NULL,
    agent_filter text DEFAULT NULL,
    min_duration_s double precision DEFAULT NULL,
    fuzzy boolean DEFAULT NULL,
    max_hits integer DEFAULT 20
) RETURNS TABLE (
    object_key text, bucket text, call_date date, agent_id text, channel smallint, speaker text,
    start_s real, end_s real, snippet text, rank real, match text, hit_s real
)
LANGUAGE sql STABLE SECURITY INVOKER AS $$
WITH q AS (SELECT websearch_to_tsquery('english', query) AS tsq, analytics.typo_query(query) AS typo),
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
exact AS (
    SELECT s.segment_id, s.recording_id, s.channel, s.seq, s.tsv @@ q.tsq AS own,
           ts_rank_cd(s.tsv_pair, q.tsq) AS rank, false AS is_fuzzy, false AS typo
    FROM scope AS s, q
    WHERE s.tsv_pair @@ q.tsq
),
near_matches AS (
    SELECT s.segment_id, s.recording_id, s.channel, s.seq, true AS own,
           greatest(word_similarity(query, s.text),
                    CASE WHEN COALESCE(s.tsv @@ q.typo, false) THEN 0.9 ELSE 0 END)::real AS rank,
           true AS is_fuzzy, COALESCE(s.tsv @@ q.typo, false) AS typo
    FROM scope AS s, q
    WHERE (fuzzy OR (fuzzy IS NULL AND NOT EXISTS (SELECT 1 FROM exact)))
      -- A swap must be in the segment's own words (the pair vector, indexed, narrows it down).
      AND (query <% s.text OR COALESCE(s.tsv_pair @@ q.typo AND s.tsv @@ q.typo, false))
      AND NOT (s.tsv_pair @@ q.tsq)
),
candidates AS (
    SELECT * FROM exact UNION ALL SELECT * FROM near_matches
),
top AS (
    SELECT * FROM candidates ORDER BY is_fuzzy, rank DESC, segment_id DESC LIMIT 2 * max_hits + 10
),
detail AS (
    SELECT t.*, seg.object_key, seg.bucket, seg.call_date, seg.agent_id, seg.speaker, seg.start_s, seg.end_s,
           seg.text, seg.next_text, seg.word_starts, nx.end_s AS next_end,
           COALESCE(nx.tsv @@ q.tsq, false) AS next_own, q.tsq, q.typo AS typo_q
    FROM top AS t
    CROSS JOIN q
    JOIN analytics.segments AS seg ON seg.segment_id = t.segment_id
    LEFT JOIN analytics.segment_search AS nx
           ON nx.recording_id = t.recording_id AND nx.channel = t.channel AND nx.seq = t.seq + 1
)
SELECT d.object_key, d.bucket, d.call_date, d.agent_id, d.channel, d.speaker, d.start_s,
       CASE WHEN d.own THEN d.end_s ELSE COALESCE(d.next_end, d.end_s) END,
       CASE WHEN d.typo THEN ts_headline('english', d.text, d.typo_q,
                                         'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', HighlightAll=true')
            WHEN d.is_fuzzy THEN analytics.mark_similar(d.text, query)
            ELSE ts_headline('english',
                             CASE WHEN d.own THEN d.text ELSE d.text || ' ' || COALESCE(d.next_text, '') END,
                             d.tsq, 'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=30, MinWords=8')
       END,
       d.rank,
       CASE WHEN d.is_fuzzy THEN 'fuzzy' WHEN d.own THEN 'text' ELSE 'across segments' END,
       COALESCE(analytics.word_time(d.text, d.word_starts, query, d.is_fuzzy), d.start_s)
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


def upgrade() -> None:
    _raw(TYPO_QUERY)
    _raw(MARK_SIMILAR)
    op.execute(f"DROP FUNCTION analytics.search({SEARCH_ARGS})")
    _raw(SEARCH_FUNCTION)
    for fn in ("analytics.typo_query", "analytics.mark_similar", "analytics.search"):
        op.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO callscribe_analyst")


def downgrade() -> None:
    path = Path(__file__).with_name("0007_word_times.py")
    spec = importlib.util.spec_from_file_location("callscribe_migration_0007", path)
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    op.execute(f"DROP FUNCTION analytics.search({SEARCH_ARGS})")
    op.execute("DROP FUNCTION analytics.mark_similar(text, text), analytics.typo_query(text)")
    _raw(previous.SEARCH_FUNCTION)
    op.execute("GRANT EXECUTE ON FUNCTION analytics.search TO callscribe_analyst")
