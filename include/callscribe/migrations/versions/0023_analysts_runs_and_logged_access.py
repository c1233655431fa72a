"""Analysts see every count of a run, and a play or download is logged only for a call still there.

``analytics.pipeline_runs`` was made in 0003 as ``SELECT *``, which fixed its columns that day:
the counts added since (``recordings_unfinished``, ``recordings_duplicate``) never reached
analysts, and ``recordings_found`` did not add up. It now names its columns, those two last.

``analytics.log_call_access`` logs a play or download of one recording only while it is
transcribed, holding it (``FOR KEY SHARE``) until the page's transaction ends, and says whether
it did. An erasure locks the recording's rows first, so either the erasure waits and then removes
the entry with everything else about the call, or the page finds the call gone and serves
nothing. Before, the page checked the call, stat-ed the bucket, then logged: an erasure in
between left an entry about the erased call and the page handed out a link to its audio.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-28
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

RUNS = ("run_id, dag_id, call_date, engine, recordings_found, recordings_done, recordings_failed, "
        "recordings_quarantined, audio_s, segments, jobs, model_s, reported_at")
SIGNATURE = "analytics.log_call_access(text, text, text, bigint)"


def upgrade() -> None:
    op.execute(f"CREATE OR REPLACE VIEW analytics.pipeline_runs AS SELECT {RUNS}, recordings_unfinished, "
               "recordings_duplicate FROM public.pipeline_runs")
    op.execute(
        """
        CREATE FUNCTION analytics.log_call_access(actor text, action text, detail text, recording_id bigint)
        RETURNS boolean LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH call AS (
                SELECT r.id, r.object_key FROM public.recordings AS r
                WHERE r.id = log_call_access.recording_id AND r.status = 'done'
                FOR KEY SHARE
            ), logged AS (
                INSERT INTO public.access_log (actor, action, detail, recording_id, key_sha256, db_user)
                SELECT log_call_access.actor, log_call_access.action, left(log_call_access.detail, 2000), call.id,
                       encode(sha256(convert_to(call.object_key, 'UTF8')), 'hex'), session_user
                FROM call
                RETURNING 1
            )
            SELECT count(*) > 0 FROM logged
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO callscribe_access_writer")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    # A column cannot leave a view in place: made again as 0003 left it, with every grant it had.
    grants = op.get_bind().exec_driver_sql(
        "SELECT grantee, string_agg(privilege_type, ', ') FROM information_schema.role_table_grants "
        "WHERE table_schema = 'analytics' AND table_name = 'pipeline_runs' AND grantee <> current_user "
        "GROUP BY grantee").all()
    op.execute("DROP VIEW analytics.pipeline_runs")
    op.execute(f"CREATE VIEW analytics.pipeline_runs AS SELECT {RUNS} FROM public.pipeline_runs")
    op.execute("GRANT SELECT ON analytics.pipeline_runs TO callscribe_analyst")
    for grantee, privileges in grants:
        op.execute(f'GRANT {privileges} ON analytics.pipeline_runs TO "{grantee}"')
