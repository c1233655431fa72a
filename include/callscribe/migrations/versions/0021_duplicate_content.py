"""One recording uploaded under two keys of a day is transcribed once: the other is ``duplicate``.

Call-center exports repeat themselves (an export retried under a new name, one call filed into
two folders). Each copy was transcribed as a call of its own: GPU time spent twice, and every
analyst's count and search saw the call twice. Discovery now marks a new object of a day whose
content (etag and size) is already a live recording of that day under another key
``duplicate``, with ``duplicate_of`` naming the recording it repeats; it is never claimed, and is
transcribed after all when its original leaves (deleted from the bucket, replaced by another
upload). ``analytics.calls`` and ``analytics.recordings`` show ``duplicate_of``, so analysts can
follow a copy; ``pipeline_runs.recordings_duplicate`` counts a run's copies.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-28
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

STATUSES = "'pending', 'chunked', 'done', 'failed', 'quarantined', 'superseded', 'deleted'"
# analytics.calls as 0012 made it; this revision adds duplicate_of at the end.
CALLS = """
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
       c.longest_monologue_s, c.longest_monologue_speaker__EXTRA__
FROM recordings AS r
LEFT JOIN call_metrics AS c ON c.recording_id = r.id
"""
VIEW = ("SELECT id AS recording_id, bucket, object_key, call_id, call_date, agent_id, status, duration_s, "
        "channels, etag FROM recordings")


def upgrade() -> None:
    op.execute("ALTER TABLE recordings DROP CONSTRAINT recordings_status_check")
    op.execute(f"ALTER TABLE recordings ADD CONSTRAINT recordings_status_check CHECK (status IN ({STATUSES}, "
               "'duplicate'))")
    # SET NULL: retention or an erasure may remove the original before its copy.
    op.execute("ALTER TABLE recordings ADD COLUMN duplicate_of bigint REFERENCES recordings (id) ON DELETE SET NULL")
    # Discovery looks a new object's content up among its day's rows.
    op.execute("CREATE INDEX recordings_day_content ON recordings (call_date, etag, size_bytes)")
    op.execute("ALTER TABLE pipeline_runs ADD COLUMN recordings_duplicate integer NOT NULL DEFAULT 0")
    op.execute(f"CREATE OR REPLACE VIEW analytics.recordings AS {VIEW.replace(' FROM', ', duplicate_of FROM')}")
    op.execute("CREATE OR REPLACE VIEW analytics.calls AS " + CALLS.replace("__EXTRA__", ", r.duplicate_of"))


def downgrade() -> None:
    # The copies go back to be transcribed as calls of their own, as before this revision.
    op.execute("UPDATE recordings SET status = 'pending', last_error = NULL, last_run_id = NULL, attempts = 0 "
               "WHERE status = 'duplicate'")
    _remake_view("recordings", VIEW)
    _remake_view("calls", CALLS.replace("__EXTRA__", ""))
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN recordings_duplicate")
    op.execute("DROP INDEX recordings_day_content")
    op.execute("ALTER TABLE recordings DROP COLUMN duplicate_of")
    op.execute("ALTER TABLE recordings DROP CONSTRAINT recordings_status_check")
    op.execute(f"ALTER TABLE recordings ADD CONSTRAINT recordings_status_check CHECK (status IN ({STATUSES}))")


def _remake_view(name: str, select: str) -> None:
    """A column cannot leave a view in place: made again, with every grant it had (a DBA's
    reporting role too, not the analysts' alone)."""
    grants = op.get_bind().exec_driver_sql(
        "SELECT grantee, string_agg(privilege_type, ', ') FROM information_schema.role_table_grants "
        f"WHERE table_schema = 'analytics' AND table_name = '{name}' AND grantee <> current_user "
        "GROUP BY grantee").all()
    op.execute(f"DROP VIEW analytics.{name}")
    op.execute(f"CREATE VIEW analytics.{name} AS {select}")
    op.execute(f"GRANT SELECT ON analytics.{name} TO callscribe_analyst")
    for grantee, privileges in grants:
        op.execute(f'GRANT {privileges} ON analytics.{name} TO "{grantee}"')
