"""What settling copies costs a discovery: `python -m benchmarks.copies` (the `bench` profile).

One day of 100,000 rows, the statements `discovery.settle_copies` runs at each discovery of a
day (revive, mark, retire), 5 runs each; the median goes into docs/benchmarks.md. The last case
adds the day before, 100,000 transcribed rows, 1 % of them repeated by the day's new rows
(copies across days, the default window of 7 days). The case "copies elsewhere" is a day of 1,000
new rows beside 40,000 copies on 40 other days, whose originals are on the days after theirs:
what a small day's settle pays for copies it has nothing to do with.
`python -m benchmarks.copies elsewhere` runs that case alone.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import date, timedelta

import sqlalchemy as sa

from callscribe.dev import services

DAY = date(2024, 6, 3)  # a day of its own in the bench database
ROWS = 100_000
BEFORE = DAY - timedelta(days=1)
# Status of every row, share repeating another row of the day, share repeating the day before's.
CASES = (("pending", 0.0, 0.0), ("done", 0.0, 0.0), ("pending", 0.01, 0.0), ("pending", 0.0, 0.01))
ELSEWHERE_DAYS, ELSEWHERE_PER_DAY, ELSEWHERE_NEW = 40, 1_000, 1_000
FAR = DAY + timedelta(days=30)  # the other days start here, outside DAY's window


def _fill(engine, status: str, share: float, before: float) -> None:
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM recordings WHERE call_date IN (:d, :b)"), {"d": DAY, "b": BEFORE})
        c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status) "
            "SELECT 'bench', 'copies/' || g, md5(CASE WHEN random() < :share THEN (g % 100)::text "
            "WHEN random() < :before THEN 'before ' || g ELSE g::text END), "
            "1000, :d, g::text, :s FROM generate_series(1, :n) AS g"),
            {"d": DAY, "s": status, "share": share, "before": before, "n": ROWS})
        if before:
            c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status) "
                "SELECT 'bench', 'copies-before/' || g, md5('before ' || g), 1000, :b, g::text, 'done' "
                "FROM generate_series(1, :n) AS g"), {"b": BEFORE, "n": ROWS})
        c.execute(sa.text("ANALYZE recordings"))


def _fill_elsewhere(engine) -> None:
    """DAY: 1,000 new rows; days FAR.. FAR+40: 1,000 transcribed originals each, and their copies
    on the day before (40,000 `duplicate` rows with duplicate_of set)."""
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM recordings WHERE call_date = :d OR call_date BETWEEN :f AND :l"),
                  {"d": DAY, "f": FAR - timedelta(days=1), "l": FAR + timedelta(days=ELSEWHERE_DAYS)})
        c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status) "
            "SELECT 'bench', 'copies-new/' || g, md5('new ' || g), 1000, :d, g::text, 'pending' "
            "FROM generate_series(1, :n) AS g"), {"d": DAY, "n": ELSEWHERE_NEW})
        for k in range(ELSEWHERE_DAYS):
            day = FAR + timedelta(days=k + 1)
            c.execute(sa.text(
                "WITH o AS (INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status) "
                "SELECT 'bench', 'copies-far/' || :k || '/' || g, md5('far ' || :k || ' ' || g), 1000, :day, "
                "g::text, 'done' FROM generate_series(1, :n) AS g RETURNING id, object_key, etag) "
                "INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status, "
                "duplicate_of, last_error) SELECT 'bench', o.object_key || '-copy', o.etag, 1000, "
                "CAST(:day AS date) - 1, o.id::text, 'duplicate', o.id, 'same content' FROM o"),
                {"k": k, "day": day, "n": ELSEWHERE_PER_DAY})
        c.execute(sa.text("ANALYZE recordings"))


def _time_settles(engine, runs: int = 5) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"0": [], "7": []}
    for i in range(runs):  # the window at 0 (one day) and 7 in turn: their ratio, from one run
        for window, out in times.items():
            os.environ["CALLSCRIBE_COPY_WINDOW_DAYS"] = window
            from callscribe.discovery import settle_copies

            with engine.begin() as c:
                t = time.perf_counter()
                settle_copies(c, DAY, f"bench-copies-{i}")
                out.append(time.perf_counter() - t)
    return times


def _summary(times: dict[str, list[float]], marked: int) -> dict:
    return {"median_s": round(statistics.median(times["7"]), 4), "runs_s": [round(x, 4) for x in times["7"]],
            "same_day_only_median_s": round(statistics.median(times["0"]), 4), "marked": marked}


def _marked(engine) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM recordings WHERE call_date = :d "
                                 "AND status = 'duplicate'"), {"d": DAY}).scalar_one()


def main() -> int:
    profile = services.profile("bench")
    services.up(profile, airflow=False)
    services.apply_environment(profile)
    from callscribe import db

    engine = db.engine_from_env()
    out = {}
    only_elsewhere = sys.argv[1:] == ["elsewhere"]
    try:
        for status, share, before in () if only_elsewhere else CASES:
            _fill(engine, status, share, before)
            times = _time_settles(engine)
            name = f"{status}, {share:.0%} repeating" + (f", {before:.0%} the day before's" if before else "")
            out[name] = _summary(times, _marked(engine))
        _fill_elsewhere(engine)
        out["copies elsewhere"] = _summary(_time_settles(engine), _marked(engine))
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM recordings WHERE call_date IN (:d, :b) OR call_date BETWEEN :f AND :l"),
                      {"d": DAY, "b": BEFORE, "f": FAR - timedelta(days=1), "l": FAR + timedelta(days=ELSEWHERE_DAYS)})
        services.down(profile)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
