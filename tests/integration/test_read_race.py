"""The chunker checks the object's etag (HEAD) and then reads it (GET) in two requests.
An upload landing between them must not be transcribed under the version the run registered."""

from __future__ import annotations

from datetime import date

import pytest

from callscribe.audit import audit_day
from tests.integration.copies import OTHER, call_bytes, put
from tests.integration.helpers import key_versions, run_through

pytestmark = pytest.mark.integration


def test_an_upload_between_the_etag_check_and_the_read_is_not_transcribed_as_the_old_version(
        stack, s3, pg, monkeypatch):
    """K holds call A. While the chunker reads it, a sync tool writes the wrong file B over it and then
    A again (a retried export): the GET sees B. The row of A must not end `done` with B's transcript:
    the next listing shows A's etag again, so nothing would ever correct it (audit clean, the page
    plays A's audio for B's words)."""
    day = date(2037, 9, 5)
    a = call_bytes(9501)
    key = put(s3, day, "a.wav", a)
    real_stat, real_get = s3.stat, s3.get_bytes
    state = {"swapped": False}

    def stat(bucket, k):
        out = real_stat(bucket, k)
        if k == key and not state["swapped"]:
            state["swapped"] = True
            put(s3, day, "a.wav", OTHER)  # lands between the HEAD and the GET
        return out

    def get_bytes(uri, *args, **kw):
        try:
            return real_get(uri, *args, **kw)
        finally:
            if uri.endswith(key) and state["swapped"] and "restored" not in state:
                state["restored"] = True
                put(s3, day, "a.wav", a)  # and back to A

    monkeypatch.setattr(s3, "stat", stat)
    monkeypatch.setattr(s3, "get_bytes", get_bytes)
    run_through(s3, pg, day, "scheduled__rv-race-1")
    monkeypatch.undo()
    (row,) = key_versions(pg, day, key)
    assert row.status != "done", "A's row holds the transcript of the B the GET read"
    assert "changed" in row.last_error
    verdict = run_through(s3, pg, day, "manual__rv-race-1b")  # its retry reads A
    assert verdict.ok, verdict.problems()
    (row,) = key_versions(pg, day, key)
    assert row.status == "done"
    assert audit_day(s3, pg, day).clean
