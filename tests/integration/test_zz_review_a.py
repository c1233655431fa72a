"""Review: re-upload sequences and max_recordings."""
from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.audit import audit_day
from callscribe.discovery import day_prefix
from callscribe.samples import sample_dir

pytestmark = pytest.mark.integration


def _state(dr) -> str:
    return str(dr.state).rsplit(".", 1)[-1].lower()


def _rows(pg, day):
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT id, object_key, etag, status, last_error, attempts, loads, last_run_id FROM recordings "
            "WHERE call_date = :d ORDER BY id"), {"d": day}).all()


def _texts(pg, day):
    with pg.connect() as c:
        return c.execute(sa.text(
            "SELECT r.id, string_agg(t.text, ' ' ORDER BY t.channel) FROM transcripts t JOIN recordings r "
            "ON r.id = t.recording_id WHERE r.call_date = :d GROUP BY r.id ORDER BY r.id"), {"d": day}).all()


def test_reverting_a_reupload_to_the_earlier_content(stack, s3, pg):
    """K = A; run; K = B (wrong file); run; K = A again (restored); run."""
    from callscribe.cli import run_day

    day = date(2025, 3, 3)
    key = day_prefix("calls/", day) + "k.wav"
    a = (sample_dir() / "call-0003.wav").read_bytes()
    b = (sample_dir() / "call-0001.wav").read_bytes()
    s3.put_bytes(s3.uri(key), a)
    assert _state(run_day(day)) == "success"
    s3.put_bytes(s3.uri(key), b)
    assert _state(run_day(day)) == "success"
    s3.put_bytes(s3.uri(key), a)  # restored
    dr = run_day(day)
    rows = _rows(pg, day)
    print("ROWS", *rows, sep="\n")
    print("TEXTS", _texts(pg, day))
    print("AUDIT", audit_day(s3, pg, day).as_dict())
    # The bucket holds A under the key: Postgres must end with A's transcript, the run green.
    etag_now = next(iter(s3.list(key))).etag
    live = [r for r in rows if r.status not in ("superseded", "deleted")]
    assert [r.etag for r in live] == [etag_now], rows
    assert _state(dr) == "success"


def test_reupload_of_an_undecodable_file_over_a_done_call(stack, s3, pg):
    from callscribe.cli import run_day

    day = date(2025, 3, 5)
    key = day_prefix("calls/", day) + "k.wav"
    s3.put_bytes(s3.uri(key), (sample_dir() / "call-0003.wav").read_bytes())
    assert _state(run_day(day)) == "success"
    s3.put_bytes(s3.uri(key), b"RIFF not really a wav file" * 20)
    dr1 = run_day(day)
    dr2 = run_day(day)
    rows = _rows(pg, day)
    print("ROWS", *rows, sep="\n")
    print("TEXTS", _texts(pg, day))
    print("AUDIT", audit_day(s3, pg, day).as_dict())
    assert {r.status for r in rows} >= {"quarantined"}
    assert (_state(dr1), _state(dr2)) == ("success", "success")


def test_max_recordings_manual_run(stack, s3, pg):
    from callscribe.cli import run_day

    day = date(2025, 3, 7)
    prefix = day_prefix("calls/", day)
    for i in range(3):
        s3.put_bytes(s3.uri(f"{prefix}c{i}.wav"), (sample_dir() / "call-0003.wav").read_bytes())
    dr = run_day(day, {"max_recordings": 1, "lookback_days": 0})
    rows = _rows(pg, day)
    print("ROWS", *rows, sep="\n")
    assert sum(r.status == "done" for r in rows) == 1
    assert _state(dr) == "success"
