"""The installed CLI against the embedded services: upload, run, status, audit; and the analyst role."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg2
import pytest
import sqlalchemy as sa

from callscribe.samples import sample_dir

pytestmark = pytest.mark.integration
DAY = "2026-11-12"
CLI = [sys.executable, "-m", "callscribe.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_upload_run_status(stack, pg):
    up = _cli("upload", "--date", DAY, "--agent-id", "agent-7", str(sample_dir() / "call-0003.wav"))
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == "s3://calls/calls/2026/11/12/call-0003.wav"

    run = _cli("run", "--date", DAY)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "success" in run.stdout

    status = _cli("status", "--date", DAY, "--json")
    rows = [json.loads(line) for line in status.stdout.splitlines()]
    assert [(r["key"], r["status"]) for r in rows] == [("calls/2026/11/12/call-0003.wav", "done")]
    assert rows[0]["segments"] > 0 and rows[0]["duration_s"] == pytest.approx(12.5, abs=0.2)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT agent_id FROM recordings WHERE call_date = :d"), {"d": DAY}).scalar_one() \
            == "agent-7"

    audit = _cli("audit", "--date", DAY)
    assert audit.returncode == 0, audit.stdout
    assert audit.stdout.splitlines()[0] == f"{DAY}: 1 objects; recordings: 1 done"
    assert "lost: 0" in audit.stdout and "duplicated: 0" in audit.stdout


def test_run_rejects_a_bad_date():
    out = _cli("run", "--date", "2026-13-40")
    assert out.returncode == 2 and "not a date" in out.stderr


def test_analyst_role_reads_but_cannot_write(stack, pg):
    import os

    def owners() -> int:
        with pg.connect() as c:
            return c.execute(sa.text("SELECT count(*) FROM analytics.segments WHERE call_date = :d"),
                             {"d": DAY}).scalar_one()

    conn = psycopg2.connect(host="127.0.0.1", port=stack.pg_port, dbname="callscribe", user="analyst",
                            password=os.environ["CALLSCRIBE_ANALYST_PASSWORD"])
    try:
        with conn.cursor() as cur:
            before = owners()  # the run test may load this day meanwhile: the count lies between
            cur.execute("SELECT count(*) FROM analytics.segments WHERE call_date = %s", (DAY,))
            assert before <= cur.fetchone()[0] <= owners()
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("DELETE FROM analytics.pipeline_runs")  # a view simple enough to write through
        conn.rollback()
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("CREATE TABLE mine (x int)")
    finally:
        conn.close()
