"""Search and call metrics at scale: day and agent on segments, per-call metrics at load, windowed ranking.

- ``segments.call_date`` and ``segments.agent_id`` copy the recording's, filled by the loader (a
  trigger fills them for any other insert), so date and agent filters need no join and use
  ``segments_day_idx`` / ``segments_agent_day_idx``.
- ``segments.tsv`` (the segment's own search vector, stored but never indexed) is gone: one
  ``to_tsvector`` less per loaded row. Search computes it for its top hits only; the
  ``analytics.segments`` view still has the column, computed when read.
- ``call_metrics``: talk time per speaker, talk in total and as a union (silence, overtalk), the
  longest monologue and the segment count of each call, computed by the loader in the transaction
  that replaces the segments (and backfilled here). ``analytics.calls`` reads it instead of
  aggregating every segment. Deleting a call's segments deletes its metrics (a trigger), so
  discovery's and erasure's deletions need no change.
- ``analytics.search`` ranks within a recent window: the newest day with calls first (in the
  asked range), widened to 7, 30, 90 and 365 days, then the whole range, until enough exact hits
  are found (``recent_days`` sets the first window; NULL ranks every match as before). Similar
  matches, when they are needed (the fallback still needs no exact match in the whole range), are
  looked for in widening windows the same way.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_SEARCH_ARGS = "text, date, date, text, text, double precision, boolean, integer"
SEARCH_ARGS = OLD_SEARCH_ARGS + ", integer"

FILL_CALL = """
CREATE FUNCTION callscribe_segment_call() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Inserts other than the loader's (which sets both) get the recording's day and agent.
    SELECT r.call_date, r.agent_id INTO NEW.call_date, NEW.agent_id FROM recordings AS r WHERE r.id = NEW.recording_id;
    RETURN NEW;
END $$;
CREATE TRIGGER segments_call_fill BEFORE INSERT ON segments
    FOR EACH ROW WHEN (NEW.call_date IS NULL) EXECUTE FUNCTION callscribe_segment_call();
"""

FORGET_METRICS = """
CREATE FUNCTION callscribe_forget_call_metrics() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A call whose segments go (reload, superseded, deleted from the bucket) loses its metrics;
    -- the loader inserts the new ones after.
    DELETE FROM call_metrics WHERE recording_id IN (SELECT DISTINCT recording_id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER segments_forget_metrics AFTER DELETE ON segments
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION callscribe_forget_call_metrics();
"""

CALL_METRICS = """
CREATE TABLE call_metrics (
    recording_id        bigint PRIMARY KEY REFERENCES recordings (id) ON DELETE CASCADE,
    talk_time_s         jsonb NOT NULL,     -- per speaker: the union of their segments, 2 decimals
    talk_sum_s          numeric NOT NULL,   -- sum of the speakers' talk times
    talk_union_s        numeric NOT NULL,   -- someone talking (silence is the rest of the call)
    overlap_s           numeric NOT NULL,   -- two talking at once: sum - union
    longest_monologue_s numeric NOT NULL,   -- longest run of one speaker's consecutive segments
    longest_monologue_speaker text,
    segments            integer NOT NULL,
    computed_at         timestamptz NOT NULL DEFAULT now()
)
"""

# The same computation as load_replace.sql's, over the segments already loaded.
BACKFILL_METRICS = """
WITH s AS (
    SELECT recording_id, channel, seq, speaker, start_s, end_s FROM segments
), talk AS (
    SELECT recording_id, speaker, range_agg(numrange(start_s::numeric, end_s::numeric)) AS spans, count(*) AS n
    FROM s GROUP BY recording_id, speaker
), per_call AS (
    SELECT recording_id, jsonb_object_agg(speaker, round(callscribe_seconds(spans), 2)) AS talk_time_s,
           sum(callscribe_seconds(spans)) AS talk_sum_s, callscribe_seconds(range_agg(spans)) AS talk_union_s,
           sum(n)::integer AS segments
    FROM talk GROUP BY recording_id
), turns AS (
    SELECT recording_id, speaker, start_s, end_s,
           sum(changed::integer) OVER (PARTITION BY recording_id ORDER BY start_s, channel, seq) AS turn
    FROM (SELECT s.*, speaker IS DISTINCT FROM lag(speaker) OVER (PARTITION BY recording_id
                                                                   ORDER BY start_s, channel, seq) AS changed
          FROM s) AS x
), monologue AS (
    SELECT DISTINCT ON (recording_id) recording_id, speaker, max(end_s) - min(start_s) AS len
    FROM turns GROUP BY recording_id, turn, speaker
    ORDER BY recording_id, len DESC, turn
)
INSERT INTO call_metrics (recording_id, talk_time_s, talk_sum_s, talk_union_s, overlap_s, longest_monologue_s,
                          longest_monologue_speaker, segments)
SELECT p.recording_id, p.talk_time_s, p.talk_sum_s, p.talk_union_s, round(p.talk_sum_s - p.talk_union_s, 2),
       round(m.len::numeric, 2), m.speaker, p.segments
FROM per_call AS p JOIN monologue AS m ON m.recording_id = p.recording_id
"""

VIEWS = """
CREATE VIEW analytics.segments AS
SELECT s.id AS segment_id, s.recording_id, r.object_key, r.bucket, s.call_date, s.agent_id,
       r.duration_s AS call_duration_s, s.channel, s.seq, s.speaker, s.start_s, s.end_s,
       s.text_redacted AS text, s.next_redacted AS next_text,
       to_tsvector('english', s.text_redacted) AS tsv, s.tsv_pair, s.word_starts
FROM segments AS s
JOIN recordings AS r ON r.id = s.recording_id;

CREATE VIEW analytics.segment_search AS
SELECT s.id AS segment_id, s.recording_id, s.channel, s.seq, s.speaker, s.start_s, s.end_s,
       s.text_redacted AS text, s.tsv_pair, s.call_date, s.agent_id
FROM segments AS s;

CREATE VIEW analytics.calls AS
SELECT r.id AS recording_id, r.object_key, r.bucket, r.call_id, r.call_date, r.agent_id,
       (SELECT COALESCE(jsonb_object_agg(m.key, m.value), '{}'::jsonb)
        FROM jsonb_each(COALESCE(r.metadata, '{}'::jsonb)) AS m
        WHERE m.key IN (SELECT key FROM public.analyst_metadata_keys)) AS metadata,
       r.status, callscribe_redact(r.last_error) AS last_error, r.attempts, r.duration_s, r.channels, r.codec,
       r.sample_rate,
       COALESCE(c.talk_time_s, '{}'::jsonb) AS talk_time_s,
       (c.talk_time_s ->> 'agent')::numeric AS agent_talk_s,
       (c.talk_time_s ->> 'customer')::numeric AS customer_talk_s,
       CASE WHEN r.duration_s > 0
            THEN round(greatest(0, 1 - COALESCE(c.talk_union_s, 0) / r.duration_s::numeric), 4) END
           AS silence_share,
       COALESCE(c.overlap_s, 0) AS overlap_s,
       COALESCE(c.segments, 0) AS segments,
       r.discovered_at, r.transcribed_at,
       CASE WHEN r.duration_s > 0
            THEN round(greatest(0, r.duration_s::numeric - COALESCE(c.talk_union_s, 0)), 2) END AS silence_s,
       c.longest_monologue_s, c.longest_monologue_speaker
FROM recordings AS r
LEFT JOIN call_metrics AS c ON c.recording_id = r.id;
"""

DROP_VIEWS = "DROP VIEW analytics.segments, analytics.segment_search, analytics.calls"

CANDIDATE = """
CREATE TYPE analytics.search_candidate AS (
    segment_id bigint, recording_id bigint, channel smallint, seq integer, rank real, is_fuzzy boolean, typo boolean
)
"""

# 0008's search (same arguments, hits, fallback, snippets and hit_s), with the exact matches ranked
# in a window that widens until it holds enough of them. plan_cache_mode: each statement is planned
# with the query's own values (a tsquery's selectivity decides between the text and the day index).
SEARCH_FUNCTION = """
CREATE FUNCTION analytics.search(
    query text,
    from_date date DEFAULT NULL,
    to_date date DEFAULT NULL,
    speaker_filter text DEFAULT NULL,
    agent_filter text DEFAULT NULL,
    min_duration_s double precision DEFAULT NULL,
    fuzzy boolean DEFAULT NULL,
    max_hits integer DEFAULT 20,
    recent_days integer DEFAULT 1
) RETURNS TABLE (
    object_key text, bucket text, call_date date, agent_id text, channel smallint, speaker text,
    start_s real, end_s real, snippet text, rank real, match text, hit_s real
)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    q_tsq tsquery := websearch_to_tsquery('english', query);
    q_typo tsquery := analytics.typo_query(query);
    q_typo_lexemes text[] := analytics.typo_lexemes(query);
    q_excluded tsquery := analytics.excluded_query(query);
    q_positive text := array_to_string(analytics.query_words(query, false), ' ');
    -- Room for pair matches dropped below in favour of the next segment's own match.
    k integer := 2 * GREATEST(max_hits, 0) + 10;
    newest date;
    oldest date;
    lo date;
    days integer := NULLIF(GREATEST(recent_days, 0), 0);
    exact analytics.search_candidate[];
    near analytics.search_candidate[] := '{}';
BEGIN
    IF max_hits IS NULL OR max_hits <= 0 THEN
        RETURN;
    END IF;
    -- Windows end at the newest day with transcribed calls (within to_date), not at today: a quiet
    -- week still shows its calls. From the recordings' (day, status) index.
    SELECT max(r.call_date) INTO newest FROM analytics.recordings AS r
    WHERE r.status = 'done' AND (to_date IS NULL OR r.call_date <= to_date);
    IF newest IS NULL THEN
        RETURN;
    END IF;
    -- A window reaching back to the oldest day (or from_date) is the whole range: no wider one.
    SELECT GREATEST(min(r.call_date), from_date) INTO oldest FROM analytics.recordings AS r WHERE r.status = 'done';
    LOOP
        lo := newest - (days - 1);  -- NULL when days is NULL: the whole range
        IF lo <= oldest THEN
            lo := NULL;
        END IF;
        SELECT COALESCE(array_agg(c.cand), '{}') INTO exact
        FROM (
            SELECT ROW(s.segment_id, s.recording_id, s.channel, s.seq, ts_rank_cd(s.tsv_pair, q_tsq), false, false)
                       ::analytics.search_candidate AS cand
            FROM analytics.segment_search AS s
            WHERE s.tsv_pair @@ q_tsq
              AND s.call_date >= COALESCE(lo, from_date, '-infinity'::date)
              AND s.call_date <= COALESCE(to_date, 'infinity'::date)
              AND (speaker_filter IS NULL OR s.speaker = speaker_filter)
              AND (agent_filter IS NULL OR s.agent_id = agent_filter)
              AND (min_duration_s IS NULL
                   OR EXISTS (SELECT 1 FROM analytics.recordings AS r
                              WHERE r.recording_id = s.recording_id AND r.duration_s >= min_duration_s))
            ORDER BY ts_rank_cd(s.tsv_pair, q_tsq) DESC, s.segment_id DESC
            LIMIT k
        ) AS c;
        EXIT WHEN lo IS NULL OR cardinality(exact) >= k;
        days := CASE WHEN days < 7 THEN 7 WHEN days < 30 THEN 30 WHEN days < 90 THEN 90
                     WHEN days < 365 THEN 365 END;
    END LOOP;

    -- Similar matches: asked for and room left, or (the automatic fallback) no exact match in
    -- the whole range and a real word to go on (4+ letters, not a stop word).
    IF (fuzzy AND cardinality(exact) < k)
       OR (fuzzy IS NULL AND q_typo IS NOT NULL AND cardinality(exact) = 0) THEN
      -- In widening windows too: checking a trigram candidate's similarity is the costly part.
      days := NULLIF(GREATEST(recent_days, 0), 0);
      LOOP
        lo := newest - (days - 1);
        IF lo <= oldest THEN
            lo := NULL;
        END IF;
        SELECT COALESCE(array_agg(c.cand), '{}') INTO near
        FROM (
            SELECT ROW(s.segment_id, s.recording_id, s.channel, s.seq,
                       CASE WHEN COALESCE(o.tsv @@ q_typo, false) THEN 0.9 ELSE word_similarity(q_positive, s.text) END,
                       true, COALESCE(o.tsv @@ q_typo, false))::analytics.search_candidate AS cand,
                   CASE WHEN COALESCE(o.tsv @@ q_typo, false) THEN 0.9
                        ELSE word_similarity(q_positive, s.text) END::real AS rank_, s.segment_id
            FROM analytics.segment_search AS s
            CROSS JOIN LATERAL (SELECT to_tsvector('english', s.text) AS tsv) AS o
            -- Two indexed conditions (trigrams on the text, the pair vector), so the planner can OR
            -- two index scans; then what each really requires: similar to the words asked for
            -- without the excluded ones, or a swap in the segment's own words.
            WHERE (q_positive <% s.text OR s.tsv_pair @@ q_typo)
              AND ((q_positive <% s.text AND NOT COALESCE(o.tsv @@ q_excluded, false)) OR COALESCE(o.tsv @@ q_typo, false))
              AND NOT (s.tsv_pair @@ q_tsq)
              AND s.call_date >= COALESCE(lo, from_date, '-infinity'::date)
              AND s.call_date <= COALESCE(to_date, 'infinity'::date)
              AND (speaker_filter IS NULL OR s.speaker = speaker_filter)
              AND (agent_filter IS NULL OR s.agent_id = agent_filter)
              AND (min_duration_s IS NULL
                   OR EXISTS (SELECT 1 FROM analytics.recordings AS r
                              WHERE r.recording_id = s.recording_id AND r.duration_s >= min_duration_s))
            ORDER BY rank_ DESC, s.segment_id DESC
            LIMIT max_hits
        ) AS c;
        -- Similar hits come after every exact one and none is dropped: max_hits of them always fill
        -- the page.
        EXIT WHEN lo IS NULL OR cardinality(near) >= max_hits;
        days := CASE WHEN days < 7 THEN 7 WHEN days < 30 THEN 30 WHEN days < 90 THEN 90
                     WHEN days < 365 THEN 365 END;
      END LOOP;
    END IF;

    RETURN QUERY
    WITH top AS (
        SELECT t.* FROM unnest(exact || near) AS t
    ), detail AS (
        SELECT t.*, seg.object_key, seg.bucket, seg.call_date, seg.agent_id, seg.speaker, seg.start_s, seg.end_s,
               seg.text, seg.next_text, seg.word_starts, nx.end_s AS next_end,
               t.is_fuzzy OR to_tsvector('english', seg.text) @@ q_tsq AS own,
               COALESCE(to_tsvector('english', nx.text) @@ q_tsq, false) AS next_own
        FROM top AS t
        JOIN analytics.segments AS seg ON seg.segment_id = t.segment_id
        LEFT JOIN analytics.segment_search AS nx
               ON nx.recording_id = t.recording_id AND nx.channel = t.channel AND nx.seq = t.seq + 1
    )
    -- One hit per moment: a segment whose own text matches, or a segment and the next one of the
    -- same speaker when only the pair does (a phrase split across two chunks). Snippets only for
    -- the hits returned: ts_headline is costly.
    SELECT d.object_key, d.bucket, d.call_date, d.agent_id, d.channel, d.speaker, d.start_s,
           CASE WHEN d.own THEN d.end_s ELSE COALESCE(d.next_end, d.end_s) END,
           CASE WHEN d.typo THEN ts_headline('english', d.text, q_typo,
                                             'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', HighlightAll=true')
                WHEN d.is_fuzzy THEN analytics.mark_similar(d.text, q_positive)
                ELSE ts_headline('english',
                                 CASE WHEN d.own THEN d.text ELSE d.text || ' ' || COALESCE(d.next_text, '') END,
                                 q_tsq, 'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=30, MinWords=8')
           END,
           d.rank,
           CASE WHEN d.is_fuzzy THEN 'fuzzy' WHEN d.own THEN 'text' ELSE 'across segments' END,
           COALESCE(analytics.word_time(
                        d.text, d.word_starts,
                        CASE WHEN d.typo THEN q_typo_lexemes
                             ELSE tsvector_to_array(to_tsvector('english', q_positive)) END,
                        CASE WHEN d.is_fuzzy AND NOT d.typo THEN q_positive END),
                    d.start_s)
    FROM detail AS d
    WHERE d.is_fuzzy OR d.own OR NOT d.next_own
    ORDER BY d.is_fuzzy, d.rank DESC, d.call_date DESC, d.object_key, d.start_s
    LIMIT max_hits;
END
$$
"""


def _raw(sql: str) -> None:
    # Function bodies hold text that SQLAlchemy would read as binds.
    with op.get_bind().connection.driver_connection.cursor() as cur:
        cur.execute(sql)


def _module(name: str):
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"callscribe_migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute(f"DROP FUNCTION analytics.search({OLD_SEARCH_ARGS})")
    op.execute(DROP_VIEWS)
    # The text indexes are rebuilt after the backfill rewrites every row: faster than updating them
    # row by row.
    op.execute("DROP INDEX segments_tsv_pair_idx, segments_text_trgm_idx")
    op.execute("ALTER TABLE segments DROP COLUMN tsv, ADD COLUMN call_date date, ADD COLUMN agent_id text")
    op.execute("UPDATE segments AS s SET call_date = r.call_date, agent_id = r.agent_id "
               "FROM recordings AS r WHERE r.id = s.recording_id")
    op.execute("ALTER TABLE segments ALTER COLUMN call_date SET NOT NULL")
    _raw(FILL_CALL)
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute("CREATE INDEX segments_tsv_pair_idx ON segments USING gin (tsv_pair)")
    op.execute("CREATE INDEX segments_text_trgm_idx ON segments USING gin (text_redacted gin_trgm_ops)")
    # BRIN, not btree: segments arrive day by day, so a few KB index the days, an insert costs
    # next to nothing, and the planner can only combine it with the text index as a bitmap (a
    # btree tempted it into reading a whole day's rows to filter them one by one). autosummarize:
    # the newest ranges are summarized soon after they fill, so the newest day stays precise.
    op.execute("CREATE INDEX segments_day_idx ON segments USING brin (call_date) "
               "WITH (pages_per_range = 16, autosummarize = on)")
    op.execute("CREATE INDEX segments_agent_day_idx ON segments (agent_id, call_date)")

    op.execute(CALL_METRICS)
    op.execute(BACKFILL_METRICS)
    _raw(FORGET_METRICS)
    op.execute("GRANT SELECT ON call_metrics TO callscribe_privileged")

    _raw(VIEWS)
    op.execute(CANDIDATE)
    _raw(SEARCH_FUNCTION)
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO callscribe_analyst")
    op.execute("GRANT USAGE ON TYPE analytics.search_candidate TO callscribe_analyst")
    op.execute(f"GRANT EXECUTE ON FUNCTION analytics.search({SEARCH_ARGS}) TO callscribe_analyst")


def downgrade() -> None:
    redaction, fuzzy = _module("0009_redaction_at_load.py"), _module("0008_fuzzy_fallback.py")
    op.execute(f"DROP FUNCTION analytics.search({SEARCH_ARGS})")
    op.execute("DROP TYPE analytics.search_candidate")
    op.execute(DROP_VIEWS)
    op.execute("DROP TRIGGER segments_forget_metrics ON segments")
    op.execute("DROP FUNCTION callscribe_forget_call_metrics()")
    op.execute("DROP TABLE call_metrics")
    op.execute("DROP TRIGGER segments_call_fill ON segments")
    op.execute("DROP FUNCTION callscribe_segment_call()")
    op.execute("DROP INDEX segments_day_idx, segments_agent_day_idx")
    op.execute("ALTER TABLE segments DROP COLUMN call_date, DROP COLUMN agent_id")
    op.execute("ALTER TABLE segments ADD COLUMN tsv tsvector "
               "GENERATED ALWAYS AS (to_tsvector('english', text_redacted)) STORED")
    # 0009's views, but its transcripts view, which this revision left alone.
    views = ["CREATE VIEW" + v.rstrip().rstrip(";") for v in redaction.VIEWS.split("CREATE VIEW")[1:]
             if not v.lstrip().startswith("analytics.transcripts")]
    for view in views:
        _raw(view)
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO callscribe_analyst")
    _raw(fuzzy.SEARCH_FUNCTION)
    op.execute(f"GRANT EXECUTE ON FUNCTION analytics.search({OLD_SEARCH_ARGS}) TO callscribe_analyst")
