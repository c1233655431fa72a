"""Batch padding and out-of-memory splits, and a per-run throughput view (RTFx, GPU-seconds per audio hour).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE batch_metrics ADD COLUMN oom_splits integer NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE batch_metrics ADD COLUMN padded_audio_s double precision")
    # model_s is time inside the engine; wall_s adds waiting for input. Per run, summed over
    # all jobs: RTFx = audio seconds / engine seconds, and the engine-seconds (GPU-seconds
    # on GPU workers, one GPU per pod) spent per hour of audio.
    op.execute(
        """
        CREATE VIEW run_throughput AS
        SELECT run_id,
               min(engine)                                   AS engine,
               min(device)                                   AS device,
               count(DISTINCT job_id)                        AS jobs,
               count(*)                                      AS batches,
               sum(n_chunks)                                 AS chunks,
               sum(audio_s)                                  AS audio_s,
               sum(model_s)                                  AS model_s,
               sum(wall_s)                                   AS wall_s,
               sum(audio_s) / NULLIF(sum(model_s), 0)        AS rtfx_model,
               sum(audio_s) / NULLIF(sum(wall_s), 0)         AS rtfx_wall,
               sum(wall_s) / NULLIF(sum(audio_s) / 3600, 0)  AS device_s_per_audio_hour,
               sum(audio_s) / NULLIF(sum(padded_audio_s), 0) AS batch_fill,
               max(peak_mem_bytes)                           AS peak_mem_bytes,
               sum(oom_splits)                               AS oom_splits
        FROM batch_metrics
        GROUP BY run_id
        """
    )
    op.execute("GRANT SELECT ON run_throughput TO callscribe_analyst")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS run_throughput")
    op.execute("ALTER TABLE batch_metrics DROP COLUMN IF EXISTS oom_splits, DROP COLUMN IF EXISTS padded_audio_s")
