"""One object key's versions against a model of the bucket, in random sequences of operations.

Per sequence, one key K on a day of its own. Operations: put A, B (two calls) or X (not audio)
into K, delete K; runs of the day: a normal one, one during which K changes between listing and
chunking, ones that die right after listing, after chunking or before their report (their leases
then expired, as a day later), and a reprocess run. After each normal or reprocess run, the rows
must match what K holds (``broken``), and every sequence ends with three normal runs, so a repair
must also last. The scenario tests in test_reuploads.py say why each rule exists; this one looks
for the orders nobody wrote down. A fixed seed keeps it repeatable; CALLSCRIBE_MODEL_SEED and
CALLSCRIBE_MODEL_SEQUENCES run others (240 sequences, about 2,700 operations, passed once).
"""

from __future__ import annotations

import os
import random
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from callscribe.audit import audit_day
from callscribe.discovery import day_prefix
from callscribe.samples import sample_dir
from tests.integration.helpers import key_versions, run_through

pytestmark = pytest.mark.integration

CONTENT = {
    "A": (sample_dir() / "call-0003.wav").read_bytes(),
    "B": (sample_dir() / "call-0001.wav").read_bytes(),
    "X": b"RIFF not really a wav file" * 20,
}
SEED = int(os.environ.get("CALLSCRIBE_MODEL_SEED", "20261127"))
SEQUENCES = int(os.environ.get("CALLSCRIBE_MODEL_SEQUENCES", "5"))
FIRST_DAY = date(2031, 1, 1)
RUNS = ["run", "run", "race", "race", "die", "died-chunked", "died-listed", "reprocess"]


def sequence(rng: random.Random) -> list[str]:
    """Mostly a change of the bucket followed by a run of some kind; three normal runs at the end."""
    ops: list[str] = []
    holds: str | None = None
    length = rng.randint(6, 8)
    while len(ops) < length:
        if rng.random() < 0.7:
            op = rng.choice(["putA", "putB", "putX", "putA", "putB", "delete"])
            holds = None if op == "delete" else op[3]
            ops.append(op)
        op = rng.choice(RUNS)
        if op == "race":  # K changes under the run: to other content, or away
            to = rng.choice([c for c in "ABX" if c != holds] + (["-"] if holds else []))
            op, holds = f"race{to}", (None if to == "-" else to)
        ops.append(op)
    return ops + ["run"] * 3


def broken(s3, pg, day: date, key: str, holds: str | None, verdict) -> list[str]:
    """How the key's rows (and the run's verdict) fail to match what the bucket holds."""
    rows = key_versions(pg, day, key)
    etag = next((o.etag for o in s3.list(key) if o.key == key), None)
    with_segments = [r.id for r in rows if r.segments]
    out = []
    if holds in ("A", "B"):
        current = [r.id for r in rows if r.status == "done" and r.segments and r.etag == etag]
        if len(current) != 1 or with_segments != current:
            out.append(f"one done version of the bucket's content, and it alone searchable: {current}, "
                       f"{with_segments} hold segments")
    elif holds == "X":
        current = [r for r in rows if r.etag == etag]
        if [r.status for r in current] != ["quarantined"] or not current[0].last_error or with_segments:
            out.append(f"the upload quarantined with a reason, nothing searchable: {current}, {with_segments}")
    elif with_segments or [r.id for r in rows if r.status not in ("deleted", "superseded")]:
        out.append("K is gone: its rows deleted or superseded, nothing searchable")
    if sum(r.status == "done" for r in rows) > 1:
        out.append("two versions done")
    if verdict is not None and not verdict.ok:
        out.append(f"the run is red: {verdict.problems()}")
    if holds is not None and not audit_day(s3, pg, day).clean:
        out.append(f"the audit is not clean: {audit_day(s3, pg, day).as_dict()}")
    return out


def play(s3, pg, ops: list[str], day: date) -> list[str]:
    key = day_prefix("calls/", day) + "k.wav"
    uri = s3.uri(key)
    holds: str | None = None

    def put(what: str) -> None:
        if what == "-":
            s3.delete(uri)
        else:
            s3.put_bytes(uri, CONTENT[what])

    for i, op in enumerate(ops):
        run = f"model-{day}-{i}-{op}"
        if op.startswith("put") or op == "delete":
            holds = None if op == "delete" else op[3]
            put("-" if op == "delete" else holds)
            continue
        if op.startswith("race"):
            run_through(s3, pg, day, run, before_chunk=lambda to=op[4]: put(to))
            holds = None if op[4] == "-" else op[4]
            continue
        if op.startswith("die"):
            stop = {"died-chunked": "chunked", "died-listed": "listed"}.get(op)
            run_through(s3, pg, day, run, close=False, stop=stop)
            with pg.begin() as c:
                c.execute(sa.text("UPDATE recordings SET lease_until = now() - interval '1 hour' "
                                  "WHERE last_run_id = :r AND lease_until IS NOT NULL"), {"r": run})
            continue
        verdict = run_through(s3, pg, day, run, reprocess=op == "reprocess")
        if bad := broken(s3, pg, day, key, holds, verdict):
            rows = "\n".join(f"  {tuple(r)}" for r in key_versions(pg, day, key))
            return [f"{','.join(ops)}: after operation {i} ({op}), K holding {holds or 'nothing'}: {b}\n{rows}"
                    for b in bad]
    return []


def test_one_keys_versions_follow_the_bucket_in_random_orders(stack, s3, pg):
    rng = random.Random(SEED)
    failures = []
    for n in range(SEQUENCES):
        failures += play(s3, pg, sequence(rng), FIRST_DAY + timedelta(days=n))
    assert not failures, f"seed {SEED}:\n" + "\n".join(failures)
