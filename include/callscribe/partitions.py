"""Monthly partitions of ``segments`` (migration 0014): each month gets its own before its rows load.

A day whose month has no partition would land in ``segments_default`` (nothing is lost, but
its month's searches and loads then read and write the default partition's indexes too), so
the loader makes the months of a load's days first, each in a short transaction of its own, and
the maintenance DAG makes the current and next month ahead of their loads.

Attaching a month needs an exclusive lock on the default partition, which an analyst's long
query over ``segments`` holds off; a lock request waiting behind it would hold up every later
reader and writer of ``segments`` too (the search page, the next load). So a month is made
only when its locks are free (segment_months_make.sql: it waits, briefly, only for writes under
way), tried a few times, and otherwise left for later: its rows wait in the default partition
meanwhile (nothing is lost, and the month's making moves them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from callscribe import db

log = logging.getLogger(__name__)

# Months seen with a partition, per process: a load checks the database once per new month.
_known: set[date] = set()
# How long the making of a month may queue for writes under way on segments (later writers queue
# behind it meanwhile; readers never do), and the waits before each try: about 15 s in all before
# a load goes on without the month.
LOCK_TIMEOUT = "1s"
TRIES = (0.0, 1.0, 2.0, 4.0, 8.0)
# A lock timed out or was not free (segment_months_make.sql), or a deadlock check chose the making
# (it waits first, so it is the one to give way): the try is rolled back whole, and tried again.
TRY_AGAIN = {"55P03", "40P01"}


def month_table(day: date) -> str:
    """The partition of ``day``'s month (callscribe_segment_months names them so)."""
    return f"segments_y{day:%Y}m{day:%m}"


def attached(conn: Connection, table: str) -> bool:
    """Whether ``table`` is a partition of ``segments`` now."""
    return conn.execute(db.q("segment_month_table"), {"name": table}).scalar_one()


def ensure_months(engine: Engine, days: Iterable[date]) -> list[date]:
    """Create the missing monthly partitions for ``days``; returns the months created."""
    months = sorted({d.replace(day=1) for d in days} - _known)
    if not months:
        return []
    with engine.connect() as conn:
        missing = list(conn.execute(db.q("segment_months_missing"), {"months": months}).scalars())
    made, deferred = [], []
    for month in missing:
        got = _make(engine, month)
        if got is None:
            deferred.append(month)
        elif got:
            made.append(month)
            log.info("segments: made the partition of %s", month.strftime("%Y-%m"))
    _known.update(set(months) - set(deferred))
    return made


def _make(engine: Engine, month: date) -> bool | None:
    """Make ``month``'s partition: whether this call made it (False: another had), or None when
    long queries held its locks through every try."""
    for wait in TRIES:
        time.sleep(wait)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                return bool(conn.execute(db.q("segment_months_make"), {"month": month}).scalar_one())
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) not in TRY_AGAIN:
                raise
    log.warning("segments: the partition of %s is not made yet: long queries on segments held its locks; "
                "its rows wait in segments_default until a later load or the maintenance DAG makes it",
                month.strftime("%Y-%m"))
    return None


def ensure_ahead(engine: Engine, today: date) -> list[date]:
    """The current and next month, made before their first loads (the maintenance DAG, daily)."""
    first = today.replace(day=1)
    return ensure_months(engine, [first, (first + timedelta(days=32)).replace(day=1)])


def ensure_waiting(engine: Engine) -> list[date]:
    """The months of rows waiting in the default partition (the maintenance DAG, daily): a held-off
    month of a backfill may see no later load of its own to make it."""
    with engine.connect() as conn:
        months = conn.execute(db.q("segment_months_waiting")).scalars().all()
    # Asked of the database, not of _known: a month this process made may have been detached since.
    _known.difference_update(months)
    return ensure_months(engine, months)


def ensure_for_recordings(engine: Engine, recording_ids: list[int]) -> list[date]:
    """The months of these recordings' days (see ensure_months)."""
    if not recording_ids:
        return []
    with engine.connect() as conn:
        days = conn.execute(db.q("recording_days"), {"ids": recording_ids}).scalars().all()
    return ensure_months(engine, days)
