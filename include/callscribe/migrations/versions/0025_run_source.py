"""A run id names the bucket and prefix that run listed, so two deployments on one database are refused.

Scheduled run ids are the same in every Airflow (``scheduled__<date>``), and leases, a run's
close and its row here name the run id only: two deployments (two Airflows with their own
buckets) on one database ended each other's leases and took calls the other was still
transcribing. ``pipeline_runs.source`` (``bucket/prefix``) records what the run id listed first;
a run of the same id listing another source is refused, and its report and verdict leave the
first one's calls alone.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-28
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs ADD COLUMN source text")


def downgrade() -> None:
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN source")
