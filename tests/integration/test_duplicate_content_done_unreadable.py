"""A reprocess run cannot read a key that is `done` (a policy since): recording_error.sql keeps
it `done` with its transcript, but the chunker still frees its copies (recording_copies_free.sql) and
transcribes one. With the original's bytes unrecorded (transcribed before migration 0024) nothing
catches it: the call is transcribed twice."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def test_an_unreadable_done_key_keeps_its_copies(stack, s3, pg, monkeypatch):
    day = date(2071, 6, 5)
    data = cp.call_bytes(23301)
    bad = cp.put(s3, day, "a.wav", data)
    cp.put(s3, day, "b.wav", data)
    assert run_through(s3, pg, day, "scheduled__rvz-do-1").ok
    assert cp.transcribed_keys(pg, day) == ["a.wav"], cp.table(pg, day)
    with pg.begin() as c:  # transcribed before migration 0024: no bytes recorded
        c.execute(sa.text("UPDATE recordings SET content_sha256 = NULL WHERE call_date = :d"), {"d": day})
    cp.deny(s3, monkeypatch, bad)
    run_through(s3, pg, day, "manual__rvz-do-2", reprocess=True)  # red: a.wav kept its earlier transcript
    assert cp.transcribed_keys(pg, day) == ["a.wav"], cp.table(pg, day)
