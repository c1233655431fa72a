"""Objects the pipeline cannot read (access denied on one key, an archived storage class)."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from tests.integration.copies import call_bytes, deny, newest, put, table
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def test_an_unreadable_key_ends_failed_with_its_reason_and_does_not_hold_back_others(stack, s3, pg, monkeypatch):
    day = date(2037, 10, 1)
    bad = put(s3, day, "a.wav", call_bytes(10101))
    put(s3, day, "b.wav", call_bytes(10102))
    deny(s3, monkeypatch, bad)
    verdict = run_through(s3, pg, day, "scheduled__rv-deny-1")
    assert verdict.ok, verdict.problems()
    rows = newest(pg, day)
    assert rows["b.wav"].status == "done"
    assert rows["a.wav"].status == "failed" and "AccessDenied" in rows["a.wav"].last_error, table(pg, day)


def test_a_readable_copy_of_an_unreadable_original_is_transcribed_without_a_red_run(stack, s3, pg, monkeypatch):
    """a.wav cannot be read (a policy, an archive tier); b.wav holds the same audio and can be. a.wav is
    first by name, so b.wav is marked its copy. It stood on a.wav until a.wav's third failure, and the
    run that spent it was red; with lookback_days 0 nothing ever retried a.wav, and b.wav stayed a copy
    of a call with no transcript while every run was green. Now the chunk task that fails to read
    a.wav frees b.wav and transcribes it in the same run; the next discovery makes a.wav its copy."""
    day = date(2037, 10, 5)
    data = call_bytes(10501)
    bad = put(s3, day, "a.wav", data)
    put(s3, day, "b.wav", data)
    deny(s3, monkeypatch, bad)
    time.sleep(1.1)  # stores stamp whole seconds: uploads in the first run's second would read as late
    first = run_through(s3, pg, day, "scheduled__rv-deny-2-0")
    assert first.ok, first.problems()
    rows = newest(pg, day)
    assert rows["b.wav"].status == "done" and rows["a.wav"].status == "failed", table(pg, day)
    outcomes = []
    for k in range(1, 4):
        verdict = run_through(s3, pg, day + timedelta(days=k), f"scheduled__rv-deny-2-{k}", lookback_days=3)
        outcomes.append((k, verdict.ok, verdict.problems()))
    assert all(ok for _, ok, _ in outcomes), outcomes
    rows = newest(pg, day)
    assert rows["b.wav"].status == "done", table(pg, day)
    assert rows["a.wav"].status == "duplicate" and rows["a.wav"].duplicate_of == rows["b.wav"].id, table(pg, day)
