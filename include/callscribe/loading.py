"""Load transcript shards into Postgres: COPY straight into the tables, one transaction a shard
(of 500 recordings at most: LOAD_RECORDINGS_PER_TRANSACTION).

Loads are fenced: a shard's rows go in only for recordings its run still owns, so a
cleared task of an old run, or a run whose lease expired while it was slow, cannot put an
older transcript over a newer one. Each shard is its own transaction, so one unreadable
shard or one dead job does not keep the rest of the day out of Postgres.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, Engine

from callscribe import db, partitions
from callscribe.config import load_parallel
from callscribe.erasure import erased_ids, scrub_late_files
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


def _channels(df: pd.DataFrame) -> Iterator[tuple[int, int]]:
    """Row ranges [lo, hi) of each recording's channel; rows sorted by recording, channel and seq."""
    rid = df["recording_id"].to_numpy(np.int64)
    ch = df["channel"].to_numpy(np.int64)
    starts = np.flatnonzero(np.r_[True, (rid[1:] != rid[:-1]) | (ch[1:] != ch[:-1])]) if len(df) else []
    bounds = [*map(int, starts), len(df)]
    return zip(bounds[:-1], bounds[1:], strict=True)


def _word_starts(df: pd.DataFrame) -> list[list[float] | None]:
    raw = df[WORD_STARTS].tolist() if WORD_STARTS in df else [None] * len(df)
    return [None if ws is None or len(ws) == 0 else list(ws) for ws in raw]


# How much of the next segment the pair vector holds: a phrase is found across a segment boundary
# when at most NEXT_WORDS of its words run into the next segment (any phrase of up to NEXT_WORDS + 1
# words). Not the whole next text: each word would be parsed and indexed twice; against 5 words,
# 3 cut a load's database time by about a fifth (docs/benchmarks.md, "Loading").
NEXT_WORDS = 3


def _first_words(text: str) -> str:
    """The text up to its NEXT_WORDS-th word; a token without a letter or digit ("-") is kept but
    not counted (the search vector has no word for it)."""
    tokens = text.split(maxsplit=NEXT_WORDS)[:NEXT_WORDS]
    if all(t[0].isalnum() or t[-1].isalnum() for t in tokens):  # the usual case
        return " ".join(tokens)
    kept, words = [], 0
    for token in text.split():
        kept.append(token)
        words += any(c.isalnum() for c in token)
        if words == NEXT_WORDS:
            break
    return " ".join(kept)


def _next_in_turn(texts: list[str], speakers: list[str]) -> list[str | None]:
    """A channel's redacted texts -> each one's next (its first NEXT_WORDS words), None for the
    last, and None where the next segment is another speaker's (a diarized mono channel): a phrase
    found across the two would mix what two people said."""
    return [_first_words(texts[i + 1]) if i + 1 < len(texts) and speakers[i + 1] == speakers[i] else None
            for i in range(len(texts))]


# segments' columns as the loader writes them (tsv_pair is generated from the redacted texts).
LOADED_COLUMNS = [*SEGMENT_COLUMNS, "call_date", "agent_id", WORD_STARTS, "text_redacted", "next_redacted",
                  CONFIDENCE]


TRANSCRIPT_COLUMNS = ["recording_id", "channel", "speaker", "text", "text_redacted", "n_segments", "engine"]


@dataclass(frozen=True)
class Call:
    """A fenced recording as the loader writes it: its day and agent go on every segment."""

    call_date: date
    agent_id: str | None
    channels: int | None


@dataclass
class LoadExtras:
    """What segment_rows gathers beside the segment rows, for the same transaction: a transcript
    row per channel with segments (TRANSCRIPT_COLUMNS but the engine), and the whitespace-separated
    tokens of the redacted texts (the lexicon's words are made from them in SQL)."""

    transcripts: list[tuple] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)


def segment_rows(df: pd.DataFrame, calls: dict[int, Call], extras: LoadExtras) -> Iterator[tuple]:
    """The COPY rows of LOADED_COLUMNS for a shard's rows (each channel's together, in seq order),
    made a channel at a time as COPY asks for them: the database indexes one part while the next
    is redacted, and the client's other work on the shard (transcripts, tokens) is done here, beside
    it. A diarized mono channel, holding several speakers, is 'mixed'."""
    base = list(df[SEGMENT_COLUMNS].itertuples(index=False, name=None))
    texts, starts, speakers, conf = df["text"].tolist(), _word_starts(df), df["speaker"].tolist(), confidences(df)
    for lo, hi in _channels(df):
        red, times = redact_channel_timed(texts[lo:hi], starts[lo:hi])
        rid, channel = base[lo][0], base[lo][1]
        call = calls[rid]
        day_agent = (call.call_date, call.agent_id)
        for i, (row, ws, text, nxt) in enumerate(zip(base[lo:hi], times, red, _next_in_turn(red, speakers[lo:hi]),
                                                     strict=True)):
            yield (*row, *day_agent, pg_real_array(ws), text, nxt, conf[lo + i])
        voices = set(speakers[lo:hi])
        whole = " ".join(red)
        extras.tokens.update(whole.split())
        extras.transcripts.append((rid, channel, voices.pop() if len(voices) == 1 else "mixed",
                                   " ".join(texts[lo:hi]), whole, hi - lo))


def transcript_rows(calls: dict[int, Call], spoken: list[tuple], engine: str) -> list[tuple]:
    """The transcript rows (TRANSCRIPT_COLUMNS) of the loaded calls: one per channel the recording
    has, its text where the channel has segments, empty where nobody spoke. Segments on a
    channel beyond the recording's count (not from its own decode) are loaded, but get no
    transcript row of their own: the audit counts a call's transcripts against its channels."""
    have = {(t[0], t[1]): t for t in spoken}
    return [(*(have.get((rid, ch)) or (rid, ch, "mixed" if call.channels == 1 else f"channel{ch}", "", "", 0)), engine)
            for rid, call in sorted(calls.items()) for ch in range(max(call.channels or 1, 1))]


def _by_month(conn: Connection, mine: pd.DataFrame, calls: dict[int, Call]) -> Iterator[tuple[str, pd.DataFrame]]:
    """A shard's rows per month of their calls, with the table each month's go into: its partition,
    straight (COPY into the partitioned table inserts one row at a time and copies every row for
    segments' per-statement recording check; the fence has already checked and locked these
    recordings, more strongly), or ``segments`` where the month has no attached partition."""
    month = mine["recording_id"].map({rid: call.call_date.replace(day=1) for rid, call in calls.items()})
    for first_day, part in mine.groupby(month, sort=True):
        table = partitions.month_table(first_day)
        yield (table if partitions.attached(conn, table) else "segments"), part


def load_order(df: pd.DataFrame, calls: dict[int, Call]) -> pd.DataFrame:
    """The rows of ``calls``' recordings in the order they are written: by agent, recording, channel
    and seq, so one agent's segments sit together and the agent's BRIN index stays selective."""
    mine = df[df["recording_id"].isin(list(calls))]
    agent = mine["recording_id"].map({rid: call.agent_id or "" for rid, call in calls.items()})
    return (mine.assign(_agent=agent).sort_values(["_agent", "recording_id", "channel", "seq"], kind="stable")
            .drop(columns="_agent"))


METRIC_COLUMNS = ["recording_id", "talk_time_s", "talk_sum_s", "talk_union_s", "overlap_s", "longest_monologue_s",
                  "longest_monologue_speaker", "segments"]


def _union_s(keys: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seconds covered by the union of each group's intervals; rows sorted by (key, start)."""
    first = np.r_[True, keys[1:] != keys[:-1]]
    group = np.cumsum(first) - 1
    # Running max of the ends within each group: offset each group above the previous ones so one
    # cumulative max over the whole array never carries across groups.
    span = float(end.max() - min(start.min(), 0.0)) + 1.0
    reach = np.maximum.accumulate(end + group * span) - group * span
    before = np.r_[-np.inf, reach[:-1]]
    before[first] = -np.inf
    covered = np.clip(end - np.maximum(start, before), 0.0, None)
    return keys[first], np.bincount(group, weights=covered)


def call_metrics(df: pd.DataFrame) -> list[tuple]:
    """Per recording of the loaded rows: talk time per speaker (the union of their segments), the
    speakers' sum and everyone's union (silence and overlap come from them), the longest run of one
    speaker's consecutive segments in time order, and the segment count; the rows of call_metrics.
    Numpy over the whole shard: the same figures in SQL (range_agg) took about 3 s per 200,000
    segments; 0012's backfill computes them that way."""
    if df.empty:
        return []
    rid = df["recording_id"].to_numpy(np.int64)
    start = df["start_s"].to_numpy(np.float64).round(4)
    end = df["end_s"].to_numpy(np.float64).round(4)
    speakers, spk = np.unique(df["speaker"].to_numpy(str), return_inverse=True)
    # Per (recording, speaker), then per recording.
    order = np.lexsort((start, spk, rid))
    pair = rid[order] * len(speakers) + spk[order]
    pairs, talk = _union_s(pair, start[order], end[order])
    order = np.lexsort((start, rid))
    calls, union = _union_s(rid[order], start[order], end[order])
    # Turns: consecutive segments of one speaker in time order (ties as load_replace.sql orders them).
    order = np.lexsort((df["seq"].to_numpy(), df["channel"].to_numpy(), start, rid))
    r, s_, e, k = rid[order], start[order], end[order], spk[order]
    new_turn = np.r_[True, (r[1:] != r[:-1]) | (k[1:] != k[:-1])]
    turn_len = np.maximum.reduceat(e, np.flatnonzero(new_turn)) - s_[new_turn]
    turn_rid, turn_spk = r[new_turn], k[new_turn]
    out = []
    talk_by_call: dict[int, dict[str, float]] = {}
    for key, seconds in zip(pairs.tolist(), talk.tolist(), strict=True):
        talk_by_call.setdefault(key // len(speakers), {})[str(speakers[key % len(speakers)])] = seconds
    counts = dict(zip(*np.unique(rid, return_counts=True), strict=True))
    bounds = np.flatnonzero(np.r_[True, turn_rid[1:] != turn_rid[:-1]])
    longest = {}
    for i, lo in enumerate(bounds):
        hi = bounds[i + 1] if i + 1 < len(bounds) else len(turn_rid)
        j = lo + int(np.argmax(turn_len[lo:hi]))  # the first of equally long turns
        longest[int(turn_rid[j])] = (round(float(turn_len[j]), 2), str(speakers[turn_spk[j]]))
    for call, whole in zip(calls.tolist(), union.tolist(), strict=True):
        per = talk_by_call[call]
        total = sum(per.values())
        out.append((call, json.dumps({k: round(v, 2) for k, v in per.items()}), round(total, 4), round(whole, 4),
                    round(total - whole, 2), *longest[call], int(counts[call])))
    return out


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
        fenced = {row.id: Call(row.call_date, row.agent_id, row.channels)
                  for row in conn.execute(db.q("load_fence"), {
                      "ids": [r.recording_id for r in info.recordings], "run_id": info.run_id})}
        calls = {rid: call for rid, call in fenced.items() if rid not in reasons}
        ok = sorted(calls)
        segments = 0
        if ok:
            conn.execute(db.q("load_clear"), {"ids": ok})
            mine = load_order(df, calls)
            # Straight into the month's partition, streamed: no staging copy of the rows, and the
            # server's work on them (search vector, indexes) runs beside the redaction of the next.
            extras = LoadExtras()
            for table, part in _by_month(conn, mine, calls):
                segments += db.copy_rows(conn, table, LOADED_COLUMNS, segment_rows(part, calls, extras))
            db.copy_rows(conn, "transcripts", TRANSCRIPT_COLUMNS,
                         transcript_rows(calls, extras.transcripts, info.engine))
            conn.execute(db.q("load_words"), {"tokens": sorted(extras.tokens)})
            db.copy_rows(conn, "call_metrics", METRIC_COLUMNS, call_metrics(mine))
            conn.execute(db.q("load_replace"), {"ids": ok, "run_id": info.run_id})
        failed = 0
        for rid, reason in reasons.items():
            if rid in fenced:
                failed += conn.execute(db.q("load_failed"), {"id": rid, "reason": reason}).rowcount
        for b in info.batches:
            conn.execute(db.q("load_batches"), {
                "run_id": info.run_id, "job_id": info.job_id, "shard_uri": uri, "engine": info.engine,
                **b.model_dump(),
            })
    skipped = len(info.recordings) - len(fenced)
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


# A shard's recordings go in transactions of at most this many. Each transaction locks every object
# key it loads (load_lock_keys.sql), and Postgres keeps all sessions' locks in one shared table of
# max_locks_per_transaction (64) x max_connections entries: a GPU job's shard of thousands of calls
# overflowed it ("out of shared memory", for every session), an error that reads as an outage, so
# every retry and every later run failed the same way. Each recording is still replaced in one
# transaction, and loading a part again changes nothing (the fence).
LOAD_RECORDINGS_PER_TRANSACTION = 500


def shard_parts(df: pd.DataFrame, info: ShardInfo,
                size: int = LOAD_RECORDINGS_PER_TRANSACTION) -> Iterator[tuple[pd.DataFrame, ShardInfo]]:
    """A shard as parts of at most ``size`` recordings, each with its rows and failures (the batch
    figures with the first): what one transaction loads."""
    if len(info.recordings) <= size:
        yield df, info
        return
    for at in range(0, len(info.recordings), size):
        part = info.recordings[at:at + size]
        ids = {r.recording_id for r in part}
        yield df[df["recording_id"].isin(ids)], info.model_copy(update={
            "recordings": part, "failures": [f for f in info.failures if f.recording_id in ids],
            "batches": info.batches if at == 0 else []})


def _load_read(engine: Engine, shards: dict[str, tuple[pd.DataFrame, ShardInfo]], errors: list[str],
               n: int) -> LoadResult:
    """Load the read shards, ``config.load_parallel()`` transactions at a time; the first exception
    (an outage) is raised once the loads under way have ended, and no new one starts after it."""
    total = LoadResult()
    partitions.ensure_for_recordings(engine, [r.recording_id for _, info in shards.values() for r in info.recordings])
    with ThreadPoolExecutor(max_workers=max(1, min(load_parallel(), len(shards)))) as pool:
        futures = [pool.submit(load_shard, engine, uri, part, part_info) for uri, (df, info) in shards.items()
                   for part, part_info in shard_parts(df, info)]
        try:
            for future in as_completed(futures):
                total += future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    total = replace(total, shards=len(shards))  # a shard loaded in parts is one shard
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
    shards = _scrub_erased(store, engine, _read_all(store, shard_uris, errors))
    return _load_read(engine, shards, errors, len(shard_uris))


def _scrub_erased(store: Store, engine: Engine,
                  shards: dict[str, tuple[pd.DataFrame, ShardInfo]]) -> dict[str, tuple[pd.DataFrame, ShardInfo]]:
    """A shard written after an erasure of one of its calls loses that call's rows, here and in the
    store: the fence keeps them out of Postgres, but the shard would hold its text until the sweep,
    and it would no longer match its job manifest (which the erasure scrubbed)."""
    named = {uri: [r.recording_id for r in info.recordings] + [f.recording_id for f in info.failures]
             for uri, (_, info) in shards.items()}
    for uri in scrub_late_files(store, engine, named):
        shards[uri] = read_shard(store, uri)
    return shards


def load_jobs(store: Store, engine: Engine, job_uris: list[str], run_id: str) -> LoadResult:
    """Load the shard of every job of a run that has one; the others' recordings get the job's cause.

    A job without a shard leaves its recordings claimable (the task's retry, the next run)
    with the worker's own error as their reason.
    """
    errors: list[str] = []
    jobs: list[JobManifest] = []
    for uri in job_uris:
        try:
            jobs.append(JobManifest.model_validate_json(store.get_bytes(uri)))
        except Exception as exc:
            if unavailable(exc):
                raise
            # Its recordings stay unfinished (the report says so, the next run takes them); the
            # other jobs' shards load all the same.
            log.error("job manifest %s unreadable: %s", uri, describe(exc))
            errors.append(f"job manifest {uri} unreadable: {describe(exc)}")
    shards = _scrub_erased(store, engine, _read_all(store, [j.shard_uri for j in jobs if store.exists(j.shard_uri)],
                                                    errors))
    # Asked after the scrub: a call erased while this load ran (after it read its job manifest) is
    # out of the scrubbed shard but still in the manifest read here; the job's other calls match.
    erased = erased_ids(engine, {r.recording_id for j in jobs for r in j.recordings})
    unfinished: list[str] = []
    for job in jobs:
        deployment = False  # the deployment's fault, not the recordings': their attempt is given back
        got = shards.get(job.shard_uri)
        # A worker copies the job's plan id into its shard; a job planned before plan ids (a run in
        # flight across the upgrade) has none, and neither has its shard.
        if got is not None and got[1].plan_id == job.plan_id and sorted(
                {r.recording_id for r in got[1].recordings} - erased) == sorted(
                {r.recording_id for r in job.recordings} - erased):
            continue
        if got is not None:
            del shards[job.shard_uri]
            if got[1].plan_id is None:
                # A worker image older than plan ids (the pods pinned to an older tag) ignores every
                # field of the job it does not know, the plan id among them: its shard cannot show that
                # it read this job as planned (an image from before 8 kHz packs reads them as 16 kHz),
                # and a shard such an image left for an earlier plan looks the same.
                cause = (f"its shard has no plan id (the job's is {job.plan_id}): the worker image is older "
                         "than callscribe on the Airflow side; upgrade the worker image "
                         "(CALLSCRIBE_WORKER_IMAGE) and clear the transcribe task")
                deployment = True
            else:
                # Left by an earlier plan of the same run id (a cleared plan_jobs, a cleared run, the
                # day run again), even of the same recordings: not this job's result.
                cause = "its shard is from an earlier plan of this run"
        elif store.exists(failure_uri(job.shard_uri)):
            note = JobFailure.model_validate_json(store.get_bytes(failure_uri(job.shard_uri)))
            cause, deployment = note.error, note.deployment
        else:
            cause = "no shard (the worker was killed, timed out or never started)"
        reason = f"transcription job {job.job_id} did not finish: {cause}"
        log.error("run %s: %s", run_id, reason)
        with engine.begin() as conn:
            conn.execute(db.q("job_unfinished"), {"ids": [r.recording_id for r in job.recordings],
                                                  "run_id": run_id, "reason": reason[:2000],
                                                  "deployment": deployment})
        unfinished.append(job.job_id)
    return _load_read(engine, shards, errors, len(job_uris)) + LoadResult(unfinished_jobs=unfinished)
