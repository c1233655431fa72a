"""Copies are matched by their bytes too, not only by etag.

An etag is the MD5 of an object's bytes only for a plain upload: a multipart upload (large
exports, most SDKs above 8 to 16 MiB) and a server-side copy of one get another etag for the
same bytes, so one call filed into two folders that way was transcribed twice. The chunker,
which reads every byte anyway, now records their SHA-256 and takes a key whose bytes another
key of the window holds, transcribed or on its way, for that key's copy. Rows chunked before
this revision have none: they are matched by etag as before.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-28
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: a change to the catalogue only, whatever the table's size.
    op.execute("ALTER TABLE recordings ADD COLUMN content_sha256 bytea")
    op.execute("CREATE INDEX recordings_content_sha256 ON recordings (content_sha256) "
               "WHERE content_sha256 IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX recordings_content_sha256")
    op.execute("ALTER TABLE recordings DROP COLUMN content_sha256")
