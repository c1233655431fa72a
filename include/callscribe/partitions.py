"""Monthly partitions of ``segments`` (migration 0014): each month gets its own before its rows load.

A day whose month has no partition would land in ``segments_default`` (nothing is lost, but
its month's searches and loads then read and write the default partition's indexes too), so
the loader makes the months of a load's days first, each in a short transaction of its own.
Attaching a month blocks neither readers nor writers of the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date

from sqlalchemy.engine import Connection, Engine

from callscribe import db

log = logging.getLogger(__name__)

# Months seen with a partition, per process: a load checks the database once per new month.
_known: set[date] = set()


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
    made = []
    for month in missing:
        with engine.begin() as conn:
            if conn.execute(db.q("segment_months_make"), {"month": month}).scalar_one():
                made.append(month)
                log.info("segments: made the partition of %s", month.strftime("%Y-%m"))
    _known.update(months)
    return made


def ensure_for_recordings(engine: Engine, recording_ids: list[int]) -> list[date]:
    """The months of these recordings' days (see ensure_months)."""
    if not recording_ids:
        return []
    with engine.connect() as conn:
        days = conn.execute(db.q("recording_days"), {"ids": recording_ids}).scalars().all()
    return ensure_months(engine, days)
