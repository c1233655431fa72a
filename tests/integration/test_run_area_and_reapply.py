"""What the work-area refusal, the erasure clean-up and the run-key check leave at their edges (call
days in 2095 only)."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, erasure, reporting
from callscribe.config import key_hash, run_key
from callscribe.pipeline import pack_key
from tests.integration.copies import call_bytes, locked, newest, put
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def test_a_refused_runs_report_leaves_the_refunds_the_listed_run_owes(stack, s3, pg):
    """The run refused at discover ("would share its work area") still runs its report (ALL_DONE), and
    report_run closes it with the store: pay_refunds lists *its* refunds folder, which is the listed
    run's, finds nothing to pay under its own id, and deletes each note ("removed either way"). The
    listed run's chunk tasks' owed refunds are gone: its calls keep the attempts an outage spent."""
    day = date(2095, 1, 10)
    a, b = "review4-redo:2095-01-10", "review4-redo+2095-01-10"
    source = reporting.run_source(s3.bucket, "calls/")
    reporting.run_listed(pg, a, "transcribe_calls", day, "whisper-tiny", source)
    discovery.write_refund_note(s3, a, 987654321, None)  # a chunk task of run a, the database down
    note = discovery.refund_uri(s3, a, 987654321)
    assert s3.exists(note)
    with pytest.raises(reporting.ForeignRun, match="work area"):
        reporting.run_listed(pg, b, "transcribe_calls", day, "whisper-tiny", source)
    reporting.report_run(pg, b, "transcribe_calls", day, "whisper-tiny", store=s3, source=source)
    assert s3.exists(note), "the refused run's report deleted the refund the listed run owes"
    s3.delete(note)


AIRFLOW_RUN_IDS = [
    "scheduled__2095-01-11T00:00:00+00:00", "manual__2095-01-11T00:00:00.123456+00:00",
    "backfill__2095-01-11T00:00:00+00:00", "asset_triggered__2095-01-11T00:00:00.5+00:00",
    "manual__2095-01-11T13:45:12.000001+00:00_AbCdEfGh", "a~b~~c::d++e", "__--..__", "é-ü+ß", "x\U0001d518y",
    "tab\there", "new\nline", "[brackets]^$\\", "_", "-", "Z", "z", "0", "9",
]


def test_run_key_taken_replaces_as_config_run_key_does(stack, pg):
    """The SQL (run_key_taken.sql) and the Python (config.run_key) must give one folder per run id."""
    with pg.connect() as c:
        for rid in AIRFLOW_RUN_IDS:
            got = c.execute(sa.text("SELECT regexp_replace(:r, '[^A-Za-z0-9._-]+', '_', 'g')"), {"r": rid}).scalar()
            assert got == run_key(rid), rid


def test_a_reapplied_erasure_whose_clean_up_stopped_is_finished_by_the_daily_check(stack, s3, pg, monkeypatch):
    """After a restore, discover re-applies an erasure from its note (erasure.reapply): the rows go
    (committed), then the clean-up stops (a pack under an Object Lock, or the store down for a
    moment): CleanupUnfinished fails discover, saying "run the same erase again". The task's retry
    re-applies only the notes the database does not know, and it knows this one now: it succeeds,
    and the call's speech pack (its audio) stayed in the work area until the retention sweep. The
    daily maintenance check (keep_notes) finishes it from the erasure's rows."""
    day = date(2095, 1, 12)
    key = put(s3, day, "restored-erasure.wav", call_bytes(49512))
    run = "manual__review4-reapply"
    reporting.run_listed(pg, run, "transcribe_calls", day, "whisper-tiny")
    verdict = run_through(s3, pg, day, run)
    assert verdict.ok, verdict.problems()
    pack = s3.uri(pack_key(day, newest(pg, day)["restored-erasure.wav"].id, "wav"))
    assert s3.exists(pack)
    # What a restore leaves: the erasure's note in the bucket, the database without the erasure.
    erasure.write_note(s3, s3.bucket, key_hash(key), day)
    locked(s3, monkeypatch, pack)  # an Object Lock retention on the pack
    with pytest.raises(erasure.CleanupUnfinished):
        erasure.reapply(s3, pg, [day])  # discover's first try
    monkeypatch.undo()  # the store allows it now
    erasure.reapply(s3, pg, [day])  # discover's retry: green
    assert s3.exists(pack)  # the retry skips the erasure the database knows now
    assert key_hash(key) in erasure.keep_notes(s3, pg, dry_run=True).finished and s3.exists(pack)
    kept = erasure.keep_notes(s3, pg)  # the maintenance DAG's daily task
    try:
        assert kept.finished == [key_hash(key)] and not s3.exists(pack)
        assert erasure.keep_notes(s3, pg).finished == []  # nothing left: not done again
    finally:
        s3.purge(pack)
