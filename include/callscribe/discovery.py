"""Find a day's recordings in the bucket and register the ones not seen before."""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from minio.error import S3Error
from sqlalchemy.engine import Engine, Row

from callscribe import db
from callscribe.audio import AUDIO_EXTENSIONS
from callscribe.config import (
    CHUNKER_METADATA,
    agent_id,
    copy_window_days,
    diarize_mono,
    first_speaker,
    key_hash,
    run_area,
    speakers_hint,
)
from callscribe.storage import ObjectInfo, Store, make_uri, refuses_client, store_down

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
# How long a run's claim on a recording holds if the run dies without releasing it; as long
# as the DAG's run timeout, so a live run never loses its recordings to another.
CLAIM_LEASE_S = float(os.environ.get("CALLSCRIBE_CLAIM_LEASE_S", 12 * 3600))
# A listing that lacks more than this share of a prefix's recordings (and at least
# DELETE_GUARD_MIN of them) is not believed: a wrong bucket, prefix or credentials look the
# same as a mass deletion, and forgetting would drop a whole day's transcripts.
DELETE_GUARD_SHARE = float(os.environ.get("CALLSCRIBE_DELETE_GUARD_SHARE", 0.5))
DELETE_GUARD_MIN = 10


# A HEAD of one listed key answered so: that key's matter (gone since, or a per-key policy), not
# the store's; anything else fails the task, which reads the metadata again on its retry.
_KEY_GONE = frozenset({"NoSuchKey", "NotFound", "ResourceNotFound"})
# A 400 too (storage.REFUSED_CODES): a HEAD of an SSE-C object without its key; raised, it failed
# every discovery of the day.
_KEY_REFUSED = frozenset({"AccessDenied", "BadRequest", "Forbidden"})
# A refused read of a metadata fix is tried again after this long, doubled at each refusal in a row,
# up to METADATA_RETRY_MAX_S (or at once when the object changes again): not one HEAD a listing for
# ever, and a policy lifted without touching the object is still read within a week.
METADATA_RETRY_S = float(os.environ.get("CALLSCRIBE_METADATA_RETRY_S", 3600))
METADATA_RETRY_MAX_S = 7 * 24 * 3600.0
# How far the store's clock (LastModified) and the database's (a metadata read's mark) may disagree:
# a read marked less than this (and the second) after a fix's LastModified may have come before it.
STORE_CLOCK_SKEW_S = float(os.environ.get("CALLSCRIBE_STORE_CLOCK_SKEW_S", 60))


class DeletionRefused(RuntimeError):
    """Too much of a day vanished from one listing to take it as deletions."""


def day_prefix(base_prefix: str, day: date) -> str:
    """'calls/' + 2026-11-24 -> 'calls/2026/11/24/'."""
    base = base_prefix if not base_prefix or base_prefix.endswith("/") else base_prefix + "/"
    return f"{base}{day:%Y/%m/%d}/"


def key_days(key: str) -> list[date]:
    """The days a run could list ``key`` under, earliest folder first. The runs' prefix is a Param,
    so each date folder in the key can be a run's: the key is that day's when it starts with
    ``day_prefix(what comes before the folder, day)``, exactly what a run of that prefix lists. A
    prefix that holds a date folder itself (``site/2081/01/01/calls/``) gives a key two days."""
    days = []
    for found in _DATE_FOLDER.finditer(key):
        start = found.start(1)
        try:
            day = date(*map(int, found.group(1, 2, 3)))
        except ValueError:
            continue
        if key.startswith(day_prefix(key[:start], day)) and day not in days:
            days.append(day)
    return days


# A YYYY/MM/DD/ folder at a folder boundary with something under it (lookahead: folders may nest).
_DATE_FOLDER = re.compile(r"(?:^|/)(?=(\d{4})/(\d{2})/(\d{2})/.)")


def call_id_for(key: str) -> str:
    return posixpath.splitext(posixpath.basename(key))[0]


def listing_row(obj: ObjectInfo) -> tuple:
    """A row for the listing table: objects without an audio extension are quarantined at once."""
    ext = posixpath.splitext(obj.key)[1].lower()
    if ext in AUDIO_EXTENSIONS:
        status, error = "pending", None
    else:
        status, error = "quarantined", f"not a recording: extension {ext or '(none)'!r} is not audio"
    return (obj.bucket, obj.key, obj.etag, obj.size, call_id_for(obj.key), status, error, obj.last_modified)


def deletion_refused(vanished: int, live: int, share: float = DELETE_GUARD_SHARE) -> bool:
    """Whether ``vanished`` of ``live`` recordings gone at once is too many to believe."""
    return vanished >= DELETE_GUARD_MIN and vanished > share * live


@dataclass(frozen=True)
class Deletions:
    """How one listing's absences are taken: a recording under ``prefix`` that the listing
    lacks is deleted once ``gone(key)`` confirms it (the listing may be older than rows
    another run registered since)."""

    bucket: str
    prefix: str
    gone: Callable[[str], bool]
    guard_share: float = DELETE_GUARD_SHARE
    refuse: bool = True  # a listing that trips the guard raises; False: it is logged and skipped


def store_deletions(store: Store, prefix: str, **kw) -> Deletions:
    return Deletions(store.bucket, prefix, lambda key: not store.exists(store.uri(key)), **kw)


def register(engine: Engine, objects: list[ObjectInfo], day: date, run_id: str,
             deletions: Deletions | None = None, listed_at: datetime | None = None,
             freed: list[tuple[int, date]] | None = None, stale: list[Row] | None = None) -> int:
    """Insert objects not yet in ``recordings``; returns how many were new.

    With ``deletions``, the listing is complete for its prefix: recordings under it whose
    object is gone leave search (``deleted``), and deleted ones that are back are to be
    transcribed again. ``listed_at`` (the database's time when the listing began, db_now.sql)
    keeps a listing older than another run's registration from reading as a restore. ``freed``
    gathers the copies on other days that are calls to transcribe now (settle_copies); ``stale``
    the rows whose upload's metadata may have been fixed since it was read (refresh_metadata).
    """
    with engine.begin() as conn:
        conn.execute(db.q("discover_erasure_lock"))  # an erasure under way ends first
        conn.execute(db.q("discover_listing"))
        db.copy_rows(conn, "listing", ["bucket", "object_key", "etag", "size_bytes", "call_id", "status",
                                       "last_error", "last_modified"], (listing_row(o) for o in objects))
        conn.execute(db.q("discover_listing_index"))
        conn.execute(db.q("discover_copy_lock"))  # as does another day's settling of copies
        if deletions is not None:
            conn.execute(db.q("discover_reupload"), {"call_date": day})
        new = conn.execute(db.q("discover_register"), {"call_date": day, "run_id": run_id}).rowcount
        conn.execute(db.q("discover_supersede"), {"call_date": day})
        conn.execute(db.q("discover_restored"), {"call_date": day, "listed_at": listed_at})
        if deletions is not None:
            forget_vanished(conn, day, run_id, deletions)
            conn.execute(db.q("discover_revive"), {"call_date": day})
        (freed if freed is not None else []).extend(settle_copies(conn, day, run_id))
        (stale if stale is not None else []).extend(
            conn.execute(db.q("discover_metadata_stale"),
                         {"call_date": day, "skew_s": STORE_CLOCK_SKEW_S}).all())
        return new


def relabels(old: dict | None, new: dict | None, channels: int | None) -> bool:
    """Whether a fix of a transcribed call's metadata from ``old`` to ``new`` changes its speakers'
    names: on a mono call (diarized), who speaks first and how many voices to look for."""
    if channels != 1 or not diarize_mono():
        return False
    return (speakers_hint(old), first_speaker(old)) != (speakers_hint(new), first_speaker(new))


# Metadata reads of one discovery at once: a bulk fix of a day (every call re-tagged) is one HEAD a
# call, each mostly a round trip's wait.
METADATA_READERS = 8


def refresh_metadata(store: Store, engine: Engine, stale: list[Row], checked: datetime | None = None,
                     run_id: str | None = None) -> int:
    """Read again the metadata of uploads listed as modified since it was read, under the same
    content (a copy onto the key itself with new x-amz-meta-*: the etag is the bytes'), and give
    it to their calls. Returns how many changed. ``checked``: the database's time before the
    reads began (the listing's); ``run_id`` names the work folder of a probe. A key gone or
    re-uploaded since is the next listing's; one the store refuses keeps what it has, and is not
    read again until its back-off is over or it changes (:func:`_refused`)."""
    if not stale:
        return 0
    if checked is None:  # before the reads: a read is known to answer for what landed before it began
        with engine.connect() as conn:
            checked = conn.execute(db.q("db_now")).scalar_one()
    changed = 0
    with ThreadPoolExecutor(max_workers=min(METADATA_READERS, len(stale))) as pool:
        reads = list(zip(stale, pool.map(lambda r: _read_metadata(store, r), stale), strict=True))
    refusals = [(r, read) for r, read in reads if isinstance(read, S3Error)]
    # A HEAD's 403 reads as AccessDenied whatever its cause: one probe tells a refusal of this
    # client (credentials, a bucket-wide policy: the task fails and its retry reads them all) from
    # a policy on the keys, which alone holds their reads off.
    if refusals and refuses_client(store, refusals[0][1], f"{run_area(run_id or 'no-run')}probe-metadata.txt"):
        raise refusals[0][1]
    for r, read in reads:
        if isinstance(read, S3Error):
            _refused(engine, r, read.code)
        elif read is not None and _apply_metadata(engine, r, read, checked):
            changed += 1
    return changed


def _read_metadata(store: Store, r: Row) -> dict[str, str] | S3Error | None:
    """The upload's metadata now, if the key still holds the content ``r`` was registered with;
    the store's refusal of that key (a policy on it), or None when it is gone or changed."""
    try:
        etag, meta = store.stat(r.bucket, r.object_key)
    except S3Error as exc:
        if exc.code in _KEY_REFUSED:
            return exc
        if exc.code not in _KEY_GONE:
            raise
        log.warning("%s: metadata not read again (%s)", r.object_key, exc.code)
        return None
    return meta if etag == r.etag else None


def _refused(engine: Engine, r: Row, code: str) -> None:
    """Hold off the reads of a metadata fix the store refused (recording_metadata_refused.sql)."""
    with engine.begin() as conn:
        row = conn.execute(db.q("recording_metadata_refused"), {
            "id": r.id, "etag": r.etag, "modified": r.last_modified, "code": code,
            "base_s": METADATA_RETRY_S, "max_s": METADATA_RETRY_MAX_S}).one_or_none()
    if row is not None:
        log.warning("%s: its metadata fix is unread, the store refused the read (%s, %d time(s) in a row); "
                    "read again after %s or when the object changes", r.object_key, code, row.metadata_refusals,
                    f"{row.metadata_retry_at:%Y-%m-%d %H:%M %Z}")


def _apply_metadata(engine: Engine, r: Row, meta: dict[str, str], checked: datetime | None = None) -> bool:
    """Give a call the metadata read of its upload; whether it changed a transcribed call's."""
    with engine.begin() as conn:
        return apply_metadata(conn, r, meta, checked)


def apply_metadata(conn, r, meta: dict[str, str], checked: datetime | None = None) -> bool:
    """_apply_metadata in the caller's transaction; ``r``: the row's id and ``etag``, and the
    upload's ``last_modified`` the metadata answers for."""
    row = conn.execute(db.q("recording_metadata_lock"), {"id": r.id}).one_or_none()
    if row is None:
        return False
    old = row.metadata or {}
    # What the chunker adds of its own (a damaged file's note) is not the upload's to change.
    meta = {**meta, **{k: old[k] for k in CHUNKER_METADATA if k in old}}
    redo = row.status in ("done", "chunked") and relabels(old, meta, row.channels)
    conn.execute(db.q("recording_metadata"), {
        "id": r.id, "etag": r.etag, "modified": r.last_modified, "metadata": json.dumps(meta),
        "agent_id": agent_id(meta), "redo": redo, "checked": checked})
    if meta == old or row.status == "pending":  # a pending call's is read when it is chunked
        return False
    log.info("%s: metadata fixed since it was read%s", r.object_key,
             "; its speakers are named anew, so it is transcribed again" if redo else "")
    return True


def settle_copies(conn, day: date, run_id: str) -> list[tuple[int, date]]:
    """One call under several keys (of a day, or of days ``copy_window_days`` apart) is transcribed
    once: copies whose original left or failed for good go back to work, new copies are marked,
    a second transcript is retired. The caller holds the copies lock (discover_copy_lock.sql).
    Returns the copies that went back to work: (id, day), the day's own too (a copy under another
    prefix than the run's, which the day's claim does not reach)."""
    params = {"call_date": day, "run_id": run_id, "max_attempts": MAX_ATTEMPTS, "window": copy_window_days()}
    freed = [(r.id, r.call_date) for r in conn.execute(db.q("discover_copy_revive"), params)]
    for d, n in sorted(Counter(d for _, d in freed if d != day).items()):
        log.warning("%d copies on %s of recordings of %s are calls to transcribe now (their original left)",
                    n, d, day)
    conn.execute(db.q("discover_copy_mark"), params)
    conn.execute(db.q("discover_copy_retire"), params)
    return freed


def forget_vanished(conn, day: date, run_id: str, deletions: Deletions) -> list[int]:
    """Mark the prefix's recordings whose object is gone ``deleted`` and drop their transcripts."""
    rows = conn.execute(db.q("discover_vanished"), {"bucket": deletions.bucket, "call_date": day,
                                                    "prefix": deletions.prefix}).all()
    if not rows:
        return []
    if deletion_refused(len(rows), rows[0].live, deletions.guard_share):
        why = (f"{len(rows)} of the {rows[0].live} recordings of {day} under {deletions.bucket}/{deletions.prefix} "
               f"are not in the bucket listing; not taking that many as deleted (check the bucket, prefix and "
               f"credentials; after a real mass deletion, run the day with accept_mass_deletion)")
        if deletions.refuse:
            raise DeletionRefused(why)
        log.warning("%s", why)
        return []
    gone = [r for r in rows if deletions.gone(r.object_key)]
    if not gone:
        return []
    ids = [r.id for r in gone]
    conn.execute(db.q("discover_forget"), {"ids": ids, "run_id": run_id})
    log.warning("%d recordings of %s are gone from the bucket; their transcripts were removed: %s", len(ids), day,
                ", ".join(r.object_key for r in gone[:10]) + (" ..." if len(gone) > 10 else ""))
    return ids


def claim(engine: Engine, bucket: str, prefix: str, day: date, run_id: str, reprocess: bool = False,
          max_recordings: int | None = None, lease_s: float = CLAIM_LEASE_S, ids: list[int] | None = None,
          freed: list[tuple[int, date]] | None = None) -> list[int]:
    """Lease the recordings this run should process to its run id; returns their ids.

    Recordings another live run holds are left to it (and logged), so two runs of the same
    day, a daily run and an overlapping backfill say, never transcribe the same recording.
    A reprocess claim records those it left in the run's row (``held_back``): they keep the
    other run's transcript, and the run's verdict names them. ``ids``: only those (copies
    another day's discovery freed); ``freed`` as for :func:`register`.
    """
    params = {"bucket": bucket, "prefix": prefix, "call_date": day, "run_id": run_id}
    with engine.begin() as conn:
        conn.execute(db.q("discover_claim_lock"), {**params, "reprocess": reprocess})
        # Copies settled again under the lock, with what other days' claims committed since this
        # day was registered: a key of one call another day's run has just taken is left to it.
        conn.execute(db.q("discover_copy_lock"))
        (freed if freed is not None else []).extend(settle_copies(conn, day, run_id))
        rows = conn.execute(
            db.q("discover_claim"),
            {**params, "reprocess": reprocess, "max_attempts": MAX_ATTEMPTS,
             "max_recordings": max_recordings or None, "lease_s": lease_s, "ids": ids},
        ).all()
        held = conn.execute(db.q("discover_held"), params).scalar_one()
        claimed = sorted(r.id for r in rows)
        back = []
        if reprocess and not max_recordings:  # with a limit, the verdict answers only for what was claimed
            back = [{"id": h.id, "run_id": h.holder} for h in conn.execute(
                db.q("discover_held_back"), {**params, "max_attempts": MAX_ATTEMPTS, "claimed": claimed})]
        if reprocess:
            conn.execute(db.q("run_held_back"), {"run_id": run_id, "held_back": json.dumps(back)})
    if held:
        log.warning("%d unfinished recordings of %s are held by another live run; left to it", held, day)
    if back:
        log.warning("%d recordings of %s are held by other live runs (%s): this run cannot reprocess them, and "
                    "its verdict names them; reprocess the day again once those runs have ended", len(back), day,
                    ", ".join(sorted({b["run_id"] or "a run that had them locked" for b in back})))
    return claimed


def release(engine: Engine, run_id: str) -> int:
    """End a run's leases (its report task does this, whatever the run's outcome)."""
    with engine.begin() as conn:
        return conn.execute(db.q("claims_release"), {"run_id": run_id}).rowcount


def close_run(engine: Engine, run_id: str, store: Store | None = None) -> int:
    """What a run leaves unfinished gets its reason (or `failed` once out of attempts), and its
    leases end; returns how many leases it still held. With the ``store``, the refunds its
    chunk tasks left owed are paid first (``pay_refunds``)."""
    if store is not None:
        pay_refunds(store, engine, run_id)
        pay_unheard_jobs(store, engine, run_id)
    with engine.begin() as conn:
        conn.execute(db.q("report_unfinished"), {"run_id": run_id, "max_attempts": MAX_ATTEMPTS})
    retire_replaced(engine, run_id)
    return release(engine, run_id)


def retire_replaced(engine: Engine, run_id: str | None = None, day: date | None = None) -> int:
    """An upload that ended for good without a transcript (not audio, or out of attempts) still
    replaced the version before it in the bucket: that version's transcript leaves search, as on a
    deletion, instead of staying beside it for ever. For the uploads a run ended (``run_id``, at its
    report), or all of a day's (``day``, at each discovery of it). Returns how many were retired."""
    with engine.begin() as conn:
        ids = conn.execute(db.q("retire_find"), {"run_id": run_id, "call_date": day,
                                                  "max_attempts": MAX_ATTEMPTS}).scalars().all()
        if not ids:
            return 0
        conn.execute(db.q("load_lock_keys"), {"ids": list(ids)})  # as a load of those keys would
        n = conn.execute(db.q("retire_older"), {"ids": list(ids), "max_attempts": MAX_ATTEMPTS}).rowcount
    if n:
        log.warning("%s: %d transcripts of earlier versions removed; their keys now hold uploads that could not "
                    "be transcribed", f"run {run_id}" if run_id else day, n)
    return n


def release_dead(engine: Engine, day: date, run_id: str, is_live: Callable[[str], bool],
                 store: Store | None = None) -> list[str]:
    """Close the runs that are over but never reported (timed out, marked success or failed in the
    UI; leases expired or not), or that left recordings unfinished after their report (a task
    cleared without its downstream): what they left says why, or is `failed` once out of
    attempts, and is free to claim."""
    with engine.connect() as conn:
        holders = conn.execute(db.q("leases_held"), {"call_date": day, "run_id": run_id}).scalars().all()
    dead = [r for r in holders if not is_live(r)]
    for r in dead:
        log.warning("run %s is over and left recordings of %s unfinished or leased; closed", r, day)
        close_run(engine, r, store)
    return dead


def refund_uri(store: Store, run_id: str, recording_id: int, bucket: str | None = None) -> str:
    """Where a chunk task that could not give back a recording's attempt (the database down)
    leaves that refund owed (pipeline._refund): the work area of the store's bucket as that task
    saw it (``bucket``: another's, :func:`refund_buckets`)."""
    return make_uri(bucket or store.bucket, f"{_refunds_prefix(run_id)}{recording_id}.json")


def _refunds_prefix(run_id: str) -> str:
    return f"{run_area(run_id)}refunds/"


def refund_buckets(store: Store, listed: str | None) -> list[str]:
    """The buckets whose work areas may hold a run's refund notes: the one its discover listed
    (``listed``), where its chunk tasks wrote them until the S3 connection was switched to another
    bucket mid-run, then the store's own (those written since)."""
    return list(dict.fromkeys(b for b in (listed, store.bucket) if b))


def listed_bucket(engine: Engine, run_id: str) -> str | None:
    """The bucket the run's discover listed (pipeline_runs.source, reporting.run_source's
    'bucket/prefix'); None for a run that never listed."""
    with engine.connect() as conn:
        row = conn.execute(db.q("run_owner"), {"run_id": run_id}).one_or_none()
    return row.source.partition("/")[0] if row is not None and row.source else None


def _gone_elsewhere(store: Store, bucket: str, exc: Exception) -> bool:
    """Whether ``exc`` is the refusal of a bucket other than the store's own (the deployment moved
    to another store, the old bucket removed): its notes cannot be paid from here, and that must
    not keep the run from closing. An outage of it (:func:`storage.store_down`) raises as the store's
    own would."""
    if bucket == store.bucket or not isinstance(exc, S3Error) or store_down(exc):
        return False
    log.warning("refund notes in bucket %s cannot be read (%s): the attempts they owe stay spent", bucket, exc.code)
    return True


def write_refund_note(store: Store, run_id: str, recording_id: int, since: datetime | None) -> None:
    """Leave the refund of the try whose chunking mark is ``since`` owed."""
    body = {"chunking_since": since.isoformat() if since else None}
    store.put_bytes(refund_uri(store, run_id, recording_id), json.dumps(body).encode(), "application/json")


def pay_refund(store: Store, engine: Engine, run_id: str, recording_id: int,
               bucket: str | None = None) -> bool | None:
    """Pay a refund owed (``write_refund_note``) from ``bucket``'s work area (the store's when not
    given): None when none is; else whether it was, which it is only while the recording still has
    the mark of the try that wrote it (not a later try's, which may be a crash on the file). The
    note is removed either way."""
    uri = refund_uri(store, run_id, recording_id, bucket)
    try:
        if not store.exists(uri):  # an unreachable store raises: the task fails and is retried
            return None
    except Exception as exc:
        if _gone_elsewhere(store, bucket or store.bucket, exc):
            return None
        raise
    try:
        since = json.loads(store.get_bytes(uri)).get("chunking_since")
    except ValueError:  # not written whole: the mark it was for is unknown, so none is paid
        since, paid = None, False
    else:
        with engine.begin() as conn:
            paid = conn.execute(db.q("recording_attempt_refund"),
                                {"id": recording_id, "run_id": run_id, "since": since}).rowcount == 1
    store.delete(uri)
    return paid


def pay_refunds(store: Store, engine: Engine, run_id: str) -> int:
    """Pay every refund a run's chunk tasks left owed: at its close the retries that would have
    paid them are over (the database down for all of them, the run ended or marked failed),
    and the attempts were not the recordings' to spend. Returns how many were paid."""
    paid = 0
    for bucket in refund_buckets(store, listed_bucket(engine, run_id)):
        try:
            names = [posixpath.basename(o.key) for o in store.list(_refunds_prefix(run_id), bucket)]
        except Exception as exc:
            if _gone_elsewhere(store, bucket, exc):
                continue
            raise
        for name in names:
            if name.endswith(".json") and name[:-5].isdigit() and pay_refund(store, engine, run_id, int(name[:-5]),
                                                                             bucket):
                log.warning("run %s: recording %s's attempt given back (its chunk task failed on a database "
                            "outage and no retry gave it back)", run_id, name[:-5])
                paid += 1
    return paid


def pay_unheard_jobs(store: Store, engine: Engine, run_id: str) -> int:
    """What a run's load would have given back had it read the jobs (loading.load_jobs): the calls of
    each job of its last plan (job-00000's, which every plan rewrites) left with the deployment's note
    and no shard: no try of its task reached the store (credentials rotated after the chunk tasks, the
    load and the report refused too), its pod never ran, or the task never did. None of their speech
    was heard, so the attempt the run counted is not theirs to spend; given back once (job_unheard.sql).
    One listing when no job left a note. Returns how many jobs' calls were told."""
    from callscribe.manifests import JobFailure, JobManifest

    area = run_area(run_id)
    names = {posixpath.basename(o.key) for o in store.list(f"{area}shards/")}
    unheard = sorted(n.removesuffix(".failed.json") for n in names
                     if n.endswith(".failed.json") and n.replace(".failed.json", ".parquet") not in names)
    if not unheard:
        return 0
    try:
        latest = JobManifest.model_validate_json(store.get_bytes(store.uri(f"{area}jobs/job-00000.json"))).plan_id
    except S3Error as exc:
        if exc.code != "NoSuchKey":
            raise
        return 0  # no plan: nothing was heard or not
    except ValueError:
        return 0
    told = 0
    for job_id in unheard:
        uri = store.uri(f"{area}jobs/{job_id}.json")
        try:
            failure = JobFailure.model_validate_json(store.get_bytes(store.uri(f"{area}shards/{job_id}.failed.json")))
            job = JobManifest.model_validate_json(store.get_bytes(uri)) if failure.deployment else None
        except S3Error as exc:
            if exc.code != "NoSuchKey":
                raise
            continue  # deleted meanwhile (a sweep, a retry of the task): nothing to tell
        except ValueError:  # not a note or a manifest as this version writes them: the call's reason says
            continue
        if job is None or job.plan_id != latest:  # a job of an earlier plan: its calls are in the last one's
            continue
        with engine.begin() as conn:
            paid = conn.execute(db.q("job_unheard"), {
                "ids": [r.recording_id for r in job.recordings], "run_id": run_id,
                "reason": f"transcription job {job_id} did not finish: {failure.error}"[:2000]}).rowcount
        if not paid:  # its load gave the attempts back already
            continue
        log.warning("run %s: job %s was never heard (%s); its calls keep their attempt", run_id, job_id,
                    failure.error)
        told += 1
    return told


def run_days(day: date, lookback_days: int = 0) -> list[date]:
    """The days a run covers: its own, then the ``lookback_days`` before it (late uploads)."""
    if lookback_days < 0:
        raise ValueError("lookback_days must be 0 or more")
    return [day - timedelta(days=k) for k in range(lookback_days + 1)]


def note_uploads_under_way(store: Store, engine: Engine, run_id: str, prefix: str) -> None:
    """Just after the run listed ``prefix``: the multipart uploads still under way there, for its
    verdict (pipeline_runs.uploads_in_flight, read by reporting.uploads_in_flight). AWS S3 stamps the
    object such an upload makes with the time it began, so one begun before the run's listing time
    and finished after its listing would read as listed and lost. Read after the listing, not
    before it: an upload under way then was not in the listing, while one under way before it may
    have finished before the listing reached its key, and been listed (its loss must not be excused).
    Only the keys' SHA-256 are kept. A store that will not say adds nothing (the verdict excuses
    nothing for the prefix)."""
    found = store.uploads_in_flight(prefix)
    if found is None:
        return
    with engine.begin() as conn:
        conn.execute(db.q("run_uploads_in_flight"), {
            "run_id": run_id, "uploads": json.dumps([[key_hash(key), began.isoformat()] for key, began in found])})


def discover(store: Store, engine: Engine, day: date, base_prefix: str, run_id: str,
             reprocess: bool = False, max_recordings: int | None = None, lookback_days: int = 0,
             is_live: Callable[[str], bool] | None = None, accept_mass_deletion: bool = False) -> list[int]:
    """List and register the run's days, then claim what is left to do; returns the claimed ids.

    The run's own day comes first (``reprocess`` applies to it alone); the earlier days give
    files that landed in their folders after their own run, and failures with attempts left.
    A listing of the run's own day that lacks most of it fails the run (DeletionRefused)
    unless ``accept_mass_deletion``; on an earlier day it is only logged, so one odd day does
    not hold back the new calls.
    """
    ids: list[int] = []
    freed: list[tuple[int, date]] = []  # copies on other days back to work (their original left)
    for k, d in enumerate(run_days(day, lookback_days)):
        prefix = day_prefix(base_prefix, d)
        with engine.connect() as conn:
            listed_at = conn.execute(db.q("db_now")).scalar_one()
        objects = list(store.list(prefix))
        note_uploads_under_way(store, engine, run_id, prefix)
        deletions = store_deletions(store, prefix, refuse=k == 0,
                                    **({"guard_share": 1.0} if accept_mass_deletion and k == 0 else {}))
        stale: list[Row] = []
        new = register(engine, objects, d, run_id, deletions, listed_at, freed, stale)
        # Before the claim: a call to transcribe again is taken.
        refresh_metadata(store, engine, stale, listed_at, run_id)
        if is_live is not None and release_dead(engine, d, run_id, is_live, store):
            with engine.begin() as conn:  # what the dead runs held or gave up on, settled again
                conn.execute(db.q("discover_copy_lock"))
                freed.extend(settle_copies(conn, d, run_id))
        retire_replaced(engine, day=d)
        left = None if max_recordings is None else max_recordings - len(ids)
        if left is not None and left <= 0:
            break
        got = claim(engine, store.bucket, prefix, d, run_id, reprocess and k == 0, left, freed=freed)
        ids.extend(got)
        if k == 0 or got or new:
            log.info("%s: %d objects listed, %d new, %d to process", prefix, len(objects), new, len(got))
    # A later day's listing can free a copy (its original gone) on a day already claimed, or on a
    # day this run does not cover at all (a backfill of an old day frees a copy on a later one,
    # which no run's lookback_days reach any more), or under another prefix than the run's (one
    # call filed into two folders; copies are matched across the bucket): this run transcribes
    # them. Claimed by id, whatever their prefix: no run of that prefix may come again. Past
    # max_recordings too: freed, such a copy is untaken (no run's verdict answers for it), and no
    # later run of this prefix and these days may list it; the limit bounds the calls listed.
    by_day: dict[date, list[int]] = {}
    for rid, d in freed:
        if rid not in ids:
            by_day.setdefault(d, []).append(rid)
    for d, rids in sorted(by_day.items()):
        more = [i for i in claim(engine, store.bucket, "", d, run_id, False, None,
                                 ids=sorted(set(rids))) if i not in ids]
        log.warning("%d copies on %s freed by this run (their original left): %d taken by it", len(set(rids)), d,
                    len(more))
        ids.extend(more)
    return sorted(ids)


def groups(ids: list[int], size: int, max_groups: int | None = None) -> list[list[int]]:
    """Bounded groups of recording ids, one mapped chunk task each.

    Groups grow past ``size`` when that is what keeps their number within ``max_groups``
    (Airflow refuses to map over more than ``max_map_length`` items).
    """
    if size <= 0:
        raise ValueError("group size must be positive")
    if max_groups is not None:
        if max_groups <= 0:
            raise ValueError("max_groups must be positive")
        size = max(size, math.ceil(len(ids) / max_groups))
    return [ids[i : i + size] for i in range(0, len(ids), size)]
