"""Similar matches: every typed word's likes required, and at most 4,000 candidates checked.

A similar (fuzzy) search takes as candidates the segments holding a transcript word like a
typed one (``analytics.similar_query``), then checks each: word similarity to the typed words,
or a letter swap. A query of several ordinary words ("the customer wants a refnd on the bil")
makes most segments candidates, few pass the check, so the window widened to a year and every
candidate of the year was checked: 15.6 s on the 1M-segment bench database, 2.6 s for
"siobahn paymnt routr". Now each widening step takes only the days it adds (newest first), and
the search stops widening once 4,000 candidates have been checked: a few hundred ms at most.

And the candidates are better: ``analytics.similar_query`` required a word like *any* typed one
(an OR over all), though the check then wants the typed words together; it now wants a word
like *each* typed one (an AND of one OR-group per typed word; a word with no like in the
transcripts is left out rather than finding nothing). A query written with OR keeps the OR.
On the bench database "refnd discont" found 20 similar hits in 1.0 s before, and finds them
among far fewer candidates now; one-word and name searches are unchanged.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-26
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BUDGET = 4000

# 0013's similar_query, its terms grouped per typed word: AND between the groups (OR when the
# query says OR), OR within a group (the word's likes and its halves).
SIMILAR_QUERY = r"""
CREATE OR REPLACE FUNCTION analytics.similar_query(query text) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH asked AS (
        SELECT DISTINCT w.word FROM unnest(analytics.query_words(query, false)) AS w(word)
        WHERE length(w.word) >= 3 AND to_tsvector('english', w.word) <> ''::tsvector
    ), alike AS (
        SELECT a.word AS asked, l.word FROM asked AS a
        CROSS JOIN LATERAL (
            SELECT v.word FROM analytics.words AS v
            WHERE v.word % a.word OR a.word <% v.word
            ORDER BY similarity(v.word, a.word) DESC, v.word
            LIMIT 16
        ) AS l
    ), halves AS (
        SELECT a.word AS asked, '(' || quote_literal(p.lexeme) || ' <-> ' || quote_literal(s.lexeme) || ')' AS term
        FROM asked AS a
        CROSS JOIN LATERAL generate_series(3, length(a.word) - 3) AS i
        JOIN analytics.words AS head ON head.word = left(a.word, i)
        JOIN analytics.words AS tail ON tail.word = substr(a.word, i + 1)
        CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', head.word))) AS p(lexeme)
        CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', tail.word))) AS s(lexeme)
    ), terms AS (
        SELECT alike.asked, quote_literal(x.lexeme) AS term
        FROM alike CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', alike.word))) AS x(lexeme)
        UNION
        SELECT asked, term FROM halves
    ), groups AS (
        SELECT '(' || string_agg(term, ' | ' ORDER BY term) || ')' AS grp FROM terms GROUP BY asked
    )
    SELECT to_tsquery('simple', string_agg(grp, CASE WHEN query ~* '(^|\s)or(\s|$)' THEN ' | ' ELSE ' & ' END
                                           ORDER BY grp))
    FROM groups HAVING count(*) > 0
$$
"""

OLD_DECLARE = "    near analytics.search_candidate[] := '{}';\n"
NEW_DECLARE = OLD_DECLARE + """\
    found analytics.search_candidate[];
    -- Similar candidates checked so far, and the last day of the window's newest slice.
    checked integer := 0;
    pooled integer;
    upper_day date;
"""

OLD_LOOP_START = """\
      days := NULLIF(GREATEST(recent_days, 0), 0);
      LOOP
        lo := newest - (days - 1);
        IF lo <= oldest THEN
            lo := NULL;
        END IF;
        SELECT COALESCE(array_agg(c.cand), '{}') INTO near
"""

NEW_LOOP = """\
      days := NULLIF(GREATEST(recent_days, 0), 0);
      upper_day := COALESCE(to_date, 'infinity'::date);
      LOOP
        lo := newest - (days - 1);
        IF lo <= oldest THEN
            lo := NULL;
        END IF;
        -- The days this window adds, at most what is left of the budget of candidates (a query of
        -- common words makes most segments candidates), then what each really requires: similar
        -- to the words asked for without the excluded ones, or a swap in the segment's own words.
        SELECT count(*),
               COALESCE(array_agg(ROW(c.segment_id, c.recording_id, c.channel, c.seq,
                                      CASE WHEN c.typo THEN 0.9 ELSE word_similarity(q_positive, c.text) END,
                                      true, c.typo)::analytics.search_candidate) FILTER (WHERE c.passes), '{}')
        INTO pooled, found
        FROM (
            SELECT s.segment_id, s.recording_id, s.channel, s.seq, s.text, t.typo,
                   t.typo OR (q_positive <% s.text AND NOT COALESCE(o.tsv @@ q_excluded, false)) AS passes
            FROM (
                -- Candidates from the pair vector's index: a transcript word like one asked for, or a swap.
                SELECT s.* FROM analytics.segment_search AS s
                WHERE (s.tsv_pair @@ q_similar OR s.tsv_pair @@ q_typo)
                  AND NOT (s.tsv_pair @@ q_tsq)
                  AND s.call_date >= COALESCE(lo, from_date, '-infinity'::date)
                  AND s.call_date <= upper_day
                  AND (speaker_filter IS NULL OR s.speaker = speaker_filter)
                  AND (agent_filter IS NULL OR s.agent_id = agent_filter)
                  AND (min_duration_s IS NULL
                       OR EXISTS (SELECT 1 FROM analytics.recordings AS r
                                  WHERE r.recording_id = s.recording_id AND r.duration_s >= min_duration_s))
                LIMIT BUDGET - checked
            ) AS s
            CROSS JOIN LATERAL (SELECT to_tsvector('english', s.text) AS tsv) AS o
            CROSS JOIN LATERAL (SELECT COALESCE(o.tsv @@ q_typo, false) AS typo) AS t
        ) AS c;
        checked := checked + pooled;
        near := near || found;
        EXIT WHEN lo IS NULL OR cardinality(near) >= max_hits OR checked >= BUDGET;
        upper_day := lo - 1;
        days := CASE WHEN days < 7 THEN 7 WHEN days < 30 THEN 30 WHEN days < 90 THEN 90
                     WHEN days < 365 THEN 365 END;
      END LOOP;
      -- The best max_hits of them; similar hits come after every exact one.
      near := ARRAY(SELECT n FROM unnest(near) AS n ORDER BY n.rank DESC, n.segment_id DESC LIMIT max_hits);
    END IF;
""".replace("BUDGET", str(BUDGET))


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


def search_function() -> str:
    """0013's search with the similar-match loop above in place of its own."""
    text = _module("0013_transcript_words.py").search_function()
    assert text.count(OLD_DECLARE) == 1 and text.count(OLD_LOOP_START) == 1, "0013's search changed"
    text = text.replace(OLD_DECLARE, NEW_DECLARE)
    start = text.index(OLD_LOOP_START)
    end = text.index("      END LOOP;\n    END IF;\n", start) + len("      END LOOP;\n    END IF;\n")
    return text[:start] + NEW_LOOP + text[end:]


def upgrade() -> None:
    _raw(SIMILAR_QUERY)
    _raw(search_function())


def downgrade() -> None:
    old = _module("0013_transcript_words.py")
    _raw(old.SIMILAR_QUERY.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    _raw(old.search_function())
