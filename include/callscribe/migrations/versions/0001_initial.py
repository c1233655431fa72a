"""Initial schema: recordings, transcripts, segments, run and batch metrics, analyst role.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        """
        CREATE TABLE recordings (
            id             bigserial PRIMARY KEY,
            bucket         text NOT NULL,
            object_key     text NOT NULL,
            etag           text NOT NULL,
            size_bytes     bigint NOT NULL DEFAULT 0,
            call_date      date NOT NULL,
            call_id        text NOT NULL,
            agent_id       text,
            metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
            status         text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'chunked', 'done', 'failed', 'quarantined')),
            attempts       integer NOT NULL DEFAULT 0,
            last_error     text,
            duration_s     double precision,
            channels       smallint,
            sample_rate    integer,
            codec          text,
            discovered_at  timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now(),
            transcribed_at timestamptz,
            last_run_id    text,
            CONSTRAINT recordings_object_version UNIQUE (bucket, object_key, etag)
        )
        """
    )
    op.execute("CREATE INDEX recordings_day_status_idx ON recordings (call_date, status)")
    op.execute(
        """
        CREATE TABLE transcripts (
            recording_id bigint NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
            channel      smallint NOT NULL,
            speaker      text NOT NULL,
            text         text NOT NULL,
            n_segments   integer NOT NULL,
            engine       text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (recording_id, channel)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE segments (
            id           bigserial PRIMARY KEY,
            recording_id bigint NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
            channel      smallint NOT NULL,
            seq          integer NOT NULL,
            speaker      text NOT NULL,
            start_s      real NOT NULL,
            end_s        real NOT NULL,
            text         text NOT NULL,
            tsv          tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
            CONSTRAINT segments_position UNIQUE (recording_id, channel, seq),
            CONSTRAINT segments_times CHECK (end_s >= start_s AND start_s >= 0)
        )
        """
    )
    op.execute("CREATE INDEX segments_tsv_idx ON segments USING gin (tsv)")
    op.execute("CREATE INDEX segments_text_trgm_idx ON segments USING gin (text gin_trgm_ops)")
    op.execute(
        """
        CREATE TABLE pipeline_runs (
            run_id                 text PRIMARY KEY,
            dag_id                 text NOT NULL,
            call_date              date NOT NULL,
            engine                 text,
            recordings_found       integer NOT NULL DEFAULT 0,
            recordings_done        integer NOT NULL DEFAULT 0,
            recordings_failed      integer NOT NULL DEFAULT 0,
            recordings_quarantined integer NOT NULL DEFAULT 0,
            audio_s                double precision NOT NULL DEFAULT 0,
            segments               integer NOT NULL DEFAULT 0,
            jobs                   integer NOT NULL DEFAULT 0,
            model_s                double precision NOT NULL DEFAULT 0,
            reported_at            timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE batch_metrics (
            id             bigserial PRIMARY KEY,
            run_id         text NOT NULL,
            job_id         text NOT NULL,
            shard_uri      text NOT NULL,
            batch_index    integer NOT NULL,
            n_chunks       integer NOT NULL,
            audio_s        double precision NOT NULL,
            model_s        double precision NOT NULL,
            wall_s         double precision NOT NULL,
            device         text NOT NULL,
            peak_mem_bytes bigint,
            engine         text NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT batch_metrics_position UNIQUE (shard_uri, batch_index)
        )
        """
    )
    # Read-only group role for analysts; people log in as their own users that are
    # members of it. Roles are cluster-wide, hence the guard.
    op.execute(
        """
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'callscribe_analyst') THEN
                CREATE ROLE callscribe_analyst NOLOGIN;
            END IF;
        END $$
        """
    )
    op.execute("GRANT USAGE ON SCHEMA public TO callscribe_analyst")
    op.execute(
        "GRANT SELECT ON recordings, transcripts, segments, pipeline_runs, batch_metrics TO callscribe_analyst"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS batch_metrics, pipeline_runs, segments, transcripts, recordings CASCADE")
