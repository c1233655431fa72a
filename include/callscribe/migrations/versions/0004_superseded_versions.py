"""A re-uploaded object's older version ends as `superseded`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE recordings DROP CONSTRAINT recordings_status_check")
    op.execute(
        "ALTER TABLE recordings ADD CONSTRAINT recordings_status_check "
        "CHECK (status IN ('pending', 'chunked', 'done', 'failed', 'quarantined', 'superseded'))"
    )
    op.execute("CREATE INDEX recordings_object_idx ON recordings (bucket, object_key)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS recordings_object_idx")
    op.execute("UPDATE recordings SET status = 'done' WHERE status = 'superseded'")
    op.execute("ALTER TABLE recordings DROP CONSTRAINT recordings_status_check")
    op.execute(
        "ALTER TABLE recordings ADD CONSTRAINT recordings_status_check "
        "CHECK (status IN ('pending', 'chunked', 'done', 'failed', 'quarantined'))"
    )
