"""Two copies with the same etag freed together by an unreadable original (recording_copies_free.sql)
are chunked in one task; the second becomes the first's copy by its bytes, with a reason saying it was
"uploaded with another etag", which it was not."""

from __future__ import annotations

from datetime import date

import pytest

from tests.integration import copies as cp
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def test_copies_freed_together_with_one_etag_are_not_said_to_have_another(stack, s3, pg, monkeypatch):
    day = date(2071, 7, 5)
    data = cp.call_bytes(23401)
    bad = cp.put(s3, day, "a.wav", data)
    cp.put(s3, day, "b.wav", data)
    cp.put(s3, day, "c.wav", data)
    cp.deny(s3, monkeypatch, bad)
    run_through(s3, pg, day, "scheduled__rvz-rs-1")
    rows = cp.newest(pg, day)
    assert cp.transcribed_keys(pg, day) == ["b.wav"], cp.table(pg, day)
    c = rows["c.wav"]
    assert c.status == "duplicate" and c.duplicate_of == rows["b.wav"].id, cp.table(pg, day)
    assert "another etag" not in c.last_error, c.last_error
