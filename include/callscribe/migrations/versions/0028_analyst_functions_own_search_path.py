"""Similar-word search finds pg_trgm whatever search_path the analysts' login has.

``analytics.search`` and its helpers call pg_trgm's functions and operators (``word_similarity``,
``similarity``, ``%``, ``<%``) by their bare names: they were looked up in the caller's search_path.
A DBA who sets ``ALTER ROLE ... SET search_path = analytics`` on an analysts' login (so that BI
users write ``FROM calls``; docs/deploy.md tells DBAs to give logins their settings so) left pg_trgm's
schema out of it, and every similar-word search, the automatic fallback too, failed with
"function word_similarity(text, text) does not exist", on the page and in notebooks alike. Each
function now carries its own search_path: analytics, then the schema pg_trgm is installed in (read
here, not assumed to be public). pg_catalog stays first, as PostgreSQL puts it when a path does not
name it. The helpers are SQL functions with a FROM clause, which PostgreSQL never inlines: the SET
clause costs no plan.

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-28
"""

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

# Every analytics function that names a pg_trgm function or operator (analytics.search calls the
# others; each carries the path too, for analysts who call a helper themselves).
FUNCTIONS = (
    "analytics.search(text, date, date, text, text, double precision, boolean, integer, integer)",
    "analytics.similar_query(text)",
    "analytics.mark_similar(text, text)",
    "analytics.word_time(text, real[], text[], text)",
)


def upgrade() -> None:
    trgm = op.get_bind().exec_driver_sql(
        "SELECT quote_ident(n.nspname) FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_trgm'").scalar_one()
    # public last: where the functions found the pipeline's tables through the callers' default path
    # before; kept when pg_trgm lives elsewhere (an `extensions` schema on some managed services).
    path = ", ".join(dict.fromkeys(("analytics", trgm, "public")))
    for signature in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {signature} SET search_path = {path}")


def downgrade() -> None:
    for signature in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {signature} RESET search_path")
