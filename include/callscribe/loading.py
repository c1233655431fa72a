"""Load transcript shards into Postgres: COPY into staging, replace, in one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from callscribe import db
from callscribe.manifests import SEGMENT_COLUMNS, ShardInfo, from_parquet
from callscribe.storage import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    shards: int
    recordings: int
    segments: int


def load_shards(store: Store, engine: Engine, shard_uris: list[str]) -> LoadResult:
    """Make the shards' recordings `done` with exactly the shards' segments.

    Re-loading the same shards changes nothing: each recording's previous segments and
    transcripts are replaced inside the same transaction that stages the new ones.
    """
    shards = []
    for uri in shard_uris:
        df, meta = from_parquet(store.get_bytes(uri))
        shards.append((uri, df, ShardInfo(**meta)))
    total_segments = 0
    ids: list[int] = []
    with engine.begin() as conn:
        conn.execute(db.q("load_stage"))
        for uri, df, info in shards:
            rows = df[SEGMENT_COLUMNS].itertuples(index=False, name=None)
            total_segments += db.copy_rows(conn, "stage_segments", SEGMENT_COLUMNS, rows)
            shard_ids = [r.recording_id for r in info.recordings]
            ids.extend(shard_ids)
            conn.execute(db.q("load_replace"), {"ids": shard_ids, "engine": info.engine})
            for b in info.batches:
                conn.execute(db.q("load_batches"), {
                    "run_id": info.run_id, "job_id": info.job_id, "shard_uri": uri, "engine": info.engine,
                    **b.model_dump(),
                })
    log.info("loaded %d shards: %d recordings, %d segments", len(shards), len(ids), total_segments)
    return LoadResult(len(shards), len(ids), total_segments)
