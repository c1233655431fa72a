"""Search latency at 1M and 10M segments: `python -m benchmarks.scale --segments 10000000`.

Not part of `make bench` (10M segments take about half an hour to generate on 2 cores and
~15 GB of disk). The segments are generated in SQL (generate_series, Zipf-like words from the
same vocabulary as benchmarks/data.py) in a database of their own on the bench server,
`callscribe_scale_<n>`, with the text indexes built after the rows are in, as a bulk load would.
Each size keeps the daily volume of `make bench`'s data (33,333 segments a day, 40 agents, 200
segments a call), so 10M segments are 300 days: history grows, a day does not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date, timedelta

import numpy as np
import sqlalchemy as sa

from benchmarks.data import NAMES, PHRASES, VOCABULARY, WORDS
from callscribe import partitions
from callscribe.loading import NEXT_WORDS

PER_DAY = 33_333
PER_RECORDING = 200
NEWEST = date(2026, 12, 31)  # after every other bench stage's days: the newest data is the search data


def searches(newest: date) -> list[tuple[str, dict]]:
    """benchmarks.stages.SEARCHES with its date range moved into the generated days."""
    from benchmarks.stages import SEARCHES

    out = []
    for query, f in SEARCHES:
        kw = {k: v for k, v in vars(f).items()}
        if f.from_date:
            kw["from_date"], kw["to_date"] = newest - timedelta(days=20), newest - timedelta(days=18)
        out.append((query, kw))
    return out


GENERATE = """
INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, text_redacted, next_redacted,
                      call_date, agent_id)
SELECT recording_id, channel, seq, speaker, start_s, end_s, text, text,
       array_to_string((string_to_array(lead(text) OVER (PARTITION BY recording_id, channel ORDER BY seq), ' '))
                       [1:CAST(:next_words AS int)], ' '),
       call_date, agent_id
FROM (
    SELECT r.id AS recording_id, (g % 2)::smallint AS channel, g / 2 AS seq,
           CASE WHEN g % 2 = 0 THEN 'agent' ELSE 'customer' END AS speaker,
           (g * 4.0)::real AS start_s, (g * 4.0 + 3.5)::real AS end_s, r.call_date, r.agent_id,
           -- 4-16 Zipf-distributed words (rank = 6000^u), a call-centre phrase in 4 %, a topic
           -- word in about 20 %, a name in 1 %: the mix of benchmarks/data.sentence.
           array_to_string(ARRAY(
               SELECT (:vocab)[ceil(power(:nvocab, random()))::int]
               FROM generate_series(1, 4 + (random() * 12)::int + 0 * g)), ' ')
           || CASE WHEN random() < 0.04 THEN ' ' || (:phrases)[1 + (random() * (:nphrases - 1))::int] ELSE '' END
           || CASE WHEN random() < 0.2 THEN ' ' || (:words)[1 + (random() * (:nwords - 1))::int] ELSE '' END
           || CASE WHEN random() < 0.01 THEN ' this is ' || (:names)[1 + (random() * (:nnames - 1))::int] ELSE '' END
           AS text
    FROM recordings AS r
    CROSS JOIN generate_series(0, :per - 1) AS g
    WHERE r.object_key LIKE 'scale/%' AND r.id BETWEEN :lo AND :hi
) AS x
ORDER BY call_date, agent_id, recording_id, channel, seq  -- the loader's order (loading.load_order)
"""

INDEXES = [
    "CREATE INDEX segments_tsv_pair_idx ON segments USING gin (tsv_pair)",
    "CREATE INDEX segments_day_idx ON segments USING brin (call_date) WITH (pages_per_range = 16, autosummarize = on)",
    "CREATE INDEX segments_agent_idx ON segments USING brin (agent_id) WITH (pages_per_range = 8, autosummarize = on)",
]


def _database(admin: sa.Engine, name: str) -> sa.Engine:
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        if not c.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return sa.create_engine(admin.url.set(database=name))


def generate(engine: sa.Engine, n_segments: int) -> dict:
    """n segments in days ending at NEWEST; rows first, indexes after. Idempotent per size."""
    from callscribe import db

    db.migrate(engine)
    with engine.connect() as c:
        have = c.execute(sa.text("SELECT count(*) FROM segments")).scalar_one()
    if have >= n_segments:
        return {"generated_s": None}
    t = time.perf_counter()
    n_rec, days = n_segments // PER_RECORDING, max(1, n_segments // PER_DAY)
    with engine.begin() as c:
        c.exec_driver_sql("TRUNCATE recordings, segments CASCADE")
        for ix in ("segments_tsv_pair_idx", "segments_day_idx", "segments_agent_idx"):
            c.exec_driver_sql(f"DROP INDEX IF EXISTS {ix}")
        # Oldest day first, as nightly loads would have written them.
        c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, agent_id, status, channels, "
            "duration_s) SELECT 'calls', 'scale/' || i || '.wav', 'e', CAST(:newest AS date) - (:days - 1) + "
            "(i * :days / :n), 'c' || i, 'agent-' || lpad((i % 40)::text, 2, '0'), 'done', 2, 900 "
            "FROM generate_series(0, :n - 1) AS i ORDER BY i"), {"newest": NEWEST, "days": days, "n": n_rec})
        lo, hi = c.execute(sa.text("SELECT min(id), max(id) FROM recordings")).one()
    partitions.ensure_months(engine, [NEWEST - timedelta(days=days - 1), NEWEST])
    params = {"vocab": VOCABULARY, "nvocab": len(VOCABULARY), "phrases": PHRASES, "nphrases": len(PHRASES),
              "words": WORDS, "nwords": len(WORDS), "names": NAMES, "nnames": len(NAMES), "per": PER_RECORDING,
              "next_words": NEXT_WORDS}
    step = 5000  # recordings (1M segments) a statement
    for start in range(lo, hi + 1, step):
        with engine.begin() as c:
            c.execute(sa.text(GENERATE), {**params, "lo": start, "hi": min(hi, start + step - 1)})
        print(f"  rows up to recording {min(hi, start + step - 1)} of {hi}: {time.perf_counter() - t:.0f} s",
              flush=True)
    rows_s = time.perf_counter() - t
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("SET maintenance_work_mem = '1GB'")
        for ix in INDEXES:
            c.exec_driver_sql(ix)
            print(f"  {ix.split(' ON ')[0]}: {time.perf_counter() - t:.0f} s", flush=True)
        # The transcripts' words, as the loader adds them (similar-word search starts there).
        c.exec_driver_sql("INSERT INTO lexicon (word) SELECT DISTINCT callscribe_words(text_redacted) FROM segments "
                          "ON CONFLICT DO NOTHING")
        c.exec_driver_sql("VACUUM ANALYZE segments")
        c.exec_driver_sql("VACUUM ANALYZE recordings")
        c.exec_driver_sql("VACUUM ANALYZE lexicon")
    return {"generated_s": round(time.perf_counter() - t), "rows_s": round(rows_s)}


def sizes(engine: sa.Engine) -> dict:
    """Sizes in MiB; a partitioned table's or index's is the sum of its partitions' (a plain table
    has no partition tree)."""
    names = ["segments", "segments_tsv_pair_idx", "segments_day_idx", "segments_agent_idx", "segments_pkey",
             "segments_position", "lexicon", "lexicon_trgm_idx"]
    with engine.connect() as c:
        rows = c.execute(sa.text(
            "SELECT n, COALESCE((SELECT sum(pg_relation_size(t.relid)) FROM pg_partition_tree(n::regclass) AS t), "
            "pg_relation_size(n::regclass)) "
            "FROM unnest(CAST(:names AS text[])) AS n"), {"names": names}).all()
        total = c.execute(sa.text("SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('segments')"
                                  )).scalar_one()
        n = c.execute(sa.text("SELECT count(*) FROM segments")).scalar_one()
    return {"rows": n, "total_mib": round(total / 2**20), **{k: round(v / 2**20) for k, v in rows}}


def latency(engine: sa.Engine, runs: int = 3, repeats: int = 10, recent_days: int | None = 1) -> dict:
    from callscribe.search import SearchFilters, search

    with engine.connect() as c:
        newest = c.execute(sa.text("SELECT max(call_date) FROM segments")).scalar_one()
    p95s, per_query = [], {}
    for _ in range(runs):
        lat = []
        for query, kw in searches(newest):
            f = SearchFilters(**{**kw, "recent_days": recent_days})
            for _ in range(repeats):
                t = time.perf_counter()
                search(engine, query, limit=20, filters=f)
                ms = (time.perf_counter() - t) * 1000
                lat.append(ms)
                per_query.setdefault(query, []).append(ms)
        p95s.append(float(np.percentile(lat, 95)))
    return {"p95_runs": [round(p, 1) for p in p95s], "p95_median": round(statistics.median(p95s), 1),
            "per_query_median_ms": {q: round(statistics.median(v), 1) for q, v in per_query.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--unbounded", action="store_true", help="also measure ranking every match (recent_days NULL)")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    from callscribe.db import engine_from_env
    from callscribe.dev import services

    services.up(services.profile("bench"), airflow=False)
    engine = _database(engine_from_env(), f"callscribe_scale_{args.segments}")
    report = {"segments_asked": args.segments, **generate(engine, args.segments), "sizes": sizes(engine)}
    latency(engine, runs=1, repeats=2)  # warm the caches
    report["windowed"] = latency(engine, runs=args.runs)
    if args.unbounded:
        report["unbounded"] = latency(engine, runs=args.runs, recent_days=None)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
