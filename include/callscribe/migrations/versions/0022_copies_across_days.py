"""Copies are matched across neighbouring days, not only within one.

An export re-run that drops yesterday's calls into today's folder, or two exporters that date a
call in different zones, put one call under two days. Discovery now looks a new object's content
up among the keys of the days around its own (``CALLSCRIBE_COPY_WINDOW_DAYS``), so the content
index no longer leads with the day. Copies are also looked up from their original: a discovery
of the original's day revives its copies on other days, and an erasure's removal of the
original's rows clears ``duplicate_of`` through the foreign key, a scan of the table per row
without this index.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-28
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX recordings_content ON recordings (etag, size_bytes)")
    op.execute("DROP INDEX recordings_day_content")
    op.execute("CREATE INDEX recordings_duplicate_of ON recordings (duplicate_of) WHERE duplicate_of IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX recordings_duplicate_of")
    op.execute("CREATE INDEX recordings_day_content ON recordings (call_date, etag, size_bytes)")
    op.execute("DROP INDEX recordings_content")
