"""Similar-word search reads its threshold from analytics.search itself, not from the session.

0003 lowered pg_trgm's word similarity threshold to 0.45 on the database (``ALTER DATABASE ...
SET``), which only sessions that start afterwards read. Behind a connection pooler (PgBouncer in
transaction mode, a managed service's pooler) server sessions outlive the client connections and
the migration itself: the one that ran the migrations, and any opened before, kept pg_trgm's 0.6,
and a search that landed on one missed the similar words 0.45 finds (a name spelt "Cathrine" for
"Catherine") until the pooler renewed it, an hour later by default. A SET clause on the function
applies to every call, whatever the session (the function is PL/pgSQL: nothing to inline).

Revision ID: 0027
Revises: 0026
Create Date: 2026-11-28
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

# As 0003 sets on the database (kept there for analysts' own queries with <%).
WORD_SIMILARITY_THRESHOLD = "0.45"


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION analytics.search SET pg_trgm.word_similarity_threshold = {WORD_SIMILARITY_THRESHOLD}")


def downgrade() -> None:
    op.execute("ALTER FUNCTION analytics.search RESET pg_trgm.word_similarity_threshold")
