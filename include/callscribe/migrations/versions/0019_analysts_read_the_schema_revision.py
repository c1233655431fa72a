"""The analysts' login may read which migration the schema is at.

The search page queries with the analysts' login and is deployed with the code. On a database
not yet migrated for that code it failed on whatever column was missing (a 500 on a play); it
now checks the revision first and says what the operators must run. The revision is no secret.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-27
"""

from alembic import op

from callscribe.db import VERSION_TABLE

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"GRANT SELECT ON {VERSION_TABLE} TO callscribe_analyst")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON {VERSION_TABLE} FROM callscribe_analyst")
