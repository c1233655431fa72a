"""Reconcile a day's bucket listing with Postgres: is every recording accounted for, once?

The audit analysts' counts rest on: each object in the day's prefix has exactly one live
row, in a known end state, and a `done` row has one transcript per channel and no segment
twice. Fault tests run it after every recovery; operators run ``callscribe audit``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.engine import Engine

from callscribe import db
from callscribe.discovery import day_prefix
from callscribe.storage import Store

FINAL = frozenset({"done", "failed", "quarantined"})


@dataclass
class DayAudit:
    day: date
    objects: int = 0
    states: Counter = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)        # in the bucket, not accounted for
    duplicated: list[str] = field(default_factory=list)  # accounted for more than once
    unfinished: list[str] = field(default_factory=list)  # pending or chunked: a run still owes them
    loads: Counter = field(default_factory=Counter)        # times loaded -> how many done recordings

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unfinished)

    def as_dict(self) -> dict:
        return {"day": str(self.day), "objects": self.objects, "states": dict(self.states), "lost": self.lost,
                "duplicated": self.duplicated, "unfinished": self.unfinished, "loads": dict(self.loads)}


def audit_day(store: Store, engine: Engine, day: date, base_prefix: str = "calls/") -> DayAudit:
    prefix = day_prefix(base_prefix, day)
    listed = {o.key: o.etag for o in store.list(prefix)}
    with engine.connect() as conn:
        rows = conn.execute(db.q("audit_day"), {"bucket": store.bucket, "call_date": day, "prefix": prefix}).all()
    out = DayAudit(day=day, objects=len(listed))
    live: dict[str, list] = {}
    for r in rows:
        out.states[r.status] += 1
        if r.status != "superseded":
            live.setdefault(r.object_key, []).append(r)
    for key, etag in sorted(listed.items()):
        versions = live.get(key, [])
        if len(versions) > 1:
            out.duplicated.append(f"{key}: {len(versions)} live rows")
        current = [r for r in versions if r.etag == etag]
        if not current:
            out.lost.append(f"{key}: not registered")
            continue
        r = current[0]
        if r.status == "done":
            out.loads[r.loads] += 1
        if r.status not in FINAL:
            out.unfinished.append(f"{key}: {r.status}")
        elif r.status != "done" and not r.last_error:
            out.lost.append(f"{key}: {r.status} without a reason")
        elif r.status == "done" and r.transcripts != max(r.channels or 1, 1):
            out.lost.append(f"{key}: done with {r.transcripts} transcripts for {r.channels} channels")
        if r.repeated_segments:
            out.duplicated.append(f"{key}: {r.repeated_segments} repeated segments")
    return out
