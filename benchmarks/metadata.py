"""What looking for metadata fixes costs a discovery: `python -m benchmarks.metadata` (the `bench` profile).

A day of 100,000 transcribed rows is listed again (`discovery.register`, the listing as the store
would give it), 5 times each with and without the statement that finds rows whose object was
modified since their metadata was read (`discover_metadata_stale.sql`), in alternating rounds, so
the ratio comes from one run. Then the same listing with 1 % of its objects modified later (a bulk
metadata fix): the registration that finds them, and the HEADs and updates that follow
(`discovery.refresh_metadata`) against the bench profile's S3 server, on 1,000 real objects.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from callscribe.dev import services

DAY = date(2024, 7, 1)  # a day of its own in the bench database
ROWS = 100_000
FIXED_EVERY = 100
ROUNDS, RUNS = 3, 5
PREFIX = "bench-metadata/2024/07/01/"


def _objects(at: datetime, bucket: str, real_etag: str) -> list:
    """The day's listing; every FIXED_EVERY-th object is real (one byte), the rest made up."""
    from callscribe.storage import ObjectInfo

    return [ObjectInfo(bucket, f"{PREFIX}c{i:06d}.wav", real_etag if i % FIXED_EVERY == 0 else f"{i:032x}", 1000, at)
            for i in range(ROWS)]


def _register_times(engine, objects: list, label: str, without_stale: bool) -> list[float]:
    from callscribe import db, discovery

    real = db.q
    if without_stale:
        db.q = lambda name: sa.text("SELECT 1 WHERE false") if name == "discover_metadata_stale" else real(name)
    try:
        times = []
        for k in range(RUNS):
            t = time.perf_counter()
            discovery.register(engine, objects, DAY, f"bench-metadata-{label}-{k}")
            times.append(time.perf_counter() - t)
        return times
    finally:
        db.q = real


def _summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3)}


def main() -> int:
    profile = services.profile("bench")
    services.up(profile, airflow=False)
    services.apply_environment(profile)
    from callscribe import db, discovery, storage

    engine = db.engine_from_env()
    db.migrate(engine)
    store = storage.store()
    at = datetime(2024, 7, 1, 12, tzinfo=UTC)
    keys = [f"{PREFIX}c{i:06d}.wav" for i in range(0, ROWS, FIXED_EVERY)]
    for key in keys:
        store.put_bytes(store.uri(key), b"x", metadata={"agent-id": "first"})
    objects = _objects(at, store.bucket, store.stat(store.bucket, keys[0])[0])
    out: dict = {}
    try:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM recordings WHERE call_date = :d"), {"d": DAY})
        discovery.register(engine, objects, DAY, "bench-metadata-0")
        with engine.begin() as c:
            c.execute(sa.text("UPDATE recordings SET status = 'done' WHERE call_date = :d"), {"d": DAY})
        # One listing first, untimed: the first after the day's 100,000 rows were rewritten pays their
        # hint bits and visibility map (about 10 s here), whichever variant it is.
        discovery.register(engine, objects, DAY, "bench-metadata-warm")
        with_stale, without = [], []
        for r in range(ROUNDS):
            with_stale += _register_times(engine, objects, f"w{r}", False)
            without += _register_times(engine, objects, f"n{r}", True)
        out["listed again, 100,000 done rows"] = {
            "with the check": _summary(with_stale), "without": _summary(without),
            "ratio": round(statistics.median(with_stale) / statistics.median(without), 3)}
        # A bulk fix of 1 % of the day: the same bytes (so etag) with new metadata, listed 5 s later.
        for key in keys:
            store.put_bytes(store.uri(key), b"x", metadata={"agent-id": "fixed"})
        later = [type(o)(o.bucket, o.key, o.etag, o.size, at + timedelta(seconds=5)) if i % FIXED_EVERY == 0 else o
                 for i, o in enumerate(objects)]
        stale: list = []
        t = time.perf_counter()
        discovery.register(engine, later, DAY, "bench-metadata-fix", stale=stale)
        found = time.perf_counter() - t
        t = time.perf_counter()
        changed = discovery.refresh_metadata(store, engine, stale)
        refreshed = time.perf_counter() - t
        out["1 % fixed (1,000 keys)"] = {"register_s": round(found, 3), "found": len(stale),
                                         "refresh_s": round(refreshed, 3), "changed": changed,
                                         "ms_per_key": round(1000 * refreshed / max(len(stale), 1), 2)}
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM recordings WHERE call_date = :d"), {"d": DAY})
        for key in keys:
            store.purge(store.uri(key))
        services.down(profile)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
