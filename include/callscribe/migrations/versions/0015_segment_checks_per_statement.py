"""Cheaper segment writes: the recording check once per statement, the agent index a BRIN.

A 200,000-segment load spent about 2 s of its database time on the foreign key
``segments.recording_id -> recordings.id`` (a lookup and a row lock per inserted segment, 100 per
call) and 0.6 s on the B-tree ``(agent_id, call_date)``. Both are replaced, with the same
guarantees:

- The foreign key stays declared, ``NOT ENFORCED`` (PostgreSQL 18), so the schema still says what
  ``recording_id`` means. What enforced it is now done per statement:
  - ``segments_recording_check`` (after every INSERT into ``segments``) looks up the distinct
    recordings of the statement's rows once, locks them ``FOR KEY SHARE`` as the key did (a
    recording cannot be deleted under a load that has not committed), and refuses the statement
    with ``foreign_key_violation`` if one is missing;
  - ``segments_recording_fixed`` refuses an UPDATE that moves a segment to another recording;
  - ``recordings_delete_segments`` (after every DELETE on ``recordings``) deletes the deleted
    recordings' segments: the cascade, once per statement;
  - ``recordings_id_fixed`` refuses an UPDATE of a recording's id (the key refused one that
    segments pointed to).
  Rows written straight into a partition are not checked: ``callscribe_segment_months`` moving
  rows out of the default one, and the loader, whose fence (``load_fence.sql``) has checked and
  locked the recordings ``FOR UPDATE`` (COPY into the partitioned table, with this trigger,
  would insert row by row). Anything else should write through ``segments``.
- ``segments_agent_day_idx`` becomes ``segments_agent_idx``, a BRIN on ``agent_id``: the loader
  writes a shard's segments grouped by agent (``loading.load_order``), so one agent's rows sit in
  few block ranges of a day, and agent filters combine it with the day's BRIN and the text index.

- ``transcripts.text`` and ``text_redacted`` (a channel's whole text, written once a load and read
  whole) are compressed with lz4 where the server has it, and otherwise stored uncompressed:
  pglz, the only compression of a build without lz4, cost 0.45 s of a 200,000-segment load (a
  third of its work outside the segments) to halve a table that is a tenth of the segments'
  size. Rows already stored keep their form.

All are quick on a populated table (a BRIN build is one pass).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

RECORDING_CHECK = r"""
CREATE FUNCTION callscribe_segments_recording_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT a.recording_id INTO missing
    FROM (SELECT DISTINCT recording_id FROM added) AS a
    LEFT JOIN LATERAL (SELECT true AS found FROM recordings AS r WHERE r.id = a.recording_id FOR KEY SHARE) AS r
           ON true
    WHERE r.found IS NULL
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert into segments: recording % does not exist', missing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'segments_recording_id_fkey';
    END IF;
    RETURN NULL;
END $$
"""

RECORDING_FIXED = r"""
CREATE FUNCTION callscribe_segments_recording_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a segment stays with its recording (% to %): delete it and insert a new one',
        OLD.recording_id, NEW.recording_id USING ERRCODE = 'foreign_key_violation';
END $$
"""

ID_FIXED = r"""
CREATE FUNCTION callscribe_recordings_id_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a recording keeps its id (% to %): its segments point to it', OLD.id, NEW.id
        USING ERRCODE = 'foreign_key_violation';
END $$
"""

DELETE_SEGMENTS = r"""
CREATE FUNCTION callscribe_recordings_delete_segments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM segments WHERE recording_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$
"""

TRIGGERS = [
    "CREATE TRIGGER segments_recording_check AFTER INSERT ON segments REFERENCING NEW TABLE AS added "
    "FOR EACH STATEMENT EXECUTE FUNCTION callscribe_segments_recording_check()",
    "CREATE TRIGGER segments_recording_fixed BEFORE UPDATE OF recording_id ON segments FOR EACH ROW "
    "WHEN (NEW.recording_id IS DISTINCT FROM OLD.recording_id) EXECUTE FUNCTION callscribe_segments_recording_fixed()",
    "CREATE TRIGGER recordings_delete_segments AFTER DELETE ON recordings REFERENCING OLD TABLE AS gone "
    "FOR EACH STATEMENT EXECUTE FUNCTION callscribe_recordings_delete_segments()",
    "CREATE TRIGGER recordings_id_fixed BEFORE UPDATE OF id ON recordings FOR EACH ROW "
    "WHEN (NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION callscribe_recordings_id_fixed()",
]


def _raw(sql: str) -> None:
    # Function bodies hold text that SQLAlchemy would read as binds.
    with op.get_bind().connection.driver_connection.cursor() as cur:
        cur.execute(sql)


def _transcript_texts(setting: str) -> None:
    op.execute(f"ALTER TABLE transcripts ALTER COLUMN text SET {setting}, ALTER COLUMN text_redacted SET {setting}")


def upgrade() -> None:
    op.execute("ALTER TABLE segments DROP CONSTRAINT segments_recording_id_fkey")
    op.execute("ALTER TABLE segments ADD CONSTRAINT segments_recording_id_fkey "
               "FOREIGN KEY (recording_id) REFERENCES recordings (id) NOT ENFORCED")
    for sql in (RECORDING_CHECK, RECORDING_FIXED, DELETE_SEGMENTS, ID_FIXED):
        _raw(sql)
    for sql in TRIGGERS:
        op.execute(sql)
    op.execute("DROP INDEX segments_agent_day_idx")
    # Summarised as block ranges fill (as the day's BRIN): the newest rows, which newest-first
    # search reads, would otherwise wait for a vacuum to be summarised.
    op.execute("CREATE INDEX segments_agent_idx ON segments USING brin (agent_id) "
               "WITH (pages_per_range = 8, autosummarize = on)")
    lz4 = op.get_bind().exec_driver_sql("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                                        "WHERE name = 'default_toast_compression'").scalar()
    _transcript_texts("COMPRESSION lz4" if lz4 else "STORAGE EXTERNAL")


def downgrade() -> None:
    _transcript_texts("STORAGE EXTENDED")
    _transcript_texts("COMPRESSION default")
    op.execute("DROP INDEX segments_agent_idx")
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute("CREATE INDEX segments_agent_day_idx ON segments (agent_id, call_date)")
    triggers = (("segments_recording_check", "segments"), ("segments_recording_fixed", "segments"),
                ("recordings_delete_segments", "recordings"), ("recordings_id_fixed", "recordings"))
    for name, table in triggers:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    for name, _ in triggers:
        op.execute(f"DROP FUNCTION callscribe_{name}()")
    op.execute("ALTER TABLE segments DROP CONSTRAINT segments_recording_id_fkey")
    # Validated on the rows: any segment left without its recording fails the downgrade.
    op.execute("ALTER TABLE segments ADD CONSTRAINT segments_recording_id_fkey "
               "FOREIGN KEY (recording_id) REFERENCES recordings (id) ON DELETE CASCADE")
