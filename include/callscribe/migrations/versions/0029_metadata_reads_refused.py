"""Metadata reads that the store refused, and reads within their upload's second.

A metadata fix whose HEAD the store refuses (a policy on the key: a 403 to a HEAD reads as
AccessDenied) left its row "modified since read", so every listing of the day HEADed it again, for
ever. ``metadata_refused`` (the store's code), ``metadata_refused_modified`` (the LastModified the
refused read was for), ``metadata_refusals`` and ``metadata_retry_at`` (a back-off that doubles)
hold it off until the back-off is over or the object changes again; ``callscribe status`` shows it.

``metadata_checked_at``: a time the last discovery's read of the metadata began no earlier than.
LastModified has whole seconds: a read (this one, or the chunker's at ``metadata_read_at``) made in
the second the object was last modified may predate a fix later in that second, so it is read once
more after the second is over.

Revision ID: 0029
Revises: 0028
Create Date: 2026-11-28
"""

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE recordings ADD COLUMN metadata_checked_at timestamptz, "
               "ADD COLUMN metadata_refused text, ADD COLUMN metadata_refused_modified timestamptz, "
               "ADD COLUMN metadata_refusals integer NOT NULL DEFAULT 0, ADD COLUMN metadata_retry_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE recordings DROP COLUMN metadata_checked_at, DROP COLUMN metadata_refused, "
               "DROP COLUMN metadata_refused_modified, DROP COLUMN metadata_refusals, DROP COLUMN metadata_retry_at")
