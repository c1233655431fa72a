"""The multipart uploads under way when a run listed its days.

An upload in parts begun before a run's listing and finished after it is not in the listing, and
a store that stamps such an object with the time the upload began (AWS S3) dates it before the
listing: the verdict counted it lost, a false red on a night when a long call was still uploading.
``uploads_in_flight`` holds what the store said was still under way just after the run listed
each of its days: a JSON list of [SHA-256 of the key, the time the upload began] (hashes, as
erasures name objects, so no key is kept here). NULL for runs from before this revision, or where the store would not
say: the verdict then excuses nothing for it.

Revision ID: 0031
Revises: 0030
Create Date: 2026-11-29
"""

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs ADD COLUMN uploads_in_flight jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN uploads_in_flight")
