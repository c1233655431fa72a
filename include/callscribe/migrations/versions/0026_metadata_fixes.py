"""A metadata-only fix of an upload (the object copied onto itself, new x-amz-meta-*) reaches its call.

The etag is the bytes' and stays the same, so such a fix registered nothing and the call kept its
first agent for good. ``object_modified`` is the listing's LastModified that the row's metadata
answers for: a later one under the same etag is read again (one HEAD) at the next discovery of the
day. ``redo_since`` marks a transcribed call whose fix changes what its transcript says (who
speaks first on a mono call): taken again until a chunking that read the metadata after that moment
(``metadata_read_at``) is loaded.

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-28
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE recordings ADD COLUMN object_modified timestamptz, "
               "ADD COLUMN redo_since timestamptz, ADD COLUMN metadata_read_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE recordings DROP COLUMN object_modified, DROP COLUMN redo_since, "
               "DROP COLUMN metadata_read_at")
