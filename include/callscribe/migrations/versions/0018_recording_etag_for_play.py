"""Analysts' recordings say which content was transcribed (its etag), so a play plays that content.

The search page's play answered with a link to whatever the bucket held under the key. Between a
new upload of a key and the load of its transcript, the older version's transcript stays
searchable (by design): a play of one of its hits handed out the new upload's audio under the old
transcript. ``analytics.recordings.etag`` lets the page compare the object in the bucket with
what was transcribed and refuse the play when they differ (or the object is gone).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BEFORE = ("SELECT id AS recording_id, bucket, object_key, call_id, call_date, agent_id, status, duration_s, channels "
          "FROM recordings")


def upgrade() -> None:
    # A column added at the end: CREATE OR REPLACE keeps the view's grants and the objects over it.
    op.execute("CREATE OR REPLACE VIEW analytics.recordings AS "
               "SELECT id AS recording_id, bucket, object_key, call_id, call_date, agent_id, status, duration_s, "
               "channels, etag FROM recordings")


def downgrade() -> None:
    # A column cannot leave a view in place: it is made again, with every grant it had (a DBA's
    # reporting role too, as 0014 keeps those on segments), not the analysts' alone.
    grants = op.get_bind().exec_driver_sql(
        "SELECT grantee, string_agg(privilege_type, ', ') FROM information_schema.role_table_grants "
        "WHERE table_schema = 'analytics' AND table_name = 'recordings' AND grantee <> current_user "
        "GROUP BY grantee").all()
    op.execute("DROP VIEW analytics.recordings")
    op.execute(f"CREATE VIEW analytics.recordings AS {BEFORE}")
    op.execute("GRANT SELECT ON analytics.recordings TO callscribe_analyst")
    for grantee, privileges in grants:
        op.execute(f'GRANT {privileges} ON analytics.recordings TO "{grantee}"')
