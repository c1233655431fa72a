"""Erasure on request: one recording's transcript and every trace of it the pipeline made.

``erase`` removes, for every version of one object key: the rows (recording, transcripts,
segments with their word times), the access log's entries about it, its speech packs, and
its rows inside the runs' shards and job manifests in the work area. The object is then
known only by a hash of its key in ``erasures``, so discovery does not transcribe the same
upload again; the erasure itself is written to the access log, by that hash.

Each erasure also leaves a note in the bucket (``_callscribe_erasures/``, the key's hash and day):
a database restored to a point before the erasure has lost its ``erasures`` row (and may hold the
call's transcript again), while the bucket keeps the note. Each discovery of a day re-applies the
day's notes the database lacks before it registers anything (``reapply``); ``callscribe erase
--reapply`` re-applies every note, the runbook's step after a restore.

The audio in the bucket is the customer's: it is deleted only when asked (``delete_audio``).
Airflow's own task logs may name the key; they age out with Airflow's log retention.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy.engine import Connection, Engine

from callscribe import db
from callscribe.config import DEFAULT_RETENTION_DAYS, ERASURE_NOTES_PREFIX, copy_window_days, key_hash, run_area
from callscribe.discovery import key_days
from callscribe.manifests import from_parquet, to_parquet
from callscribe.pipeline import pack_keys
from callscribe.storage import Store, make_uri

log = logging.getLogger(__name__)
# A run covers its own day and up to this many days before it (the lookback Param's maximum):
# the runs that can have touched a recording of day D are those of D .. D + this.
MAX_LOOKBACK_DAYS = 31


class NothingToErase(LookupError):
    """No recording has that key (nor was one erased under it)."""


class ErasureBusy(RuntimeError):
    """A live run holds the recording: erasing now would race its load."""


class NoteUnwritten(RuntimeError):
    """The erasure is committed in the database, but the store refused its note (and so its clean-up
    did not run): the same erase, run again, writes the note and finishes the clean-up."""


class CleanupUnfinished(RuntimeError):
    """The erasure is committed in the database (and noted), but the store stopped the clean-up of the
    work area or the audio (a refused delete: an Object Lock retention, a missing permission; an
    outage): the same erase, run again, finishes what is left."""


@dataclass
class Erasure:
    bucket: str
    key: str
    recording_ids: list[int] = field(default_factory=list)
    segments: int = 0
    access_entries: int = 0
    packs: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)  # shards and job manifests that held its rows
    audio_deleted: bool = False
    dry_run: bool = False
    finished_earlier: bool = False  # the key had been erased before: this run finished or repeated it
    copies: list[str] = field(default_factory=list)  # other keys of its day with the same audio, left in place

    def summary(self, name: str | None = None, name_copies: bool = True) -> str:
        """One line of what was (or would be) removed; ``name_copies=False`` counts the copies' keys
        instead of naming them (for logs, which outlive an erasure of those keys)."""
        copies = ", ".join(self.copies) if name_copies else f"{len(self.copies)} other key(s)"
        verb = "would erase" if self.dry_run else "erased"
        return (f"{verb} {len(self.recording_ids)} version(s) of {name or self.bucket + '/' + self.key}: "
                f"{self.segments} segments, "
                f"{self.access_entries} access log entries, {len(self.packs)} speech packs, "
                f"{len(self.rewritten)} work-area files rewritten; audio in the bucket "
                f"{'deleted' if self.audio_deleted else 'kept'}"
                + (f"; the same audio is also under {copies} (not erased, and transcribed as calls of their "
                   f"own by the next run: erase those keys too if they are the same call)" if self.copies else ""))


def _versions(conn: Connection, bucket: str, key: str) -> list:
    return conn.execute(db.q("erase_versions"), {"bucket": bucket, "key": key}).all()


def _note_days(key: str, day: date | None) -> list[date | None]:
    """The days to file the erasure's note under: the registered day first, and every day a run could
    list the key under (the runs' prefix is theirs to choose: a prefix holding a date folder of its
    own gives two), else undated (read by every discovery)."""
    days = [day] if day is not None else []
    # Registered too: a run of another prefix lists the key under its other date folder.
    return days + [d for d in key_days(key) if d not in days] or [None]


# At most this many objects of the erased call's size are read to compare their bytes: a folder of
# fixed-length recordings would otherwise be read whole.
MAX_COPY_READS = 200


def _copies_in_bucket(store: Store, bucket: str, key: str, day: date | None, rows: list) -> list[str]:
    """Other keys in the erased key's day folder (its folder when the day is unknown) holding the
    content of its registered versions or of what the bucket holds under it now: copies no run
    has registered yet are named too. An object of the same size under another etag (uploaded in
    parts, encrypted with SSE-KMS) is read and its bytes compared."""
    marker = f"/{day:%Y/%m/%d}/" if day else None
    folder = key[: key.index(marker) + len(marker)] if marker and marker in key else posixpath.dirname(key) + "/"
    listed = list(store.list(folder, bucket=bucket))
    here = [o for o in listed if o.key == key]
    wanted = {(r.etag, r.size_bytes) for r in rows} | {(o.etag, o.size) for o in here}
    found = [o.key for o in listed if o.key != key and o.size and (o.etag, o.size) in wanted]
    hashes = {bytes(r.content_sha256) for r in rows if r.content_sha256}
    if here and (here[0].etag, here[0].size) not in {(r.etag, r.size_bytes) for r in rows}:
        hashes.add(hashlib.sha256(store.get_bytes(make_uri(bucket, key))).digest())  # unregistered
    sizes = {size for _, size in wanted}
    others = [o for o in listed if o.key != key and o.size and o.size in sizes and o.key not in found]
    if len(others) > MAX_COPY_READS:
        log.warning("%d objects in the call's folder have its size; the bytes of the first %d are compared",
                    len(others), MAX_COPY_READS)
    for o in others[:MAX_COPY_READS] if hashes else []:
        try:
            data = store.get_bytes(make_uri(bucket, o.key))
        except Exception as exc:  # noqa: BLE001 - a hint of the erasure's, not a step of it
            # No key named: the erasure's log keeps the call's folder out of it too.
            log.warning("an object of the erased call's size could not be read to compare it (%s)",
                        type(exc).__name__)
            continue
        if hashlib.sha256(data).digest() in hashes:
            found.append(o.key)
    return found


def _run_ids(conn: Connection, rows: list, day: date | None) -> set[str]:
    """The runs that can hold the recording's rows in their work area."""
    found = {r.last_run_id for r in rows if r.last_run_id}
    if day is not None:
        found |= set(conn.execute(db.q("erase_runs"), {"first": day,
                                                       "last": day + timedelta(days=MAX_LOOKBACK_DAYS)}).scalars())
    return found


def scrub_file(data: bytes, name: str, ids: set[int]) -> bytes | None:
    """The file without the recordings ``ids``: new bytes, or None when it holds none of them."""
    if name.endswith(".parquet"):
        df, meta = from_parquet(data)
        in_rows = "recording_id" in df.columns and df["recording_id"].isin(ids).any()
        if not in_rows and not any(e.get("recording_id") in ids for e in meta.get("recordings", [])):
            return None
        df = df[~df["recording_id"].isin(ids)] if "recording_id" in df.columns else df
        for part in ("recordings", "failures"):
            if part in meta:
                meta[part] = [e for e in meta[part] if e.get("recording_id") not in ids]
        return to_parquet(df.reset_index(drop=True), meta)
    if name.endswith(".json") and not name.endswith(".failed.json"):
        body = json.loads(data)
        if not isinstance(body, dict):
            return None
        parts = [p for p in ("chunks", "recordings") if isinstance(body.get(p), list)]
        if not any(e.get("recording_id") in ids for p in parts for e in body[p]):
            return None
        for p in parts:
            body[p] = [e for e in body[p] if e.get("recording_id") not in ids]
        return json.dumps(body).encode()
    return None


def _scrub_work_area(store: Store, run_ids: set[str], ids: set[int], dry_run: bool) -> list[str]:
    rewritten = []
    for run_id in sorted(run_ids):
        # Every version, not the current objects alone: on a versioned bucket a file the sweep
        # deleted, or one a retried task overwrote, keeps its old bytes in an older version.
        by_key: dict[str, list] = {}
        for v in store.versions(run_area(run_id)):
            if v.key.endswith((".parquet", ".json")):
                by_key.setdefault(v.key, []).append(v)
        for key, versions in sorted(by_key.items()):
            uri = store.uri(key)
            held = [(v, clean) for v in versions
                    if (clean := scrub_file(store.get_bytes(uri, v.version_id), key, ids)) is not None]
            if not held:
                continue
            rewritten.append(uri)
            if dry_run:
                continue
            latest = [clean for v, clean in held if v.latest]
            if latest:
                store.put_bytes(uri, latest[0], "application/json" if key.endswith(".json")
                                else "application/octet-stream")
                store.purge(uri, keep_latest=True)  # a versioned bucket keeps the old text otherwise
            else:
                for v, _ in held:
                    store.delete_version(uri, v.version_id)
    return rewritten


def erased_ids(engine: Engine, ids: set[int]) -> set[int]:
    """Which of the recordings ``ids`` were erased (their rows are gone; ``erasures`` keeps the ids)."""
    if not ids:
        return set()
    with engine.connect() as conn:
        return set(conn.execute(db.q("erase_erased_ids"), {"ids": sorted(ids)}).scalars())


def scrub_late_files(store: Store, engine: Engine, files: dict[str, list[int]]) -> list[str]:
    """Take erased recordings out of work files written after their erasure scrubbed the run's
    folder: a task that held no lease (cleared after its run reported) is not waited for, and its
    worker may write a shard with the call's text afterwards. ``files``: URI -> the recording ids
    it names. Returns the files rewritten."""
    erased = erased_ids(engine, {i for ids in files.values() for i in ids})
    out = []
    for uri, ids in sorted(files.items()):
        if not erased.intersection(ids):
            continue
        clean = scrub_file(store.get_bytes(uri), uri, erased)
        if clean is not None:
            store.put_bytes(uri, clean)
            store.purge(uri, keep_latest=True)
            out.append(uri)
    if out:
        log.warning("rows of erased recordings taken out of %d work files written after their erasure", len(out))
    return out


def erase(store: Store, engine: Engine, key: str, actor: str, bucket: str | None = None,
          delete_audio: bool = False, dry_run: bool = False, force: bool = False, noted: bool = False) -> Erasure:
    """Erase every version of ``key`` (see the module's description); returns what was removed.

    The rows go first, in one transaction, with the key's hash and the recording ids written
    to ``erasures``: the call leaves search at once and no run loads or registers it again.
    The work area is cleaned after; an erasure cut short there is finished by running it again.
    A key that was never registered (uploaded, not yet discovered) is blocked all the same.
    ``noted``: the erasure's note is in the bucket already (``reapply``), not written again.
    """
    bucket = bucket or store.bucket
    digest = key_hash(key)
    audio = make_uri(bucket, key)
    out = Erasure(bucket=bucket, key=key, dry_run=dry_run)
    with engine.begin() as conn:
        conn.execute(db.q("erase_lock"))  # no registration under way: it would add a version unseen
        conn.execute(db.q("discover_copy_lock"))  # nor a claim marking a copy of what this erases
        rows = _versions(conn, bucket, key)  # locked until the erasure commits
        prior = conn.execute(db.q("erase_prior"), {"bucket": bucket, "hash": digest}).one_or_none()
        if not rows and prior is None and not store.exists(audio):
            raise NothingToErase(f"no recording and no object has the key {bucket}/{key}")
        busy = [r for r in rows if r.leased]
        if busy and not force:
            raise ErasureBusy(f"run {busy[0].last_run_id} holds {key}: erase it after that run ends (or with "
                              f"--force once the UI shows that run is over)")
        day = min((r.call_date for r in rows), default=prior.call_date if prior else None)
        run_ids = _run_ids(conn, rows, day)
        out.recording_ids = sorted({r.id for r in rows} | set(prior.recording_ids if prior else []))
        out.segments = sum(r.segments for r in rows)
        out.access_entries = conn.execute(db.q("erase_access_count"),
                                          {"ids": out.recording_ids, "hash": digest}).scalar_one()
        out.finished_earlier = prior is not None
        registered_copies = set(conn.execute(db.q("erase_copies"), {"ids": [r.id for r in rows],
                                                                     "window": copy_window_days()}).scalars())
        if not dry_run:
            conn.execute(db.q("erase_copies_orphan"), {"ids": [r.id for r in rows]})
            conn.execute(db.q("erase_apply"), {
                "ids": [r.id for r in rows], "all_ids": out.recording_ids, "bucket": bucket, "hash": digest,
                "call_date": day, "actor": actor,
                "detail": f"{len(rows)} version(s), {out.segments} segments"
                          + ("; finishing an earlier erasure" if prior is not None else ""),
            })
    if not dry_run and not noted:
        # Before the clean-up of the work area: an erasure cut short there still outlives a restore.
        try:
            for note_day in _note_days(key, day):
                write_note(store, bucket, digest, note_day)
        except Exception as exc:
            # The database has committed: a bare store error would read as "nothing was erased",
            # and the operator would not know the note, which alone outlives a restore, is missing.
            raise NoteUnwritten(
                f"{bucket}/{key} is erased in the database (out of search; no run registers it again), but "
                f"the store refused its note {note_key(bucket, digest, note_day)} ({type(exc).__name__}: {exc}), "
                f"so a database restore would undo this erasure, and its speech packs and work files are not "
                f"cleaned yet: run the same erase again once the store answers") from exc
    step = "listing the copies in the bucket"
    try:
        # Listed after the transaction: discoveries wait on the erasure's lock, not on a day's listing.
        # The earliest date folder when unregistered: its folder holds the later ones' too.
        out.copies = sorted(registered_copies
                            | set(_copies_in_bucket(store, bucket, key, _note_days(key, day)[0], rows)))
        ids = set(out.recording_ids)
        step = "the runs' work files"
        out.rewritten = _scrub_work_area(store, run_ids, ids, dry_run)
        packs = [store.uri(k) for i in sorted(ids) for k in pack_keys(day, i)] if day else []
        out.packs = [u for u in packs if store.exists(u)]
        out.audio_deleted = delete_audio and store.exists(audio)
        if not dry_run:
            for uri in packs:
                step = f"the speech pack {uri}"  # a work-area key: the call's key is not in it
                store.purge(uri)
            if delete_audio:
                step = "the call's audio"
                store.purge(audio)
    except Exception as exc:
        if dry_run:
            raise
        # The database has committed and the note is written: a bare store error would read as
        # "nothing was erased". The message names no call key (it reaches the task's log on reapply).
        raise CleanupUnfinished(
            f"the erasure is committed in the database (out of search; no run registers it again) and noted, "
            f"but the object store stopped its clean-up at {step} ({type(exc).__name__}: "
            f"{getattr(exc, 'code', None) or exc}): run the same erase again once the store allows it (an "
            f"Object Lock retention keeps a version until it ends; docs/connections.md lists the actions to "
            f"grant)") from exc
    if not dry_run:
        # Logs outlive the erasure: the key is named by its hash there too.
        log.info("%s (by %s)", out.summary(f"the object with key sha256 {digest[:16]}", name_copies=False), actor)
    return out


# ---------------------------------------------------------------- notes that outlive a restore

# Who the access log names for an erasure a restore had undone and a note brought back.
REAPPLIED_BY = "callscribe (an erasure the database had lost to a restore, re-applied from its note)"
_UNDATED = "undated"


def _notes_prefix(bucket: str, day: date | None = None) -> str:
    base = f"{ERASURE_NOTES_PREFIX}/{bucket}/"
    return base if day is None else f"{base}{day.isoformat()}/"


def note_key(bucket: str, digest: str, day: date | None) -> str:
    """Where the note of an erasure of ``bucket``'s key with hash ``digest`` lies (in the configured
    bucket), by the key's day: a discovery reads only the notes of the days it lists."""
    return f"{ERASURE_NOTES_PREFIX}/{bucket}/{day.isoformat() if day else _UNDATED}/{digest}.json"


def write_note(store: Store, bucket: str, digest: str, day: date | None) -> None:
    """The erasure's note: the key's hash and day, as ``erasures`` holds them (no key, no ids: ids
    are handed out again after a restore)."""
    body = {"bucket": bucket, "key_sha256": digest, "call_date": day.isoformat() if day else None}
    store.put_bytes(store.uri(note_key(bucket, digest, day)), json.dumps(body).encode(), "application/json")


def _notes(store: Store, bucket: str | None, days: list[date] | None) -> dict[str, dict[str, list[date | None]]]:
    """Erased bucket -> the notes' key hashes -> their days (None: undated; a key erased before any
    run registered it may have a note under each day a run could list it under): ``bucket``'s notes of
    ``days`` (with the undated ones), or all of them; ``bucket`` None (with ``days`` None): the notes
    of every bucket an erasure named (``erase --bucket``)."""
    if bucket is None:
        if days is not None:
            raise ValueError("the notes of given days are read for one bucket")
        prefixes = [f"{ERASURE_NOTES_PREFIX}/"]
    else:
        prefixes = ([_notes_prefix(bucket)] if days is None
                    else [_notes_prefix(bucket, d) for d in days] + [f"{_notes_prefix(bucket)}{_UNDATED}/"])
    out: dict[str, dict[str, list[date | None]]] = {}
    for prefix in prefixes:
        for obj in store.list(prefix):
            parts = obj.key.removeprefix(f"{ERASURE_NOTES_PREFIX}/").split("/")
            if len(parts) != 3 or not parts[2].endswith(".json") or (bucket is not None and parts[0] != bucket):
                continue
            noted_bucket, folder, name = parts
            try:
                day = None if folder == _UNDATED else date.fromisoformat(folder)
            except ValueError:
                continue
            noted_days = out.setdefault(noted_bucket, {}).setdefault(name.removesuffix(".json"), [])
            if day not in noted_days:
                noted_days.append(day)
    return out


def reapply(store: Store, engine: Engine, days: list[date] | None = None, bucket: str | None = None,
            actor: str = REAPPLIED_BY, every_bucket: bool = False, dry_run: bool = False) -> list[str]:
    """Erase again what the bucket's erasure notes (of ``days``, or all) say was erased and the
    database does not remember: a restore to a point before those erasures. Returns the key hashes
    re-applied (with ``dry_run``: that would be, nothing changed). A key with rows is erased as on
    request (its transcript, packs, work files), also under a live lease (the erasure must win; a late
    load loses the call, as under --force); one without is remembered as erased, so no run registers
    it. ``every_bucket`` (with no ``bucket`` and no ``days``): the notes of every bucket an erasure
    named, not only the configured one's (the runbook's step after a restore)."""
    if every_bucket and (bucket is not None or days is not None):
        raise ValueError("every_bucket reads every note: no bucket, no days")
    return _reapply_noted(store, engine, _notes(store, None if every_bucket else bucket or store.bucket, days),
                          actor, dry_run)


def _reapply_noted(store: Store, engine: Engine, noted: dict[str, dict[str, list[date | None]]], actor: str,
                   dry_run: bool) -> list[str]:
    out = []
    for noted_bucket, notes in sorted(noted.items()):
        with engine.connect() as conn:
            known = set(conn.execute(db.q("erase_noted_known"),
                                     {"bucket": noted_bucket, "hashes": sorted(notes)}).scalars())
        missing = sorted(h for h in notes if h not in known)
        out += missing
        if dry_run or not missing:
            continue
        keys = _noted_keys(engine, noted_bucket, {h: notes[h] for h in missing})
        failed: list[Exception] = []
        for digest in missing:
            try:
                _reapply_one(store, engine, noted_bucket, digest, notes[digest], keys[digest], actor)
            except Exception as exc:  # the others still get theirs; the first error is raised after
                # The type only: a message may name the key, and logs outlive the erasure.
                log.error("the erasure noted as %s... could not be re-applied: %s", digest[:16], type(exc).__name__)
                failed.append(exc)
        log.warning("%d erasures the database had lost (restored to an earlier point?) re-applied from their notes "
                    "in %s", len(missing) - len(failed), _notes_prefix(noted_bucket))
        if failed:
            raise failed[0]
    return out


def _noted_keys(engine: Engine, bucket: str, notes: dict[str, list[date | None]]) -> dict[str, list[str]]:
    """The keys registered under each noted hash: on its notes' days first (by the day index), then, for
    the hashes found on none of them (undated, or registered under another day), on every day, in one
    query for all: that one hashes every key of the bucket."""
    found: dict[str, set[str]] = {}
    by_day: dict[date, list[str]] = {}
    for digest, days in notes.items():
        if None not in days:
            for d in days:
                by_day.setdefault(d, []).append(digest)
    with engine.connect() as conn:
        def ask(day: date | None, hashes: list[str]) -> None:
            for row in conn.execute(db.q("erase_noted_keys"),
                                    {"bucket": bucket, "call_date": day, "hashes": sorted(hashes)}):
                found.setdefault(row.key_sha256, set()).add(row.object_key)

        for day, hashes in sorted(by_day.items()):
            ask(day, hashes)
        if rest := [h for h in notes if h not in found]:
            ask(None, rest)
    return {h: sorted(found.get(h, ())) for h in notes}


def _reapply_one(store: Store, engine: Engine, bucket: str, digest: str, days: list[date | None],
                 keys: list[str], actor: str) -> None:
    """One note's erasure again: ``keys``, its key's rows (``_noted_keys``), or, with none, the hash alone."""
    # The erasures row's day: the note's, unless the key had several (no run registered it).
    day = days[0] if len(days) == 1 else None
    for key in keys:
        erase(store, engine, key, actor, bucket=bucket, force=True, noted=True)
    if keys:
        return
    with engine.begin() as conn:
        conn.execute(db.q("erase_lock"))
        conn.execute(db.q("erase_noted_only"), {"bucket": bucket, "hash": digest, "call_date": day, "actor": actor,
                                                "detail": "re-applied from its note after the database lost it"})


@dataclass
class NotesKept:
    """What the daily check of erasures against their notes did (or, dry, would do)."""

    reapplied: list[str] = field(default_factory=list)  # key hashes erased again from their notes
    written: list[str] = field(default_factory=list)  # key hashes whose missing note was written
    finished: list[str] = field(default_factory=list)  # key hashes whose clean-up was finished
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"reapplied": len(self.reapplied), "notes_written": len(self.written),
                "cleanups_finished": len(self.finished), "dry_run": self.dry_run}


def finish_cleanups(store: Store, engine: Engine, within: timedelta, dry_run: bool = False) -> list[str]:
    """Erasures of the last ``within`` (the work area's retention: older packs are swept anyway) whose
    speech packs are still in the work area: a clean-up the store stopped (CleanupUnfinished). The
    erase run again finishes it, but an erasure re-applied from its note has no key to run it with,
    and the retry of the discovery that re-applied it skips it (the database knows it now). Done
    again from the erasure's rows (its recording ids and day), as :func:`erase` does after its
    transaction: the runs' work files first, then the packs, so a pack left means both are owed.
    Returns the key hashes finished (with ``dry_run``: that would be)."""
    with engine.connect() as conn:
        recent = conn.execute(db.q("erase_recent"), {"within_s": within.total_seconds()}).all()
    finished = []
    for row in recent:
        ids = set(row.recording_ids)
        packs = [store.uri(k) for i in sorted(ids) for k in pack_keys(row.call_date, i)]
        left = [u for u in packs if store.exists(u)]
        if not left:
            continue
        finished.append(row.key_sha256)
        if dry_run:
            continue
        with engine.connect() as conn:
            run_ids = _run_ids(conn, [], row.call_date)
        _scrub_work_area(store, run_ids, ids, dry_run=False)
        for uri in left:
            store.purge(uri)
    if finished:
        log.warning("%d erasures had speech packs left in the work area (their clean-up was stopped): %s",
                    len(finished), "would be finished" if dry_run else "finished")
    return finished


def keep_notes(store: Store, engine: Engine, dry_run: bool = False) -> NotesKept:
    """Erasures and their notes brought back in step (the maintenance DAG, daily), both ways.

    A note whose erasure the database lacks is a restore's doing: it is re-applied, the runbook's
    `erase --reapply`, for the days no run lists again (the call is searchable until then). An
    erasure without a note (the store refused it and the erase was not run again, or the erasure
    predates notes) gets its note, under its day (undated when it has none: every discovery reads
    those), so the next restore cannot undo it."""
    out = NotesKept(dry_run=dry_run)
    noted = _notes(store, None, None)
    with engine.connect() as conn:
        erased = conn.execute(db.q("erase_all")).all()
    # The notes first: a re-apply that fails (and so fails the task) must not keep them unwritten.
    for row in erased:
        if row.key_sha256 in noted.get(row.bucket, {}):
            continue
        out.written.append(row.key_sha256)
        if not dry_run:
            write_note(store, row.bucket, row.key_sha256, row.call_date)
    out.reapplied = _reapply_noted(store, engine, noted, REAPPLIED_BY, dry_run)
    # At least a month: a sweep run with a longer retention than the default keeps packs that long.
    out.finished = finish_cleanups(store, engine, timedelta(days=max(DEFAULT_RETENTION_DAYS, 31)), dry_run)
    if out.written:
        log.warning("%d erasures had no note in the bucket (a restore would have undone them): %s",
                    len(out.written), "would be written" if dry_run else "written")
    return out
