"""A run's listing time on the object store's own clock.

A run's verdict tells an upload it could not have seen (after its listing) from a call it lost by
comparing the objects' Last-Modified, stamped by the store, with the time of the listing. That
time was the database's (``listed_at``): with the two clocks apart by more than a second, a call
uploaded just after the listing read as lost (database ahead) or a lost call as uploaded after the
listing (store ahead). ``store_listed_at`` is the same moment read from the store: the
Last-Modified of a small object the run writes just before it lists. NULL for runs from before
this revision, or where no store was given: the verdict falls back to ``listed_at``.

Revision ID: 0030
Revises: 0029
Create Date: 2026-11-29
"""

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs ADD COLUMN store_listed_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN store_listed_at")
