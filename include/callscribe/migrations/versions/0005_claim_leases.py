"""Claims carry a lease, and each recording counts its loads.

A run stamps the recordings it takes with its run id and a lease. Another run of the same
day skips recordings whose lease is live, so two runs never work on the same recording;
the run's report task releases its leases, and a run that died without reporting loses
them when they expire. ``loads`` counts transcript loads, so audits can prove a recording
was loaded once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE recordings ADD COLUMN lease_until timestamptz")
    op.execute("ALTER TABLE recordings ADD COLUMN loads integer NOT NULL DEFAULT 0")
    op.execute("UPDATE recordings SET loads = 1 WHERE status = 'done'")
    op.execute("CREATE INDEX recordings_lease_idx ON recordings (last_run_id) WHERE lease_until IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS recordings_lease_idx")
    op.execute("ALTER TABLE recordings DROP COLUMN loads")
    op.execute("ALTER TABLE recordings DROP COLUMN lease_until")
