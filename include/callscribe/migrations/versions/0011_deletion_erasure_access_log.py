"""Recordings deleted from the bucket, erasure on request, and an access log.

- ``recordings.status`` may be ``deleted``: the object is gone from the bucket, so its
  transcript is gone from search (discovery sets it; the row stays as the day's record).
- ``erasures`` remembers an erased object by a hash of its key (never the key itself), so the
  pipeline does not transcribe anything under that key again (whatever its content), and an
  erasure cut short can be finished (``recording_ids``: what is left to scrub).
- ``access_log`` records who searched, played, exported or erased what. Analysts cannot read
  or change it; the search page's login (role ``callscribe_access_writer``) writes to it
  through ``analytics.log_access``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STATUSES = "'pending', 'chunked', 'done', 'failed', 'quarantined', 'superseded'"


def upgrade() -> None:
    op.execute("ALTER TABLE recordings DROP CONSTRAINT recordings_status_check")
    op.execute(f"ALTER TABLE recordings ADD CONSTRAINT recordings_status_check CHECK (status IN ({STATUSES}, "
               "'deleted'))")
    op.execute(
        """
        CREATE TABLE erasures (
            bucket        text NOT NULL,
            key_sha256    text NOT NULL,
            call_date     date,
            recording_ids bigint[] NOT NULL DEFAULT '{}',
            erased_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (bucket, key_sha256)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE access_log (
            id           bigserial PRIMARY KEY,
            at           timestamptz NOT NULL DEFAULT now(),
            actor        text NOT NULL,
            action       text NOT NULL CHECK (action IN ('search', 'play', 'export', 'erase', 'dataset', 'denied')),
            detail       text,
            recording_id bigint,
            key_sha256   text,
            db_user      text NOT NULL DEFAULT session_user
        )
        """
    )
    op.execute("CREATE INDEX access_log_at_idx ON access_log (at)")
    op.execute("CREATE INDEX access_log_recording_idx ON access_log (recording_id) WHERE recording_id IS NOT NULL")
    op.execute("CREATE INDEX access_log_key_idx ON access_log (key_sha256) WHERE key_sha256 IS NOT NULL")
    op.execute("REVOKE ALL ON erasures, access_log FROM PUBLIC")
    # The page's login appends to the log through this function and does nothing else with it
    # (no reading, no changing what is there). Only logins granted callscribe_access_writer
    # may call it, not every analyst; each row also says which database login wrote it.
    op.execute(
        """
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'callscribe_access_writer') THEN
                CREATE ROLE callscribe_access_writer NOLOGIN;
            END IF;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION analytics.log_access(actor text, action text, detail text, recording_id bigint)
        RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            INSERT INTO public.access_log (actor, action, detail, recording_id, key_sha256, db_user)
            SELECT log_access.actor, log_access.action, left(log_access.detail, 2000), log_access.recording_id,
                   (SELECT encode(sha256(convert_to(r.object_key, 'UTF8')), 'hex')
                    FROM public.recordings AS r WHERE r.id = log_access.recording_id),
                   session_user
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION analytics.log_access(text, text, text, bigint) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION analytics.log_access(text, text, text, bigint) TO callscribe_access_writer")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS analytics.log_access(text, text, text, bigint)")
    op.execute("DROP TABLE IF EXISTS access_log, erasures")
    # A deleted recording has no transcript, like a superseded one: the nearest older state.
    op.execute("UPDATE recordings SET status = 'superseded' WHERE status = 'deleted'")
    op.execute("ALTER TABLE recordings DROP CONSTRAINT recordings_status_check")
    op.execute(f"ALTER TABLE recordings ADD CONSTRAINT recordings_status_check CHECK (status IN ({STATUSES}))")
