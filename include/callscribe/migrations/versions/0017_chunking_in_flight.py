"""A recording being chunked says so: a chunk task that dies on one file (a crash in a native
decoder, the memory of a huge file, the task's timeout) is retried by Airflow, and the retry
must tell the file it died on from the rest of its group.

``chunking_since`` is set with the run's attempt, before the file is read, and cleared when
the recording is chunked, failed or quarantined. A row of this run still marked when its
group's task starts again is the one the last try died on.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE recordings ADD COLUMN chunking_since timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE recordings DROP COLUMN chunking_since")
