"""Analyst schema: redacted views, call metrics, a search function; a privileged role.

Analysts (role callscribe_analyst) see only the `analytics` schema: views whose text has
long digit strings (card, account and phone numbers) masked, and `analytics.search`.
The unmasked text stays in the base tables, readable by callscribe_privileged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Runs of 5+ digits (spaces or dashes between allowed: "4111 1111 1111 1111") and runs of
# 4+ spoken digits ("four five six seven"). Prices with a decimal point keep their digits.
REDACT = r"""
CREATE FUNCTION callscribe_redact(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT AS $$
    SELECT regexp_replace(
        regexp_replace(t, '\d(?:[ -]?\d){4,}', '[redacted]', 'g'),
        '\m(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)(?:[ ,-]+(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)\M){3,}',
        '[redacted]', 'gi')
$$
"""

SECONDS = """
CREATE FUNCTION callscribe_seconds(m nummultirange) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(sum(upper(r) - lower(r)), 0) FROM unnest(m) AS r
$$
"""

CALLS_VIEW = """
CREATE VIEW analytics.calls AS
WITH talk AS (
    SELECT recording_id, speaker,
           range_agg(numrange(start_s::numeric, end_s::numeric)) AS spans,
           count(*) AS segments
    FROM segments
    GROUP BY recording_id, speaker
), per_call AS (
    SELECT recording_id,
           jsonb_object_agg(speaker, round(callscribe_seconds(spans), 2)) AS talk_time_s,
           sum(callscribe_seconds(spans)) AS talk_sum_s,
           callscribe_seconds(range_agg(spans)) AS talk_union_s,
           sum(segments) AS segments
    FROM talk
    GROUP BY recording_id
)
SELECT r.id AS recording_id, r.object_key, r.bucket, r.call_id, r.call_date, r.agent_id, r.metadata,
       r.status, r.last_error, r.attempts, r.duration_s, r.channels, r.codec, r.sample_rate,
       COALESCE(p.talk_time_s, '{}'::jsonb) AS talk_time_s,
       (p.talk_time_s ->> 'agent')::numeric AS agent_talk_s,
       (p.talk_time_s ->> 'customer')::numeric AS customer_talk_s,
       CASE WHEN r.duration_s > 0
            THEN round(greatest(0, 1 - COALESCE(p.talk_union_s, 0) / r.duration_s::numeric), 4) END
           AS silence_share,
       round(COALESCE(p.talk_sum_s - p.talk_union_s, 0), 2) AS overlap_s,
       COALESCE(p.segments, 0) AS segments,
       r.discovered_at, r.transcribed_at
FROM recordings AS r
LEFT JOIN per_call AS p ON p.recording_id = r.id
"""

TRANSCRIPTS_VIEW = """
CREATE VIEW analytics.transcripts AS
SELECT t.recording_id, r.object_key, r.call_date, r.agent_id, t.channel, t.speaker,
       callscribe_redact(t.text) AS text, t.n_segments, t.engine, t.created_at
FROM transcripts AS t
JOIN recordings AS r ON r.id = t.recording_id
"""

SEGMENTS_VIEW = """
CREATE VIEW analytics.segments AS
SELECT s.id AS segment_id, s.recording_id, r.object_key, r.bucket, r.call_date, r.agent_id,
       r.duration_s AS call_duration_s, s.channel, s.seq, s.speaker, s.start_s, s.end_s,
       s.text_redacted AS text, callscribe_redact(s.next_text) AS next_text, s.tsv, s.tsv_pair
FROM segments AS s
JOIN recordings AS r ON r.id = s.recording_id
"""

# One hit per moment: a segment whose own text matches, or a segment and the next one
# of the same speaker when only the pair does (a phrase split across two chunks).
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
    start_s real, end_s real, snippet text, rank real, match text
)
-- No SET clauses: PostgreSQL then inlines the function into the calling query, so the
-- filters left NULL disappear from the plan and the indexes are used.
LANGUAGE sql STABLE SECURITY INVOKER AS $$
WITH q AS (SELECT websearch_to_tsquery('english', query) AS tsq),
scope AS NOT MATERIALIZED (  -- used twice, but must stay a filter the indexes can serve
    SELECT s.* FROM analytics.segments AS s
    WHERE (from_date IS NULL OR s.call_date >= from_date)
      AND (to_date IS NULL OR s.call_date <= to_date)
      AND (speaker_filter IS NULL OR s.speaker = speaker_filter)
      AND (agent_filter IS NULL OR s.agent_id = agent_filter)
      AND (min_duration_s IS NULL OR s.call_duration_s >= min_duration_s)
),
fts AS (
    SELECT s.*, s.tsv @@ q.tsq AS own, ts_rank_cd(s.tsv_pair, q.tsq) AS score
    FROM scope AS s, q
    WHERE s.tsv_pair @@ q.tsq
),
hits AS (
    SELECT f.segment_id, f.object_key, f.bucket, f.call_date, f.agent_id, f.channel, f.speaker, f.start_s,
           CASE WHEN f.own THEN f.end_s ELSE COALESCE(nx.end_s, f.end_s) END AS end_s,
           CASE WHEN f.own THEN f.text ELSE f.text || ' ' || COALESCE(f.next_text, '') END AS hit_text,
           f.score AS rank,
           CASE WHEN f.own THEN 'text' ELSE 'across segments' END AS match
    FROM q CROSS JOIN fts AS f
    LEFT JOIN analytics.segments AS nx
           ON nx.recording_id = f.recording_id AND nx.channel = f.channel AND nx.seq = f.seq + 1
    WHERE f.own OR nx.segment_id IS NULL OR NOT (nx.tsv @@ q.tsq)
    UNION ALL
    SELECT s.segment_id, s.object_key, s.bucket, s.call_date, s.agent_id, s.channel, s.speaker, s.start_s,
           s.end_s, s.text, (word_similarity(query, s.text) / 10)::real, 'fuzzy'
    FROM scope AS s
    WHERE fuzzy AND query <% s.text
      AND NOT EXISTS (SELECT 1 FROM fts AS f WHERE f.segment_id = s.segment_id)
),
top AS (
    SELECT * FROM hits
    ORDER BY (match = 'fuzzy'), rank DESC, call_date DESC, object_key, start_s
    LIMIT max_hits
)
-- Snippets only for the hits returned: ts_headline is the costly part.
SELECT t.object_key, t.bucket, t.call_date, t.agent_id, t.channel, t.speaker, t.start_s, t.end_s,
       CASE WHEN t.match = 'fuzzy' THEN t.hit_text
            ELSE ts_headline('english', t.hit_text, q.tsq,
                             'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=30, MinWords=8')
       END AS snippet,
       t.rank, t.match
FROM top AS t, q
ORDER BY (t.match = 'fuzzy'), t.rank DESC, t.call_date DESC, t.object_key, t.start_s
$$
"""


def _raw(sql: str) -> None:
    # Function bodies hold regex groups like "(?:zero|...)" that SQLAlchemy would read as binds.
    with op.get_bind().connection.driver_connection.cursor() as cur:
        cur.execute(sql)


def upgrade() -> None:
    _raw(REDACT)
    op.execute(SECONDS)
    op.execute("DROP INDEX IF EXISTS segments_tsv_idx")
    op.execute("DROP INDEX IF EXISTS segments_text_trgm_idx")
    op.execute("ALTER TABLE segments DROP COLUMN tsv")
    op.execute("ALTER TABLE segments ADD COLUMN next_text text")
    op.execute("ALTER TABLE segments ADD COLUMN text_redacted text "
               "GENERATED ALWAYS AS (callscribe_redact(text)) STORED")
    # Indexes hold redacted text only: numbers cannot be found by searching for them.
    op.execute("ALTER TABLE segments ADD COLUMN tsv tsvector "
               "GENERATED ALWAYS AS (to_tsvector('english', callscribe_redact(text))) STORED")
    op.execute("ALTER TABLE segments ADD COLUMN tsv_pair tsvector GENERATED ALWAYS AS "
               "(to_tsvector('english', callscribe_redact(text || ' ' || COALESCE(next_text, '')))) STORED")
    op.execute("CREATE INDEX segments_tsv_pair_idx ON segments USING gin (tsv_pair)")
    op.execute("CREATE INDEX segments_text_trgm_idx ON segments USING gin (text_redacted gin_trgm_ops)")
    op.execute("CREATE INDEX recordings_agent_day_idx ON recordings (agent_id, call_date)")

    op.execute("CREATE SCHEMA analytics")
    op.execute(CALLS_VIEW)
    op.execute(TRANSCRIPTS_VIEW)
    op.execute(SEGMENTS_VIEW)
    op.execute("CREATE VIEW analytics.run_throughput AS SELECT * FROM public.run_throughput")
    op.execute("CREATE VIEW analytics.pipeline_runs AS SELECT * FROM public.pipeline_runs")
    _raw(SEARCH_FUNCTION)
    # For fuzzy search: lower than pg_trgm's default 0.6, so one swapped letter in a name
    # still matches (set on the database, since a SET clause would stop inlining).
    op.execute(
        """
        DO $$ BEGIN
            EXECUTE format('ALTER DATABASE %I SET pg_trgm.word_similarity_threshold = 0.45', current_database());
        END $$
        """
    )

    # Analysts: the analytics schema only. Privileged: the raw tables too.
    op.execute("REVOKE ALL ON recordings, transcripts, segments, pipeline_runs, batch_metrics, run_throughput "
               "FROM callscribe_analyst")
    op.execute("GRANT USAGE ON SCHEMA analytics TO callscribe_analyst")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO callscribe_analyst")
    op.execute("GRANT EXECUTE ON FUNCTION analytics.search TO callscribe_analyst")
    op.execute(
        """
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'callscribe_privileged') THEN
                CREATE ROLE callscribe_privileged NOLOGIN;
            END IF;
        END $$
        """
    )
    op.execute("GRANT callscribe_analyst TO callscribe_privileged")
    op.execute("GRANT USAGE ON SCHEMA public TO callscribe_privileged")
    op.execute("GRANT SELECT ON recordings, transcripts, segments, pipeline_runs, batch_metrics, run_throughput "
               "TO callscribe_privileged")


def downgrade() -> None:
    op.execute("DROP SCHEMA analytics CASCADE")
    op.execute("DROP INDEX IF EXISTS segments_tsv_pair_idx")
    op.execute("DROP INDEX IF EXISTS segments_text_trgm_idx")
    op.execute("ALTER TABLE segments DROP COLUMN tsv_pair, DROP COLUMN tsv, DROP COLUMN text_redacted, "
               "DROP COLUMN next_text")
    op.execute("ALTER TABLE segments ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED")
    op.execute("CREATE INDEX segments_tsv_idx ON segments USING gin (tsv)")
    op.execute("CREATE INDEX segments_text_trgm_idx ON segments USING gin (text gin_trgm_ops)")
    op.execute("DROP FUNCTION IF EXISTS callscribe_seconds(nummultirange), callscribe_redact(text)")
