"""Loads are fenced: each recording remembers which run's transcript it holds; runs say
when they listed the bucket and how many recordings they left unfinished.

A shard loads only rows its run still owns (``last_run_id``); ``loaded_run_id`` makes a
second load of the same run's shard a no-op instead of a second load, so clearing any
task of an old run in the UI cannot replace a newer transcript.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE recordings ADD COLUMN loaded_run_id text")
    # An attempt is one run's try at a recording, however often its tasks are retried or cleared.
    op.execute("ALTER TABLE recordings ADD COLUMN attempted_run_id text")
    op.execute("UPDATE recordings SET loaded_run_id = last_run_id WHERE status IN ('done', 'superseded')")
    # The run verdict and the claim read a day's rows by owner and state.
    op.execute("CREATE INDEX recordings_run_idx ON recordings (last_run_id)")
    op.execute("ALTER TABLE pipeline_runs ADD COLUMN recordings_unfinished integer NOT NULL DEFAULT 0")
    # When the run listed its days: the run's verdict does not count objects uploaded after it.
    op.execute("ALTER TABLE pipeline_runs ADD COLUMN listed_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN listed_at")
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN recordings_unfinished")
    op.execute("DROP INDEX IF EXISTS recordings_run_idx")
    op.execute("ALTER TABLE recordings DROP COLUMN attempted_run_id")
    op.execute("ALTER TABLE recordings DROP COLUMN loaded_run_id")
