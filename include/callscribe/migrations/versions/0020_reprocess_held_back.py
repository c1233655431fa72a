"""A reprocess run records the calls of its day that another live run held when it claimed.

Runs leave alone what another live run holds. A reprocess run was asked to transcribe its
day again, so the calls it left keep the other run's transcript: its verdict names them and
the run is red until a later pass (the run cleared, or the day reprocessed again) takes them.

``held_back`` is a JSON list of {"id": recording id, "run_id": holder}, written by the reprocess
claim of the run's own day and reset each time the run lists its days again.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-27
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs ADD COLUMN held_back jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN held_back")
