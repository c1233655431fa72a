"""What settling copies costs a discovery: `python -m benchmarks.copies` (the `bench` profile).

One day of 100,000 rows, the statements `discovery.settle_copies` runs at each discovery of a
day (revive, mark, retire), 5 runs each; the median goes into docs/benchmarks.md. The last case
adds the day before, 100,000 transcribed rows, 1 % of them repeated by the day's new rows
(copies across days, the default window of 7 days).
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


def main() -> int:
    profile = services.profile("bench")
    services.up(profile, airflow=False)
    services.apply_environment(profile)
    from callscribe import db
    from callscribe.discovery import settle_copies

    engine = db.engine_from_env()
    out = {}
    try:
        for status, share, before in CASES:
            _fill(engine, status, share, before)
            times: dict[str, list[float]] = {"0": [], "7": []}
            for i in range(5):  # the window at 0 (one day) and 7 in turn: their ratio, from one run
                for window, runs in times.items():
                    os.environ["CALLSCRIBE_COPY_WINDOW_DAYS"] = window
                    with engine.begin() as c:
                        t = time.perf_counter()
                        settle_copies(c, DAY, f"bench-copies-{i}")
                        runs.append(time.perf_counter() - t)
            with engine.connect() as c:
                marked = c.execute(sa.text("SELECT count(*) FROM recordings WHERE call_date = :d "
                                           "AND status = 'duplicate'"), {"d": DAY}).scalar_one()
            name = f"{status}, {share:.0%} repeating" + (f", {before:.0%} the day before's" if before else "")
            out[name] = {"median_s": round(statistics.median(times["7"]), 4),
                         "runs_s": [round(x, 4) for x in times["7"]],
                         "same_day_only_median_s": round(statistics.median(times["0"]), 4), "marked": marked}
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM recordings WHERE call_date IN (:d, :b)"), {"d": DAY, "b": BEFORE})
        services.down(profile)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
