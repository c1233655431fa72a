"""``segments`` partitioned by month of ``call_date``, on a populated table.

A search window (the newest day, 7, 30 days...) then reads one or two months' indexes whatever
the history, a load updates one month's indexes, and old months can be detached or dropped whole.

- ``segments`` becomes ``PARTITION BY RANGE (call_date)``: one partition a month
  (``segments_yYYYYmMM``) and ``segments_default`` for a day whose month has none yet.
- The keys include the partition key: primary key ``(id, call_date)``, position
  ``(recording_id, channel, seq, call_date)`` (a recording has one day, so the position stays
  unique per recording). ``id`` keeps its sequence.
- ``callscribe_segment_months(first, last)`` creates the missing months in a range, moving
  any rows of theirs out of the default partition; the loader calls it for a shard's days
  (``callscribe.partitions``), so the default partition normally stays empty.
- The trigger that filled ``call_date`` on inserts without one is gone: rows are placed in a
  partition by their day before any trigger runs, so every insert must give it (the loader
  always did).
- The rows are copied into the new table and its indexes built after: about as long as 0012's
  rewrite (an exclusive lock on ``segments`` meanwhile; run it between nightly loads).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

COLUMNS = ("id, recording_id, channel, seq, speaker, start_s, end_s, text, word_starts, text_redacted, "
           "next_redacted, confidence, call_date, agent_id")

TABLE = """
CREATE TABLE {name} (
    id            bigint NOT NULL DEFAULT nextval('segments_id_seq'),
    recording_id  bigint NOT NULL,
    channel       smallint NOT NULL,
    seq           integer NOT NULL,
    speaker       text NOT NULL,
    start_s       real NOT NULL,
    end_s         real NOT NULL,
    text          text NOT NULL,
    word_starts   real[],
    text_redacted text NOT NULL,
    next_redacted text,
    tsv_pair      tsvector GENERATED ALWAYS AS
                  (to_tsvector('english', text_redacted || ' ' || COALESCE(next_redacted, ''))) STORED,
    confidence    real,
    call_date     date NOT NULL,
    agent_id      text,
    CONSTRAINT segments_times CHECK (end_s >= start_s AND start_s >= 0),
    CONSTRAINT segments_confidence_range CHECK (confidence >= 0 AND confidence <= 1)
){partitioning}
"""

# Built after the rows are in (as 0012 rebuilt its text indexes): faster than row by row.
# On the partitioned table each is built on every partition, and on the ones attached later.
KEYS = {
    "segments_pkey": "PRIMARY KEY ({key})",
    "segments_position": "UNIQUE (recording_id, channel, seq{extra})",
}
INDEXES = [
    "CREATE INDEX segments_tsv_pair_idx ON segments USING gin (tsv_pair)",
    # BRIN within each month: a day's rows still sit together in its partition.
    "CREATE INDEX segments_day_idx ON segments USING brin (call_date) WITH (pages_per_range = 16, autosummarize = on)",
    "CREATE INDEX segments_agent_day_idx ON segments (agent_id, call_date)",
]
FOREIGN_KEY = ("ALTER TABLE segments ADD CONSTRAINT segments_recording_id_fkey "
               "FOREIGN KEY (recording_id) REFERENCES recordings (id) ON DELETE CASCADE")
FORGET_METRICS_TRIGGER = ("CREATE TRIGGER segments_forget_metrics AFTER DELETE ON segments REFERENCING OLD TABLE AS "
                          "gone FOR EACH STATEMENT EXECUTE FUNCTION callscribe_forget_call_metrics()")
FORGET_WORDS_TRIGGER = ("CREATE TRIGGER segments_forget_words AFTER DELETE ON segments REFERENCING OLD TABLE AS "
                        "gone FOR EACH STATEMENT EXECUTE FUNCTION callscribe_forget_words()")
FILL_CALL_TRIGGER = ("CREATE TRIGGER segments_call_fill BEFORE INSERT ON segments FOR EACH ROW "
                     "WHEN (NEW.call_date IS NULL) EXECUTE FUNCTION callscribe_segment_call()")

SEGMENT_MONTHS = r"""
CREATE FUNCTION callscribe_segment_months(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', first_day)::date;
    part text;
    made integer := 0;
BEGIN
    -- One at a time: two loads of a new month must not both create it.
    PERFORM pg_advisory_xact_lock(hashtext('callscribe_segment_months'));
    WHILE month <= last_day LOOP
        part := 'segments_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM');
        IF to_regclass(part) IS NULL THEN
            -- Made on its own and attached: attaching blocks neither readers nor writers of the
            -- other months (CREATE ... PARTITION OF would lock the whole table). The month's rows
            -- that went to the default partition move in first.
            EXECUTE format('CREATE TABLE %I (LIKE segments INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                           'INCLUDING GENERATED)', part);
            EXECUTE format('WITH moved AS (DELETE FROM segments_default WHERE call_date >= %L AND call_date < %L '
                           'RETURNING *) INSERT INTO %I (%s) SELECT %s FROM moved',
                           month, (month + interval '1 month')::date, part, '{columns}', '{columns}');
            EXECUTE format('ALTER TABLE segments ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           part, month, (month + interval '1 month')::date);
            made := made + 1;
        END IF;
        month := (month + interval '1 month')::date;
    END LOOP;
    RETURN made;
END $$
""".replace("{columns}", COLUMNS)


def _module(name: str):
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"callscribe_migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raw(sql: str) -> None:
    # Function bodies hold text that SQLAlchemy would read as binds.
    with op.get_bind().connection.driver_connection.cursor() as cur:
        cur.execute(sql)


def _swap(partitioned: bool) -> None:
    """Copy ``segments`` into a new table (partitioned or not) with the same name, keys, indexes,
    triggers and grants; the views over it are made again."""
    views = _module("0012_search_at_scale_call_metrics.py")
    bind = op.get_bind()
    grants = bind.exec_driver_sql(
        "SELECT grantee, string_agg(privilege_type, ', ') FROM information_schema.role_table_grants "
        "WHERE table_schema = 'public' AND table_name = 'segments' AND grantee <> current_user "
        "GROUP BY grantee").all()
    op.execute(views.DROP_VIEWS)
    op.execute("ALTER TABLE segments RENAME TO segments_old")
    op.execute("ALTER SEQUENCE segments_id_seq OWNED BY NONE")
    for name in [*KEYS, "segments_recording_id_fkey", "segments_times", "segments_confidence_range"]:
        op.execute(f"ALTER TABLE segments_old RENAME CONSTRAINT {name} TO {name}_old")
    for ix in INDEXES:
        name = ix.split()[2]
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_old")
    op.execute(TABLE.format(name="segments",
                            partitioning=" PARTITION BY RANGE (call_date)" if partitioned else ""))
    op.execute("ALTER SEQUENCE segments_id_seq OWNED BY segments.id")
    if partitioned:
        op.execute("CREATE TABLE segments_default PARTITION OF segments DEFAULT")
        _raw(SEGMENT_MONTHS)
        # The months that hold calls, and this one and the next two (loads create later ones).
        op.execute("SELECT callscribe_segment_months(m, m) FROM (SELECT DISTINCT date_trunc('month', call_date)::date "
                   "AS m FROM segments_old UNION SELECT (date_trunc('month', current_date) + i * interval '1 month')"
                   "::date FROM generate_series(0, 2) AS i) AS months ORDER BY m")
    op.execute(f"INSERT INTO segments ({COLUMNS}) SELECT {COLUMNS} FROM segments_old ORDER BY call_date, id")
    op.execute("DROP TABLE segments_old")
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    key, extra = ("id, call_date", ", call_date") if partitioned else ("id", "")
    for name, definition in KEYS.items():
        op.execute(f"ALTER TABLE segments ADD CONSTRAINT {name} " + definition.format(key=key, extra=extra))
    for ix in INDEXES:
        op.execute(ix)
    op.execute(FOREIGN_KEY)
    op.execute(FORGET_METRICS_TRIGGER)
    op.execute(FORGET_WORDS_TRIGGER)
    if not partitioned:
        op.execute(FILL_CALL_TRIGGER)
    for grantee, privileges in grants:
        op.execute(f'GRANT {privileges} ON segments TO "{grantee}"')
    _raw(views.VIEWS)
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO callscribe_analyst")


def upgrade() -> None:
    _swap(partitioned=True)


def downgrade() -> None:
    _swap(partitioned=False)
    op.execute("DROP FUNCTION callscribe_segment_months(date, date)")
