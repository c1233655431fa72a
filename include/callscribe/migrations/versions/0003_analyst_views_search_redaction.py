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
SEARCH_VIEWS = """
CREATE VIEW analytics.recordings AS
SELECT id AS recording_id, bucket, object_key, call_id, call_date, agent_id, status, duration_s, channels
FROM recordings;

CREATE VIEW analytics.segment_search AS
SELECT s.id AS segment_id, s.recording_id, s.channel, s.seq, s.speaker, s.start_s, s.end_s,
       s.text_redacted AS text, s.tsv, s.tsv_pair
FROM segments AS s;
"""

# Ranks every match on the index-only view, then reads text, the next segment and
# snippets for the top hits alone: most matches never leave the index.
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
    -- Room for pair matches dropped below in favour of the next segment's own match.
    SELECT * FROM candidates ORDER BY is_fuzzy, rank DESC, segment_id DESC LIMIT 2 * max_hits + 10
),
detail AS (
    SELECT t.*, seg.object_key, seg.bucket, seg.call_date, seg.agent_id, seg.speaker, seg.start_s, seg.end_s,
           seg.text, seg.next_text, nx.end_s AS next_end, COALESCE(nx.tsv @@ q.tsq, false) AS next_own, q.tsq
    FROM top AS t
    CROSS JOIN q
    JOIN analytics.segments AS seg ON seg.segment_id = t.segment_id
    LEFT JOIN analytics.segment_search AS nx
           ON nx.recording_id = t.recording_id AND nx.channel = t.channel AND nx.seq = t.seq + 1
)
-- One hit per moment: a segment whose own text matches, or a segment and the next one of
-- the same speaker when only the pair does (a phrase split across two chunks).
-- Snippets only for the hits returned: ts_headline is costly.
SELECT d.object_key, d.bucket, d.call_date, d.agent_id, d.channel, d.speaker, d.start_s,
       CASE WHEN d.own THEN d.end_s ELSE COALESCE(d.next_end, d.end_s) END,
       CASE WHEN d.is_fuzzy THEN d.text
            ELSE ts_headline('english',
                             CASE WHEN d.own THEN d.text ELSE d.text || ' ' || COALESCE(d.next_text, '') END,
                             d.tsq, 'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=30, MinWords=8')
       END,
       d.rank,
       CASE WHEN d.is_fuzzy THEN 'fuzzy' WHEN d.own THEN 'text' ELSE 'across segments' END
FROM detail AS d
WHERE d.is_fuzzy OR d.own OR NOT d.next_own
ORDER BY d.is_fuzzy, d.rank DESC, d.call_date DESC, d.object_key, d.start_s
LIMIT max_hits
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
    _raw(SEARCH_VIEWS)
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
