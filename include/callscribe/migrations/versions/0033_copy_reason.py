"""One wording for a copy's reason: ``callscribe_copy_reason``.

A recording marked ``duplicate`` says in ``last_error`` which recording it repeats and how it was
matched (the same etag, or the same bytes under another etag). Discovery, the chunker and the
retirement of a second transcript all write that sentence; written out in each statement, the
wording had already drifted apart once. Analysts and `callscribe status` read it, so it is one
function now. IMMUTABLE: the text depends on its arguments only.

Revision ID: 0033
Revises: 0032
Create Date: 2026-11-29
"""

from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

COPY_REASON = """
CREATE FUNCTION callscribe_copy_reason(original_key text, original_date date, original_id bigint,
                                       same_etag boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN same_etag
                THEN 'same content as ' || original_key || ' of ' || CAST(original_date AS text)
                     || ' (recording ' || original_id || '): one call, transcribed there'
                ELSE 'same bytes as ' || original_key || ' of ' || CAST(original_date AS text)
                     || ' (recording ' || original_id || ', uploaded with another etag): one call, '
                     || 'transcribed there' END
$$
"""


def upgrade() -> None:
    op.execute(COPY_REASON)


def downgrade() -> None:
    op.execute("DROP FUNCTION callscribe_copy_reason(text, date, bigint, boolean)")
