"""Similar-word search through the transcripts' words, not a trigram index over every segment.

The trigram index on ``segments.text_redacted`` cost about 40 % of the database's work per loaded
segment (every segment's trigrams extracted and indexed). Similar matches now start from
``lexicon``: each distinct word of the redacted transcripts once, added by the loader, with the
trigram index on it. ``analytics.similar_query`` turns a query into the transcript words like its
words (misspelled: "Sarrah" -> "sarah"; a longer word holding one: "spring" -> "springfield"; an
asked word said as two: "springfield" -> "spring <-> field") and the pair vector's index finds
the segments holding them; as before, a candidate is kept only when its text is similar to the
words asked for (``<%``) or holds a letter swap of them.

``callscribe_words`` is the word rule (lower case, letters only, the rule of
``analytics.query_words``): the backfill and the loader (load_words.sql) both use it. The
lexicon follows deletions: whenever segments go (an erasure, a call deleted from the bucket, a
reload, a newer version), a trigger removes their words that no other segment holds, so no word
of a call outlives it. Pruning and the loader's additions are serialised by an advisory lock
(loads take it shared), so neither two erasures at once nor an erasure beside a load leave the
lexicon out of step with the segments.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SEARCH_ARGS = "text, date, date, text, text, double precision, boolean, integer, integer"

WORDS_FUNCTION = r"""
CREATE FUNCTION callscribe_words(text_ text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT w FROM regexp_split_to_table(lower(text_), '[^[:alpha:]]+') AS w
    WHERE w <> '' AND length(w) <= 40
$$
"""

LEXICON = """
CREATE TABLE lexicon (
    word     text PRIMARY KEY,
    added_at timestamptz NOT NULL DEFAULT now()
)
"""

# The lock that serialises pruning the lexicon (exclusive) with adding to it (shared).
LEXICON_LOCK = "hashtext('callscribe_lexicon')"

FORGET_WORDS = r"""
CREATE FUNCTION callscribe_forget_words() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    words text[];
BEGIN
    -- Stop words (no lexeme) are in every call, and the index cannot look them up.
    SELECT array_agg(DISTINCT w) INTO words
    FROM gone CROSS JOIN LATERAL callscribe_words(gone.text_redacted) AS w
    WHERE to_tsvector('english', w) <> ''::tsvector;
    IF words IS NULL THEN
        RETURN NULL;
    END IF;
    -- After any other pruning or load under way has committed, so the check below sees it.
    PERFORM pg_advisory_xact_lock(LEXICON_LOCK);
    DELETE FROM lexicon AS l
    WHERE l.word = ANY(words)
      AND NOT EXISTS (
          SELECT 1 FROM segments AS s
          WHERE s.tsv_pair @@ plainto_tsquery('english', l.word)
            AND s.text_redacted ~* ('(^|[^[:alpha:]])' || l.word || '($|[^[:alpha:]])'));
    RETURN NULL;
END $$;
CREATE TRIGGER segments_forget_words AFTER DELETE ON segments
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION callscribe_forget_words();
""".replace("LEXICON_LOCK", LEXICON_LOCK)

# The words like the query's, as a tsquery over the pair vector (english lexemes, OR-ed). Stop
# words are left out (they would widen the query to most segments); the lateral LIMIT keeps a
# common fragment from flooding it; the halves find a word said as two only when both halves
# are transcript words.
SIMILAR_QUERY = r"""
CREATE FUNCTION analytics.similar_query(query text) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH asked AS (
        SELECT DISTINCT w.word FROM unnest(analytics.query_words(query, false)) AS w(word)
        WHERE length(w.word) >= 3 AND to_tsvector('english', w.word) <> ''::tsvector
    ), alike AS (
        SELECT l.word FROM asked AS a
        CROSS JOIN LATERAL (
            SELECT v.word FROM analytics.words AS v
            WHERE v.word % a.word OR a.word <% v.word
            ORDER BY similarity(v.word, a.word) DESC, v.word
            LIMIT 16
        ) AS l
    ), halves AS (
        SELECT '(' || quote_literal(p.lexeme) || ' <-> ' || quote_literal(s.lexeme) || ')' AS term
        FROM asked AS a
        CROSS JOIN LATERAL generate_series(3, length(a.word) - 3) AS i
        JOIN analytics.words AS head ON head.word = left(a.word, i)
        JOIN analytics.words AS tail ON tail.word = substr(a.word, i + 1)
        CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', head.word))) AS p(lexeme)
        CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', tail.word))) AS s(lexeme)
    ), terms AS (
        SELECT quote_literal(x.lexeme) AS term
        FROM alike CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', alike.word))) AS x(lexeme)
        UNION
        SELECT term FROM halves
    )
    SELECT to_tsquery('simple', string_agg(term, ' | ' ORDER BY term)) FROM terms HAVING count(*) > 0
$$
"""

# 0012's search with the similar candidates found through the words; the rest is unchanged.
OLD_CANDIDATES = """\
            -- Two indexed conditions (trigrams on the text, the pair vector), so the planner can OR
            -- two index scans; then what each really requires: similar to the words asked for
            -- without the excluded ones, or a swap in the segment's own words.
            WHERE (q_positive <% s.text OR s.tsv_pair @@ q_typo)"""
NEW_CANDIDATES = """\
            -- Candidates from the pair vector's index: a transcript word like one asked for, or a
            -- swap; then what each really requires: similar to the words asked for without the
            -- excluded ones, or a swap in the segment's own words.
            WHERE (s.tsv_pair @@ q_similar OR s.tsv_pair @@ q_typo)"""
OLD_DECLARE = "    q_typo tsquery := analytics.typo_query(query);\n"
NEW_DECLARE = OLD_DECLARE + "    q_similar tsquery;\n"
OLD_FUZZY_START = "      days := NULLIF(GREATEST(recent_days, 0), 0);\n      LOOP\n"
NEW_FUZZY_START = "      q_similar := analytics.similar_query(query);\n" + OLD_FUZZY_START


def _module(name: str):
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"callscribe_migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raw(sql: str) -> None:
    # Function bodies hold text that SQLAlchemy would read as binds.
    with op.get_bind().connection.driver_connection.cursor() as cur:
        cur.execute(sql)


def _replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"0012's search changed: {old[:60]!r}"
    return text.replace(old, new)


def search_function() -> str:
    text = _module("0012_search_at_scale_call_metrics.py").SEARCH_FUNCTION
    text = _replaced(text, OLD_CANDIDATES, NEW_CANDIDATES)
    text = _replaced(text, OLD_DECLARE, NEW_DECLARE)
    text = _replaced(text, OLD_FUZZY_START, NEW_FUZZY_START)
    return text.replace("CREATE FUNCTION analytics.search(", "CREATE OR REPLACE FUNCTION analytics.search(", 1)


def upgrade() -> None:
    _raw(WORDS_FUNCTION)
    op.execute(LEXICON)
    op.execute("INSERT INTO lexicon (word) SELECT DISTINCT callscribe_words(text_redacted) FROM segments")
    op.execute("CREATE INDEX lexicon_trgm_idx ON lexicon USING gin (word gin_trgm_ops)")
    op.execute("CREATE VIEW analytics.words AS SELECT word FROM lexicon")
    op.execute("GRANT SELECT ON analytics.words TO callscribe_analyst")
    op.execute("GRANT SELECT ON lexicon TO callscribe_privileged")
    _raw(FORGET_WORDS)
    _raw(SIMILAR_QUERY)
    op.execute("GRANT EXECUTE ON FUNCTION analytics.similar_query(text) TO callscribe_analyst")
    _raw(search_function())
    op.execute("DROP INDEX IF EXISTS segments_text_trgm_idx")


def downgrade() -> None:
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute("CREATE INDEX segments_text_trgm_idx ON segments USING gin (text_redacted gin_trgm_ops)")
    old = _module("0012_search_at_scale_call_metrics.py").SEARCH_FUNCTION
    _raw(old.replace("CREATE FUNCTION analytics.search(", "CREATE OR REPLACE FUNCTION analytics.search(", 1))
    op.execute("DROP FUNCTION analytics.similar_query(text)")
    op.execute("DROP TRIGGER segments_forget_words ON segments")
    op.execute("DROP FUNCTION callscribe_forget_words()")
    op.execute("DROP VIEW analytics.words")
    op.execute("DROP TABLE lexicon")
    op.execute("DROP FUNCTION callscribe_words(text)")
