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

# The query's words as websearch_to_tsquery reads them: a word after "-" is excluded, OR is an
# operator, quotes and other signs separate words. Letters only, at most 12 words of at most 40
# letters (the swaps of a word grow with the square of its length).
QUERY_WORDS = r"""
CREATE FUNCTION analytics.query_words(query text, excluded boolean) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(array_agg(w.word ORDER BY w.i, w.j), '{}')
    FROM (
        SELECT lower(p.piece) AS word, t.i, p.j
        FROM regexp_split_to_table(query, '\s+') WITH ORDINALITY AS t(tok, i)
        CROSS JOIN LATERAL regexp_split_to_table(t.tok, '[^[:alpha:]]+') WITH ORDINALITY AS p(piece, j)
        WHERE (left(ltrim(t.tok, '"('), 1) = '-') = excluded
          AND lower(t.tok) <> 'or' AND p.piece <> '' AND length(p.piece) <= 40
        ORDER BY t.i, p.j
        LIMIT 12
    ) AS w
$$
"""

# A word and its adjacent-letter swaps ("daivd" -> "adivd", "diavd", "david", "daidv").
SWAPS = r"""
CREATE FUNCTION analytics.swaps(word text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT word
    UNION
    SELECT substr(word, 1, i - 1) || substr(word, i + 1, 1) || substr(word, i, 1) || substr(word, i + 2)
    FROM generate_series(1, length(word) - 1) AS i
$$
"""

# Per query word of 4+ letters that is not a stop word: the word or one of its swaps; the words
# joined as the query joins them (all required, or any when it says OR); excluded words stay
# excluded. NULL when no word qualifies. Only letters reach to_tsquery: no query syntax gets in.
TYPO_QUERY = r"""
CREATE FUNCTION analytics.typo_query(query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH words AS (
        SELECT w.word, w.i FROM unnest(analytics.query_words(query, false)) WITH ORDINALITY AS w(word, i)
        WHERE length(w.word) >= 4 AND to_tsvector('english', w.word) <> ''::tsvector
    ), groups AS (
        SELECT i, '(' || (SELECT string_agg(v, ' | ') FROM analytics.swaps(word) AS v) || ')' AS g FROM words
    ), excluded AS (
        SELECT string_agg('!' || e, ' & ') AS ex FROM unnest(analytics.query_words(query, true)) AS e
        WHERE to_tsvector('english', e) <> ''::tsvector
    )
    SELECT to_tsquery('english', '(' || string_agg(g, CASE WHEN query ~* '(^|\s)or(\s|$)' THEN ' | ' ELSE ' & ' END
                                                   ORDER BY i) || ')'
                                 || COALESCE(' & ' || (SELECT ex FROM excluded), ''))
    FROM groups
    HAVING count(*) > 0
$$
"""

# The lexemes typo_query can match: where a swapped-letter hit's word is.
TYPO_LEXEMES = r"""
CREATE FUNCTION analytics.typo_lexemes(query text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT tsvector_to_array(to_tsvector('english', string_agg(v, ' ')))
    FROM unnest(analytics.query_words(query, false)) AS w(word)
    CROSS JOIN LATERAL analytics.swaps(w.word) AS v
    WHERE length(w.word) >= 4
$$
"""

EXCLUDED_QUERY = r"""
CREATE FUNCTION analytics.excluded_query(query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsquery('english', string_agg(e, ' | '))
    FROM unnest(analytics.query_words(query, true)) AS e
    WHERE to_tsvector('english', e) <> ''::tsvector
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
WITH q AS (
    SELECT websearch_to_tsquery('english', query) AS tsq, analytics.typo_query(query) AS typo,
           analytics.typo_lexemes(query) AS typo_lexemes, analytics.excluded_query(query) AS excluded,
           array_to_string(analytics.query_words(query, false), ' ') AS positive
),
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
           CASE WHEN COALESCE(s.tsv @@ q.typo, false) THEN 0.9
                ELSE word_similarity(q.positive, s.text) END::real AS rank,
           true AS is_fuzzy, COALESCE(s.tsv @@ q.typo, false) AS typo
    FROM scope AS s, q
    -- The automatic fallback needs a real word to go on (4+ letters, not a stop word): "the" or
    -- "a" alone would make nearly every segment similar.
    WHERE (fuzzy OR (fuzzy IS NULL AND q.typo IS NOT NULL AND NOT EXISTS (SELECT 1 FROM exact)))
      -- Two indexed conditions (trigrams on the text, the pair vector), so the planner can OR two
      -- index scans; then what each really requires: similar to the words asked for without the
      -- excluded ones, or a swap in the segment's own words.
      AND (q.positive <% s.text OR s.tsv_pair @@ q.typo)
      AND ((q.positive <% s.text AND NOT COALESCE(s.tsv @@ q.excluded, false)) OR s.tsv @@ q.typo)
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
           COALESCE(nx.tsv @@ q.tsq, false) AS next_own, q.tsq, q.typo AS typo_q, q.typo_lexemes, q.positive
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
            WHEN d.is_fuzzy THEN analytics.mark_similar(d.text, d.positive)
            ELSE ts_headline('english',
                             CASE WHEN d.own THEN d.text ELSE d.text || ' ' || COALESCE(d.next_text, '') END,
                             d.tsq, 'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=30, MinWords=8')
       END,
       d.rank,
       CASE WHEN d.is_fuzzy THEN 'fuzzy' WHEN d.own THEN 'text' ELSE 'across segments' END,
       COALESCE(analytics.word_time(
                    d.text, d.word_starts,
                    CASE WHEN d.typo THEN d.typo_lexemes
                         ELSE tsvector_to_array(to_tsvector('english', d.positive)) END,
                    CASE WHEN d.is_fuzzy AND NOT d.typo THEN d.positive END),
                d.start_s)
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


HELPERS = ("analytics.query_words(text, boolean)", "analytics.swaps(text)", "analytics.typo_query(text)",
           "analytics.typo_lexemes(text)", "analytics.excluded_query(text)", "analytics.mark_similar(text, text)")


def upgrade() -> None:
    for sql in (QUERY_WORDS, SWAPS, TYPO_QUERY, TYPO_LEXEMES, EXCLUDED_QUERY, MARK_SIMILAR):
        _raw(sql)
    op.execute(f"DROP FUNCTION analytics.search({SEARCH_ARGS})")
    _raw(SEARCH_FUNCTION)
    for fn in (*HELPERS, f"analytics.search({SEARCH_ARGS})"):
        op.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO callscribe_analyst")


def downgrade() -> None:
    path = Path(__file__).with_name("0007_word_times.py")
    spec = importlib.util.spec_from_file_location("callscribe_migration_0007", path)
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    op.execute(f"DROP FUNCTION analytics.search({SEARCH_ARGS})")
    op.execute("DROP FUNCTION " + ", ".join(reversed(HELPERS)))
    _raw(previous.SEARCH_FUNCTION)
    op.execute("GRANT EXECUTE ON FUNCTION analytics.search TO callscribe_analyst")
