"""Load transcript shards into Postgres: COPY into staging, replace, one transaction a shard.

Loads are fenced: a shard's rows go in only for recordings its run still owns, so a
cleared task of an old run, or a run whose lease expired while it was slow, cannot put an
older transcript over a newer one. Each shard is its own transaction, so one unreadable
shard or one dead job does not keep the rest of the day out of Postgres.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy.engine import Engine

from callscribe import db
from callscribe.errors import describe
from callscribe.manifests import (
    CONFIDENCE,
    SEGMENT_COLUMNS,
    WORD_STARTS,
    JobFailure,
    JobManifest,
    ShardInfo,
    failure_uri,
    from_parquet,
)
from callscribe.redaction import redact_channel_timed
from callscribe.storage import Store, unavailable

log = logging.getLogger(__name__)


class LoadIncomplete(RuntimeError):
    """Some shards could not be loaded; the others were."""


@dataclass(frozen=True)
class LoadResult:
    shards: int = 0
    recordings: int = 0  # made `done` by this load
    segments: int = 0
    failed: int = 0  # recordings the worker could not transcribe, now `failed` with the reason
    unfinished_jobs: list[str] = field(default_factory=list)  # jobs without a shard

    def __add__(self, other: LoadResult) -> LoadResult:
        return LoadResult(self.shards + other.shards, self.recordings + other.recordings,
                          self.segments + other.segments, self.failed + other.failed,
                          self.unfinished_jobs + other.unfinished_jobs)


def pg_real_array(values) -> str | None:
    """A list of seconds as a PostgreSQL real[] literal for COPY; None (NULL) when there are none."""
    if values is None or len(values) == 0:
        return None
    return "{" + ",".join(f"{float(v):.3f}" for v in values) + "}"


def confidences(df: pd.DataFrame) -> list[float | None]:
    """Each row's confidence for COPY (4 decimals), None (NULL) where it has none: a whole shard
    from before confidences, or an engine without them (a null column reads as None or NaN)."""
    if CONFIDENCE not in df:
        return [None] * len(df)
    values = pd.to_numeric(df[CONFIDENCE], errors="coerce").astype("float64").round(4)
    return values.astype(object).where(values.notna(), None).tolist()


def redacted(df: pd.DataFrame) -> tuple[list[str], list[list[float] | None]]:
    """Each row's text with numbers masked and its word times lined up with the masked text, a
    channel of a recording at a time (rows sorted by recording, channel and seq), so a number
    dictated over two segments is masked in both. Only the masked words' times are stored."""
    texts: list[str] = []
    starts: list[list[float] | None] = []
    for _, group in df.groupby(["recording_id", "channel"], sort=False):
        raw = group[WORD_STARTS].tolist() if WORD_STARTS in group else [None] * len(group)
        raw = [None if ws is None or len(ws) == 0 else list(ws) for ws in raw]
        t, s = redact_channel_timed(group["text"].tolist(), raw)
        texts += t
        starts += s
    return texts, starts


def read_shard(store: Store, uri: str) -> tuple[pd.DataFrame, ShardInfo]:
    df, meta = from_parquet(store.get_bytes(uri))
    return df, ShardInfo(**meta)


def load_shard(engine: Engine, uri: str, df: pd.DataFrame, info: ShardInfo) -> LoadResult:
    """Make the shard's recordings (those its run still owns) `done` with exactly its segments.

    Re-loading the same shard changes nothing: the rows already hold this run's transcript.
    """
    reasons = {f.recording_id: f.reason for f in info.failures}
    with engine.begin() as conn:
        conn.execute(db.q("load_lock_keys"), {"ids": [r.recording_id for r in info.recordings]}).all()
        owned = set(conn.execute(db.q("load_fence"), {
            "ids": [r.recording_id for r in info.recordings], "run_id": info.run_id}).scalars())
        ok = sorted(rid for rid in owned if rid not in reasons)
        segments = 0
        if ok:
            conn.execute(db.q("load_stage"))
            mine = df[df["recording_id"].isin(ok)].sort_values(["recording_id", "channel", "seq"])
            texts, starts = redacted(mine)
            rows = (
                (*row, pg_real_array(ws), red, conf)
                for row, ws, red, conf in zip(mine[SEGMENT_COLUMNS].itertuples(index=False, name=None), starts,
                                              texts, confidences(mine), strict=True))
            segments = db.copy_rows(conn, "stage_segments",
                                    [*SEGMENT_COLUMNS, WORD_STARTS, "text_redacted", CONFIDENCE], rows)
            conn.execute(db.q("load_replace"), {"ids": ok, "engine": info.engine, "run_id": info.run_id})
        failed = 0
        for rid, reason in reasons.items():
            if rid in owned:
                failed += conn.execute(db.q("load_failed"), {"id": rid, "reason": reason}).rowcount
        for b in info.batches:
            conn.execute(db.q("load_batches"), {
                "run_id": info.run_id, "job_id": info.job_id, "shard_uri": uri, "engine": info.engine,
                **b.model_dump(),
            })
    skipped = len(info.recordings) - len(owned)
    if skipped:
        log.info("%s: %d recordings left alone (owned by a newer run, or already loaded from this run)",
                 uri, skipped)
    return LoadResult(1, len(ok), segments, failed)


def _read_all(store: Store, uris: list[str], errors: list[str]) -> dict[str, tuple[pd.DataFrame, ShardInfo]]:
    """The shards that can be read; each that cannot (damaged, not a shard) goes into ``errors``."""
    out = {}
    for uri in uris:
        try:
            out[uri] = read_shard(store, uri)
        except Exception as exc:
            if unavailable(exc):
                raise
            log.error("shard %s not loaded: %s", uri, describe(exc))
            errors.append(f"{uri}: {describe(exc)}")
    return out


def _load_read(engine: Engine, shards: dict[str, tuple[pd.DataFrame, ShardInfo]], errors: list[str],
               n: int) -> LoadResult:
    total = LoadResult()
    for uri, (df, info) in shards.items():
        total += load_shard(engine, uri, df, info)
    log.info("loaded %d shards: %d recordings done, %d failed, %d segments",
             total.shards, total.recordings, total.failed, total.segments)
    if errors:
        raise LoadIncomplete(f"{len(errors)} of {n} shards not loaded; first: {errors[0]}")
    return total


def load_shards(store: Store, engine: Engine, shard_uris: list[str]) -> LoadResult:
    """Load each shard in its own transaction; every shard is tried, then any failure is raised.

    A shard that cannot be read (damaged, not a shard) is skipped so the others load; an
    outage of the store or the database fails the load at once, for the task to retry.
    """
    errors: list[str] = []
    return _load_read(engine, _read_all(store, shard_uris, errors), errors, len(shard_uris))


def load_jobs(store: Store, engine: Engine, job_uris: list[str], run_id: str) -> LoadResult:
    """Load the shard of every job of a run that has one; the others' recordings get the job's cause.

    A job without a shard leaves its recordings claimable (the task's retry, the next run)
    with the worker's own error as their reason.
    """
    jobs = [JobManifest.model_validate_json(store.get_bytes(uri)) for uri in job_uris]
    errors: list[str] = []
    shards = _read_all(store, [j.shard_uri for j in jobs if store.exists(j.shard_uri)], errors)
    unfinished: list[str] = []
    for job in jobs:
        got = shards.get(job.shard_uri)
        if got is not None and sorted(r.recording_id for r in got[1].recordings) == sorted(
                r.recording_id for r in job.recordings):
            continue
        if got is not None:
            # Left by an earlier plan of the same run (a cleared plan_jobs): not this job's result.
            del shards[job.shard_uri]
            cause = "its shard is from an earlier plan of this run"
        elif store.exists(failure_uri(job.shard_uri)):
            cause = JobFailure.model_validate_json(store.get_bytes(failure_uri(job.shard_uri))).error
        else:
            cause = "no shard (the worker was killed, timed out or never started)"
        reason = f"transcription job {job.job_id} did not finish: {cause}"
        log.error("run %s: %s", run_id, reason)
        with engine.begin() as conn:
            conn.execute(db.q("job_unfinished"), {"ids": [r.recording_id for r in job.recordings],
                                                  "run_id": run_id, "reason": reason[:2000]})
        unfinished.append(job.job_id)
    return _load_read(engine, shards, errors, len(jobs)) + LoadResult(unfinished_jobs=unfinished)
