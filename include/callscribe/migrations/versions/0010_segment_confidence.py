"""Segment confidence: the engine's belief in each segment's text, for choosing training data.

``segments.confidence`` (real, nullable) holds what the engine said of the segment, in [0, 1]:
whisper-tiny the exponent of the segment's mean token log-probability, granite-nar-native the
mean probability of its output tokens. It is NULL for rows loaded before this revision, for
shards written before it (the shard column is optional) and for engines with no such notion
(granite-nar through its remote code). `callscribe dataset --min-confidence` reads it.

Nothing analysts see changes: the column is not in the analytics views.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and without a default: adding it rewrites nothing, whatever the table's size.
    op.execute("ALTER TABLE segments ADD COLUMN confidence real")
    op.execute("ALTER TABLE segments ADD CONSTRAINT segments_confidence_range "
               "CHECK (confidence BETWEEN 0 AND 1) NOT VALID")


def downgrade() -> None:
    op.execute("ALTER TABLE segments DROP COLUMN confidence")
