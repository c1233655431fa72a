"""How long the pipeline's intermediates live: a sweep of the work area ``_callscribe/``.

Speech packs, chunk and job manifests and transcript shards are only needed while their run
is going (and to re-run one of its tasks soon after). The sweep deletes those older than the
retention time, and never anything a live run still holds: a run that holds leases keeps its
whole run folder and the packs of the recordings it holds, however old.

A bucket lifecycle rule on the ``_callscribe/`` prefix does the same by age alone (see the
README); the sweep is the portable default, run daily by the ``callscribe_maintenance`` DAG.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from callscribe import db
from callscribe.pipeline import WORK_PREFIX, pack_keys, run_key
from callscribe.storage import REFUSED_CODES, ObjectInfo, S3Error, Store, unavailable

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    kept_recent: int = 0
    kept_live: int = 0
    deleted: int = 0
    deleted_bytes: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"deleted": self.deleted, "deleted_bytes": self.deleted_bytes, "kept_recent": self.kept_recent,
                "kept_live": self.kept_live, "dry_run": self.dry_run}


class SweepRefused(RuntimeError):
    """The store refused to delete some expired objects (S3 Object Lock keeps a version until its
    retention ends: 403 AccessDenied); the rest was swept. ``sweep`` says what was done."""

    def __init__(self, message: str, sweep: Sweep):
        super().__init__(message)
        self.sweep = sweep


@dataclass(frozen=True)
class Held:
    """What live runs still need: their run folders (by run key) and the packs they hold."""

    runs: frozenset[str]
    packs: frozenset[str]

    def covers(self, key: str) -> bool:
        parts = key.split("/", 3)
        if len(parts) > 2 and parts[1] == "runs":
            return parts[2] in self.runs
        return key in self.packs


def held(engine: Engine) -> Held:
    runs, packs = set(), set()
    with engine.connect() as conn:
        for run_id, rid, day in conn.execute(db.q("work_area_live")):
            runs.add(run_key(run_id))
            packs.update(pack_keys(day, rid))
    return Held(frozenset(runs), frozenset(packs))


def verdict(obj: ObjectInfo, cutoff: datetime, live: Held) -> str:
    """'live', 'recent' or 'expired' for one work-area object."""
    if live.covers(obj.key):
        return "live"
    if obj.last_modified is None or obj.last_modified >= cutoff:
        return "recent"
    return "expired"


def sweep(store: Store, engine: Engine, retention: timedelta, now: datetime | None = None,
          dry_run: bool = False, under: str = f"{WORK_PREFIX}/") -> Sweep:
    """Delete work-area objects (``under`` a part of it) last written before ``now - retention``
    that no live run holds."""
    if not under.startswith(f"{WORK_PREFIX}/"):
        raise ValueError(f"the sweep only deletes under {WORK_PREFIX}/, not {under!r}")
    if retention < timedelta(0):
        raise ValueError("retention must not be negative")
    cutoff = (now or datetime.now(UTC)) - retention
    live = held(engine)  # read before listing: a run that starts later writes newer objects
    out = Sweep(dry_run=dry_run)
    refused: list[str] = []
    # Deleted objects on a versioned bucket too (a task retry deletes the earlier try's shard and
    # failure note): their older versions keep their bytes behind the delete marker.
    for obj in itertools.chain(store.list(under), store.hidden(under)):
        state = verdict(obj, cutoff, live)
        if state == "live":
            out.kept_live += 1
        elif state == "recent":
            out.kept_recent += 1
        elif dry_run:
            out.deleted += 1
            out.deleted_bytes += obj.size
        else:
            # Every version (a versioned bucket keeps them otherwise) written before the cut-off:
            # not one a run wrote since the listing (it claimed the recording after `held`).
            try:
                purged = store.purge_older(store.uri(obj.key), cutoff)
            except S3Error as exc:
                # One object's refusal (a version under Object Lock retention, a policy on its key) is
                # that object's: the others are still swept, and the sweep fails at its end naming it.
                if unavailable(exc) or exc.code not in REFUSED_CODES:
                    raise
                refused.append(f"{obj.key} ({exc.code})")
                continue
            if purged:
                out.deleted += 1
                out.deleted_bytes += obj.size
            else:
                out.kept_recent += 1
    log.info("work area sweep (older than %s): %s", retention, out.as_dict())
    if refused:
        raise SweepRefused(
            f"the object store refused to delete {len(refused)} expired work-area object(s) (an Object Lock "
            f"retention or a policy on them; the rest was swept): {', '.join(refused[:10])}"
            + (" ..." if len(refused) > 10 else ""), out)
    return out
