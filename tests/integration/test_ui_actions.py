"""What a person does in the Airflow UI, and what arrives late or twice (review).

A run that ends without its ``report`` (the whole run marked success or failed in the UI, the
report task marked success before it ran, a run cut off by ``dagrun_timeout``) leaves its
claims behind. The UI's action is emulated the way its API leaves the database: the run is
no longer queued or running, its recordings still carry its run id and a lease, and nothing
closed them. The next run of the day then runs for real (dag.test()).
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery
from callscribe.discovery import MAX_ATTEMPTS, day_prefix
from callscribe.samples import sample_dir
from tests.integration.helpers import record_clean, upload_day

pytestmark = pytest.mark.integration


def _state(dr) -> str:
    return str(dr.state).rsplit(".", 1)[-1].lower()


def _row(pg, day: date):
    with pg.connect() as c:
        return c.execute(sa.text("SELECT status, attempts, last_error, last_run_id, lease_until FROM recordings "
                                 "WHERE call_date = :d"), {"d": day}).one()


def test_a_run_marked_success_on_its_last_attempt_leaves_no_recording_unfinished_for_ever(stack, s3, pg):
    """The run that takes a recording for its last attempt is marked success in the UI while it
    transcribes (its report never runs); the next run of the day comes a day later, after the
    lease (12 h) has run out. The recording must end `failed` with its reason, not stay
    `chunked` for ever, out of attempts, turning every run of its days red."""
    from callscribe.cli import run_day

    day = date(2036, 1, 5)
    n = upload_day(s3, day, files=[sample_dir() / "call-0003.wav"])
    prefix = day_prefix("calls/", day)
    discovery.register(pg, list(s3.list(prefix)), day, "setup")
    marked = "scheduled__marked-success-in-the-ui"
    assert discovery.claim(pg, "calls", prefix, day, marked)
    # What that run left: chunked on its (last) attempt, transcription killed by the mark, no report;
    # a day later its lease has expired.
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'chunked', attempts = :a, attempted_run_id = :r, "
                          "last_error = NULL, lease_until = now() - interval '12 hours' WHERE call_date = :d"),
                  {"a": MAX_ATTEMPTS, "r": marked, "d": day})

    first = run_day(day)
    row = _row(pg, day)
    assert row.status == "failed" and f"gave up after {MAX_ATTEMPTS} attempts" in row.last_error, row
    assert row.lease_until is None, row
    assert _state(first) == "success"  # failed with its reason: a known end state
    record_clean("a run marked success in the UI on a recording's last attempt", s3, pg, day, n, 1, loads_expected=0)


def test_a_chunk_task_cleared_without_its_downstream_leaves_no_recording_unfinished_for_ever(stack, s3, pg,
                                                                                            monkeypatch):
    """A recording fails in the chunker on its last attempt; the run reports (green: failed with its
    reason). Someone then clears that run's chunk task alone (the UI with Downstream unticked, or
    `airflow tasks clear -t chunk`, whose default leaves the downstream alone): it chunks the file
    again, nothing transcribes it, and no report runs. The next run of the day must give it its end
    state (out of attempts: `failed`), not leave it `chunked` for ever and every run of its days red."""
    from callscribe import pipeline
    from callscribe.cli import run_day
    from tests.integration.helpers import run_through

    day = date(2036, 1, 7)
    n = upload_day(s3, day, files=[sample_dir() / "call-0003.wav"])
    prefix = day_prefix("calls/", day)
    discovery.register(pg, list(s3.list(prefix)), day, "setup")
    with pg.begin() as c:  # two earlier runs tried it already
        c.execute(sa.text("UPDATE recordings SET attempts = :a WHERE call_date = :d"),
                  {"a": MAX_ATTEMPTS - 1, "d": day})
    real = pipeline.chunk_recording

    def crashing(*args, **kwargs):
        raise RuntimeError("simulated chunker error")

    monkeypatch.setattr(pipeline, "chunk_recording", crashing)
    run = "scheduled__chunk-cleared-alone"
    run_through(s3, pg, day, run)  # discover, chunk (fails the file), report's close
    row = _row(pg, day)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS), row
    # The chunk task cleared alone, days later: the same run id, its group, the chunker now fine.
    monkeypatch.setattr(pipeline, "chunk_recording", real)
    with pg.connect() as c:
        ids = c.execute(sa.text("SELECT id FROM recordings WHERE call_date = :d"), {"d": day}).scalars().all()
    pipeline.chunk_group(s3, pg, ids, run, 0)
    assert _row(pg, day).status == "chunked"  # nothing downstream runs: no transcript, no report

    dr = run_day(day)
    row = _row(pg, day)
    assert row.status == "failed" and f"gave up after {MAX_ATTEMPTS} attempts" in row.last_error, row
    assert _state(dr) == "success"
    record_clean("a chunk task cleared without its downstream after its run reported", s3, pg, day, n, 1,
                 loads_expected=0)
