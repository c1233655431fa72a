"""What settling copies costs a discovery: `python -m benchmarks.copies` (the `bench` profile).

One day of 100,000 rows, the statements `discovery.settle_copies` runs at each discovery of a
day (revive, mark, retire), 5 runs each; the median goes into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import date

import sqlalchemy as sa

from callscribe.dev import services

DAY = date(2024, 6, 3)  # a day of its own in the bench database
ROWS = 100_000
CASES = (("pending", 0.0), ("done", 0.0), ("pending", 0.01))  # status of every row, share repeating another's


def _fill(engine, status: str, share: float) -> None:
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM recordings WHERE call_date = :d"), {"d": DAY})
        c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status) "
            "SELECT 'bench', 'copies/' || g, md5(CASE WHEN random() < :share THEN (g % 100)::text ELSE g::text END), "
            "1000, :d, g::text, :s FROM generate_series(1, :n) AS g"),
            {"d": DAY, "s": status, "share": share, "n": ROWS})
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
        for status, share in CASES:
            _fill(engine, status, share)
            times = []
            for i in range(5):
                with engine.begin() as c:
                    t = time.perf_counter()
                    settle_copies(c, DAY, f"bench-copies-{i}")
                    times.append(time.perf_counter() - t)
            with engine.connect() as c:
                marked = c.execute(sa.text("SELECT count(*) FROM recordings WHERE call_date = :d "
                                           "AND status = 'duplicate'"), {"d": DAY}).scalar_one()
            out[f"{status}, {share:.0%} repeating"] = {"median_s": round(statistics.median(times), 4),
                                                       "runs_s": [round(x, 4) for x in times], "marked": marked}
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM recordings WHERE call_date = :d"), {"d": DAY})
        services.down(profile)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
