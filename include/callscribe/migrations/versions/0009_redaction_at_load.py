"""Redaction computed once, at load, by callscribe.redaction; analysts see approved metadata only.

Until now the database masked numbers itself, in generated columns, one segment at a time and
with one regular expression. Now the loader masks each channel of a recording once, in
Python (callscribe/redaction.py: any separators, spoken digits, numbers that run from one
segment into the next), and writes the result:

- ``segments.text_redacted`` and ``segments.next_redacted`` are plain columns (the search
  vectors are still generated, from the redacted text);
- ``transcripts.text_redacted`` holds the channel's redacted text;
- rows loaded before this revision are redacted here, recording by recording.

``analytics.calls`` shows only the metadata keys listed in ``analyst_metadata_keys`` (the
pipeline owner adds keys there) and its ``last_error`` is masked too.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

import importlib.util
import io
from pathlib import Path

from alembic import op

from callscribe.redaction import redact_channel_timed

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Keys an object's user metadata commonly carries that say nothing about the caller.
DEFAULT_METADATA_KEYS = ("agent-id", "call-id", "queue", "direction", "language", "campaign", "decode_warning")

REDACT_SQL = r"""
CREATE OR REPLACE FUNCTION callscribe_redact(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT AS $$
    SELECT regexp_replace(
        regexp_replace(t, '\d(?:[\s.,/()-]{0,3}\d){4,}', '[redacted]', 'g'),
        '\m(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)(?:[ ,-]+(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)\M){3,}',
        '[redacted]', 'gi')
$$
"""

VIEWS = """
CREATE VIEW analytics.segments AS
SELECT s.id AS segment_id, s.recording_id, r.object_key, r.bucket, r.call_date, r.agent_id,
       r.duration_s AS call_duration_s, s.channel, s.seq, s.speaker, s.start_s, s.end_s,
       s.text_redacted AS text, s.next_redacted AS next_text, s.tsv, s.tsv_pair, s.word_starts
FROM segments AS s
JOIN recordings AS r ON r.id = s.recording_id;

CREATE VIEW analytics.segment_search AS
SELECT s.id AS segment_id, s.recording_id, s.channel, s.seq, s.speaker, s.start_s, s.end_s,
       s.text_redacted AS text, s.tsv, s.tsv_pair
FROM segments AS s;

CREATE VIEW analytics.transcripts AS
SELECT t.recording_id, r.object_key, r.call_date, r.agent_id, t.channel, t.speaker,
       COALESCE(t.text_redacted, callscribe_redact(t.text)) AS text, t.n_segments, t.engine, t.created_at
FROM transcripts AS t
JOIN recordings AS r ON r.id = t.recording_id;

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
SELECT r.id AS recording_id, r.object_key, r.bucket, r.call_id, r.call_date, r.agent_id,
       (SELECT COALESCE(jsonb_object_agg(m.key, m.value), '{}'::jsonb)
        FROM jsonb_each(COALESCE(r.metadata, '{}'::jsonb)) AS m
        WHERE m.key IN (SELECT key FROM public.analyst_metadata_keys)) AS metadata,
       r.status, callscribe_redact(r.last_error) AS last_error, r.attempts, r.duration_s, r.channels, r.codec,
       r.sample_rate,
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
LEFT JOIN per_call AS p ON p.recording_id = r.id;
"""

DROP_VIEWS = "DROP VIEW analytics.segments, analytics.segment_search, analytics.transcripts, analytics.calls"


def _raw(sql: str) -> None:
    # Function bodies hold regex text that SQLAlchemy would read as binds.
    with op.get_bind().connection.driver_connection.cursor() as cur:
        cur.execute(sql)


def _backfill() -> None:
    """Redact the segments already loaded, a channel at a time, as the loader now does, and line
    their word times up with the redacted text (a masked number is one word)."""
    conn = op.get_bind().connection.driver_connection
    with conn.cursor(name="callscribe_0009_segments") as read:
        read.itersize = 20_000
        read.execute("SELECT recording_id, channel, id, text, word_starts FROM segments "
                     "ORDER BY recording_id, channel, seq")
        rows = []
        key, ids, texts, starts = None, [], [], []

        def flush() -> None:
            masked, timed = redact_channel_timed(texts, starts)
            for i, red, ws in zip(ids, masked, timed, strict=True):
                array = "\\N" if ws is None else "{" + ",".join(f"{t:.3f}" for t in ws) + "}"
                rows.append(f"{i}\t{_copy_text(red)}\t{array}\n")

        def copy(write) -> None:
            write.copy_expert("COPY redacted_0009 (id, text, word_starts) FROM STDIN", io.StringIO("".join(rows)))
            rows.clear()

        with conn.cursor() as write:
            write.execute("CREATE TEMP TABLE redacted_0009 (id bigint PRIMARY KEY, text text, word_starts real[]) "
                          "ON COMMIT DROP")
            for rid, ch, sid, text, ws in read:
                if (rid, ch) != key:
                    flush()
                    key, ids, texts, starts = (rid, ch), [], [], []
                ids.append(sid)
                texts.append(text)
                starts.append(ws)
                if len(rows) >= 50_000:
                    copy(write)
            flush()
            if rows:
                copy(write)
            write.execute("UPDATE segments AS s SET text_redacted = r.text, word_starts = r.word_starts "
                          "FROM redacted_0009 AS r WHERE r.id = s.id")


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def upgrade() -> None:
    op.execute(DROP_VIEWS)
    op.execute("DROP INDEX IF EXISTS segments_tsv_pair_idx")
    op.execute("DROP INDEX IF EXISTS segments_text_trgm_idx")
    op.execute("ALTER TABLE segments DROP COLUMN tsv_pair, DROP COLUMN tsv, DROP COLUMN text_redacted")
    op.execute("ALTER TABLE segments ADD COLUMN text_redacted text, ADD COLUMN next_redacted text")
    _backfill()
    op.execute("""
        UPDATE segments AS s SET next_redacted = n.text_redacted
        FROM segments AS n
        WHERE n.recording_id = s.recording_id AND n.channel = s.channel AND n.seq = s.seq + 1
    """)
    op.execute("ALTER TABLE segments ALTER COLUMN text_redacted SET NOT NULL, DROP COLUMN next_text")
    op.execute("ALTER TABLE segments ADD COLUMN tsv tsvector "
               "GENERATED ALWAYS AS (to_tsvector('english', text_redacted)) STORED")
    op.execute("ALTER TABLE segments ADD COLUMN tsv_pair tsvector GENERATED ALWAYS AS "
               "(to_tsvector('english', text_redacted || ' ' || COALESCE(next_redacted, ''))) STORED")
    op.execute("CREATE INDEX segments_tsv_pair_idx ON segments USING gin (tsv_pair)")
    op.execute("CREATE INDEX segments_text_trgm_idx ON segments USING gin (text_redacted gin_trgm_ops)")

    op.execute("ALTER TABLE transcripts ADD COLUMN text_redacted text")
    op.execute("""
        UPDATE transcripts AS t SET text_redacted = s.text
        FROM (SELECT recording_id, channel, string_agg(text_redacted, ' ' ORDER BY seq) AS text
              FROM segments GROUP BY recording_id, channel) AS s
        WHERE s.recording_id = t.recording_id AND s.channel = t.channel
    """)

    op.execute("CREATE TABLE analyst_metadata_keys (key text PRIMARY KEY)")
    op.execute("INSERT INTO analyst_metadata_keys (key) VALUES " + ", ".join(f"('{k}')" for k in DEFAULT_METADATA_KEYS))
    op.execute("GRANT SELECT ON analyst_metadata_keys TO callscribe_privileged")
    _raw(REDACT_SQL)
    _raw(VIEWS)
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO callscribe_analyst")


def _module(name: str):
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"callscribe_migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    first, words = _module("0003_analyst_views_search_redaction.py"), _module("0007_word_times.py")
    op.execute(DROP_VIEWS)
    op.execute("DROP TABLE analyst_metadata_keys")
    op.execute("ALTER TABLE transcripts DROP COLUMN text_redacted")
    op.execute("DROP INDEX IF EXISTS segments_tsv_pair_idx")
    op.execute("DROP INDEX IF EXISTS segments_text_trgm_idx")
    op.execute("ALTER TABLE segments ADD COLUMN next_text text")
    op.execute("""
        UPDATE segments AS s SET next_text = n.text
        FROM segments AS n
        WHERE n.recording_id = s.recording_id AND n.channel = s.channel AND n.seq = s.seq + 1
    """)
    op.execute("ALTER TABLE segments DROP COLUMN tsv_pair, DROP COLUMN tsv, DROP COLUMN text_redacted, "
               "DROP COLUMN next_redacted")
    _raw(first.REDACT.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.execute("ALTER TABLE segments ADD COLUMN text_redacted text "
               "GENERATED ALWAYS AS (callscribe_redact(text)) STORED")
    op.execute("ALTER TABLE segments ADD COLUMN tsv tsvector "
               "GENERATED ALWAYS AS (to_tsvector('english', callscribe_redact(text))) STORED")
    op.execute("ALTER TABLE segments ADD COLUMN tsv_pair tsvector GENERATED ALWAYS AS "
               "(to_tsvector('english', callscribe_redact(text || ' ' || COALESCE(next_text, '')))) STORED")
    op.execute("CREATE INDEX segments_tsv_pair_idx ON segments USING gin (tsv_pair)")
    op.execute("CREATE INDEX segments_text_trgm_idx ON segments USING gin (text_redacted gin_trgm_ops)")
    op.execute(first.CALLS_VIEW)
    op.execute(first.TRANSCRIPTS_VIEW)
    _raw(words.SEGMENTS_VIEW.replace("CREATE OR REPLACE VIEW", "CREATE VIEW"))
    _raw(first.SEARCH_VIEWS.split("CREATE VIEW analytics.segment_search")[0].replace(
        "CREATE VIEW analytics.recordings", "CREATE OR REPLACE VIEW analytics.recordings"))
    _raw("CREATE VIEW analytics.segment_search" + first.SEARCH_VIEWS.split("CREATE VIEW analytics.segment_search")[1])
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO callscribe_analyst")
