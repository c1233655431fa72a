"""Reconcile a day's bucket listing with Postgres: is every recording accounted for, once?

The audit analysts' counts rest on: each object in the day's prefix has exactly one live
row, in a known end state, and a `done` row has one transcript per channel and no segment
twice. Fault tests run it after every recovery; operators run ``callscribe audit``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Engine

from callscribe import db
from callscribe.config import copy_window_days, key_hash
from callscribe.discovery import MAX_ATTEMPTS, day_prefix
from callscribe.reporting import uploads_in_flight
from callscribe.storage import Store

FINAL = frozenset({"done", "failed", "quarantined", "duplicate"})


@dataclass
class DayAudit:
    day: date
    objects: int = 0
    states: Counter = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)        # in the bucket, not accounted for
    duplicated: list[str] = field(default_factory=list)  # accounted for more than once
    unfinished: list[str] = field(default_factory=list)  # pending or chunked: a run still owes them
    loads: Counter = field(default_factory=Counter)        # times loaded -> how many done recordings
    in_progress: list[str] = field(default_factory=list)  # unfinished, but another live run holds them
    not_reprocessed: list[str] = field(default_factory=list)  # a reprocess run left them to another run
    arrived_later: int = 0  # objects newer than the audit's cut-off: the next run's work

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unfinished or self.not_reprocessed)

    def as_dict(self) -> dict:
        return {"day": str(self.day), "objects": self.objects, "states": dict(self.states), "lost": self.lost,
                "duplicated": self.duplicated, "unfinished": self.unfinished, "loads": dict(self.loads),
                "in_progress": self.in_progress, "not_reprocessed": self.not_reprocessed,
                "arrived_later": self.arrived_later}


def written_after(modified: datetime | None, cut: datetime | None) -> bool:
    """Whether an object last modified at ``modified`` (the store's time) may have been written after
    ``cut`` (the run's listing, on the store's clock where it was read: reporting.listed_at).
    Stores stamp whole seconds (AWS S3's and SeaweedFS's listings): an upload after a listing that
    began at 12:00:00.300 reads 12:00:00, so such a time stands for its whole second, or an upload
    the run could not have seen would count as lost and turn it red."""
    if modified is None or cut is None:
        return False
    return modified + timedelta(seconds=1) > cut if modified.microsecond == 0 else modified > cut


# The ETag S3 gives an object made by a multipart upload: not an MD5, and the count of its parts.
MULTIPART_ETAG = re.compile(r"[^-]+-[0-9]+")


def begun_under_way(key: str, etag: str, modified: datetime | None,
                    in_flight: dict[str, list[datetime]] | None) -> bool:
    """Whether an object is what a multipart upload under way at the run's listing became, on a
    store that stamps such an object with the time its upload began (AWS S3): made by an upload in
    parts (its ETag ends in their count), and its Last-Modified is that upload's start, to the
    second (whole seconds in listings, milliseconds in the upload list). An upload abandoned long
    before leaves the key's later objects owed, and so does an object sent whole (one PUT) in the
    second an abandoned upload of its key began."""
    if modified is None or not in_flight or not MULTIPART_ETAG.fullmatch(etag or ""):
        return False
    return any(abs(modified - began) <= timedelta(seconds=1) for began in in_flight.get(key_hash(key), ()))


def audit_day(store: Store, engine: Engine, day: date, base_prefix: str = "calls/",
              listed_before: datetime | None = None, run_id: str | None = None,
              is_live: Callable[[str], bool] | None = None, only_claimed: bool = False,
              held_back: dict[int, str | None] | None = None, reprocess: bool = False,
              in_flight: dict[str, list[datetime]] | None = None) -> DayAudit:
    """Reconcile one day's prefix with its rows.

    For a run's verdict (``run_id``): objects modified after ``listed_before`` that the run
    did not take are counted apart (it cannot have seen them); unfinished recordings another
    run holds are in progress, not owed, while that run is live (``is_live``); with
    ``only_claimed`` (a run limited by ``max_recordings``) only what the run took counts.
    ``held_back`` (recording id -> holder) are those a reprocess run left to other runs: owed
    until the run takes them (a later pass under its id). A ``reprocess`` run also owes what it
    took and did not transcribe again (still `done` with the earlier transcript). ``in_flight``
    (key hash -> start times): the multipart uploads still under way just after the run's listing
    (reporting.uploads_in_flight); an object one of them became arrived after it, whatever its time.
    """
    prefix = day_prefix(base_prefix, day)
    objects = list(store.list(prefix))
    with engine.connect() as conn:
        rows = conn.execute(db.q("audit_day"), {"bucket": store.bucket, "call_date": day, "prefix": prefix,
                                                "window": copy_window_days()}).all()
        erased = set(conn.execute(db.q("audit_erased"), {
            "bucket": store.bucket, "hashes": [key_hash(o.key) for o in objects]}).scalars())
    # What the run took, by content. A key it took that now holds other content was uploaded
    # again after the run listed it (its listing had what it took), whatever the clocks say:
    # object times can be whole seconds, and so before the listing's time.
    mine = {(r.object_key, r.etag) for r in rows if run_id and r.last_run_id == run_id}
    taken = {key for key, _ in mine}
    late = {o.key for o in objects if (o.key, o.etag) not in mine and (
        o.key in taken or written_after(o.last_modified, listed_before)
        or begun_under_way(o.key, o.etag, o.last_modified, in_flight))}
    if only_claimed:
        late |= {o.key for o in objects if (o.key, o.etag) not in mine}
    listed = {o.key: o.etag for o in objects if o.key not in late}
    out = DayAudit(day=day, objects=len(listed), arrived_later=len(late))
    live: dict[str, list] = {}
    transcribed: dict[tuple, list[tuple[str, bool]]] = {}  # content -> (key, another live run holds it), done
    same_bytes: dict[bytes, list[tuple[str, bool]]] = {}  # the same, by the bytes the chunker read
    for r in rows:
        out.states[r.status] += 1
        if r.status not in ("superseded", "deleted"):
            live.setdefault(r.object_key, []).append(r)
    for key, etag in sorted(listed.items()):
        versions = live.get(key, [])
        # An older version stays done while a newer one is on its way (it keeps its transcript
        # until the new one loads): twice only when two versions hold transcripts.
        done = sum(r.status == "done" for r in versions)
        if done > 1:
            out.duplicated.append(f"{key}: {done} versions done")
        current = [r for r in versions if r.etag == etag]
        if not current:
            if key_hash(key) in erased:
                out.states["erased"] += 1
            elif any(r.object_key == key and r.etag == etag and r.status == "deleted" for r in rows):
                out.unfinished.append(f"{key}: deleted earlier and back in the bucket (a run of its day takes it)")
            else:
                out.lost.append(f"{key}: not registered")
            continue
        r = current[0]
        # Another live run is on it: its to answer for, not this run's.
        elsewhere = bool(run_id and r.leased and r.last_run_id != run_id
                         and (is_live is None or is_live(r.last_run_id)))
        if r.status == "done":
            out.loads[r.loads] += 1
            if r.size_bytes:
                transcribed.setdefault((r.etag, r.size_bytes), []).append((key, elsewhere))
            if r.content_sha256 is not None:  # the same bytes under another etag (recording_bytes.sql)
                same_bytes.setdefault(bytes(r.content_sha256), []).append((key, elsewhere))
            if r.twin_key:  # the same call transcribed on another day too (discover_copy_retire.sql keeps one)
                held = elsewhere or bool(run_id and r.twin_holder and r.twin_holder != run_id
                                         and (is_live is None or is_live(r.twin_holder)))
                (out.in_progress if held else out.duplicated).append(
                    f"{key}, {r.twin_key} of {r.twin_day}: the same audio transcribed on two days"
                    + ("; another live run holds one" if held else "; the next discovery of either day keeps one"))
        elif (r.status in ("quarantined", "duplicate") or (r.status == "failed" and r.attempts >= MAX_ATTEMPTS)) \
                and any(v.status == "done" for v in versions):
            # Kept only until a discovery of the day or the run's report retires it (discovery.retire_replaced).
            (out.in_progress if elsewhere else out.unfinished).append(
                f"{key}: an earlier version's transcript is still searchable; the current upload is {r.status}")
        if r.status not in FINAL:
            if elsewhere:
                out.in_progress.append(f"{key}: {r.status} in run {r.last_run_id}")
            else:
                out.unfinished.append(f"{key}: {r.status}" + (f" ({r.last_error})" if r.last_error else ""))
        elif r.status != "done" and not r.last_error:
            out.lost.append(f"{key}: {r.status} without a reason")
        elif r.status == "duplicate" and (r.original_status in ("deleted", "superseded") or (
                r.original_status == "failed" and r.original_attempts >= MAX_ATTEMPTS)):
            # The call has no transcript under the original: the next discovery of the day revives the copy.
            gone = "failed for good" if r.original_status == "failed" else r.original_status
            out.unfinished.append(f"{key}: a copy whose original is {gone}; the next run of its day transcribes it")
        elif r.status == "duplicate" and r.original_elsewhere and r.original_status in ("pending", "chunked", "failed"):
            # Its original is on another day or under another prefix, outside this audit: the call has no
            # transcript yet.
            held = bool(run_id and r.original_holder and r.original_holder != run_id
                        and (is_live is None or is_live(r.original_holder)))
            (out.in_progress if held else out.unfinished).append(
                f"{key}: a copy of {r.original_elsewhere} of {r.original_day}, which is {r.original_status}"
                + (f" in run {r.original_holder}" if held else "; a run of that day and prefix transcribes it"))
        elif r.status == "done" and r.transcripts != max(r.channels or 1, 1):
            out.lost.append(f"{key}: done with {r.transcripts} transcripts for {r.channels} channels")
        if r.status == "done" and r.redo_since is not None and r.attempts < MAX_ATTEMPTS:
            # Its metadata was fixed since it was transcribed, and the fix renames its speakers
            # (discovery.refresh_metadata): the transcript analysts see is out of date.
            (out.in_progress if elsewhere else out.unfinished).append(
                f"{key}: its metadata was fixed after it was transcribed (who speaks first); "
                + (f"run {r.last_run_id} transcribes it again" if elsewhere
                   else "the next run of its day transcribes it again"))
        if r.repeated_segments:
            out.duplicated.append(f"{key}: {r.repeated_segments} repeated segments")
        # Taken, but its load never came (the chunker or the worker failed on it): the earlier transcript stays.
        if reprocess and run_id and r.last_run_id == run_id and r.status == "done" and r.loaded_run_id != run_id:
            out.not_reprocessed.append(f"{key}: not transcribed again by this run, which kept the earlier "
                                       f"transcript ({r.last_error or 'its work on it did not finish'}); "
                                       f"reprocess the day again")
        # Quarantined (the holder found it undecodable or not audio): a reprocess never takes it,
        # so nothing of it is left to reprocess, nor would a later pass take it.
        if held_back and r.id in held_back and r.last_run_id != run_id and r.status != "quarantined":
            holder = f"run {held_back[r.id]}" if held_back[r.id] else "another run"
            out.not_reprocessed.append(f"{key}: {r.status}, left to {holder}, which held it when "
                                       f"this run claimed; reprocess the day again once that run has ended")
    for found in copy_groups([*transcribed.values(), *same_bytes.values()]):
        # copies are one call (discover_copy_retire.sql keeps one)
        keys = ", ".join(k for k, _ in found)
        if any(held for _, held in found):  # that run's to settle: the next discovery retires one
            out.in_progress.append(f"{keys}: the same audio transcribed {len(found)} times, one held by "
                                   f"another live run")
        else:
            out.duplicated.append(f"{keys}: the same audio transcribed {len(found)} times")
    if run_id is None:
        # Gone from the bucket but still searchable: a run's verdict leaves these alone (its
        # discovery forgot what was gone when it listed), an operator's audit names them.
        for key in sorted(set(live) - set(listed)):
            out.unfinished.append(f"{key}: gone from the bucket; the next run of its day marks it deleted")
    return out


def copy_groups(matches: list[list[tuple[str, bool]]]) -> list[list[tuple[str, bool]]]:
    """Keys matched as one call (by etag and size, or by bytes), joined where matches share a key:
    a.wav like c.wav by etag and like b.wav by bytes is one call with three transcripts, named once.
    Each key comes with whether another live run holds it; groups of one key are no copies."""
    parent: dict[str, str] = {}
    held: dict[str, bool] = {}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for found in matches:
        for key, is_held in found:
            parent.setdefault(key, key)
            held[key] = held.get(key, False) or is_held
        for key, _ in found[1:]:
            parent[root(key)] = root(found[0][0])
    groups: dict[str, list[str]] = {}
    for key in parent:
        groups.setdefault(root(key), []).append(key)
    return sorted([(k, held[k]) for k in sorted(keys)] for keys in groups.values() if len(keys) > 1)


@dataclass
class RunVerdict:
    """Whether a run kept its promise: every call of its days in a known state, no task failed."""

    run_id: str
    audits: list[DayAudit]
    failed_tasks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_tasks and all(a.clean for a in self.audits)

    def problems(self, limit: int = 5) -> list[str]:
        out = [f"task {t} failed" for t in self.failed_tasks]
        for a in self.audits:
            for kind, items in (("lost", a.lost), ("unfinished", a.unfinished), ("doubled", a.duplicated),
                                ("not reprocessed", a.not_reprocessed)):
                if items:
                    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
                    shown = "; ".join(items[:limit]) + more
                    out.append(f"{a.day}: {len(items)} {kind}: {shown}")
        return out

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "ok": self.ok, "failed_tasks": self.failed_tasks,
                "days": [a.as_dict() for a in self.audits]}


def days_taken(engine: Engine, run_id: str) -> list[tuple[date, str]]:
    """The call days of the recordings a run took or settled, with the base prefix of their keys,
    newest first."""
    with engine.connect() as conn:
        return [(r.call_date, r.base_prefix) for r in conn.execute(db.q("run_days_taken"), {"run_id": run_id})]


def run_verdict(store: Store, engine: Engine, run_id: str, days: list[date], base_prefix: str,
                started_at: datetime | None, failed_tasks: list[str] | None = None,
                is_live: Callable[[str], bool] | None = None, only_claimed: bool = False,
                reprocess: bool | None = None) -> RunVerdict:
    """Audit each day a run covered, as of its listing, on behalf of that run. ``reprocess``
    (its first day taken again whole): by default, whether its claim recorded what it held back."""
    with engine.connect() as conn:
        held = conn.execute(db.q("run_held_back_get"), {"run_id": run_id}).scalar_one_or_none()
    # A reprocess claim records what it left to other runs, an empty list too: a plain run has none.
    held_back = {int(h["id"]): h["run_id"] for h in held or []}
    if reprocess is None:
        reprocess = held is not None
    in_flight = uploads_in_flight(engine, run_id)
    audits = [audit_day(store, engine, d, base_prefix, listed_before=started_at, run_id=run_id, is_live=is_live,
                        only_claimed=only_claimed, held_back=held_back, reprocess=reprocess and k == 0,
                        in_flight=in_flight)
              for k, d in enumerate(days)]
    # Copies the run freed and took on days or under prefixes it does not cover (discovery.discover):
    # what it took there is its to answer for, and no later run of its own may list them.
    covered = {day_prefix(base_prefix, d) for d in days}
    audits += [audit_day(store, engine, d, base, listed_before=started_at, run_id=run_id, is_live=is_live,
                         only_claimed=True)
               for d, base in days_taken(engine, run_id) if day_prefix(base, d) not in covered]
    return RunVerdict(run_id, audits, sorted(failed_tasks or []))
