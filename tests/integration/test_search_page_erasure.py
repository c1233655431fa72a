"""The search page's play and download racing an erasure on request.

The page looks a recording up (`done`), does slow work (a stat of the object in the bucket for a
play), then logs the access and hands out the link or the file. An erasure that commits in between
must leave neither a presigned link to the erased call's audio (the audio stays in the bucket
unless --delete-audio) nor an access-log row about the erased recording: the log entry is written
only while the call is still transcribed (analytics.log_call_access), or the page serves nothing."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from callscribe import access, search_page
from callscribe.erasure import erase
from callscribe.samples import sample_dir
from callscribe.search_page import create_app
from tests.integration.helpers import load_call

pytestmark = pytest.mark.integration

DAY = date(2026, 12, 14)
SEGS = [(0, "agent", 0.83, 6.38, "Thank you for calling Acme support, my name is Sarah."),
        (1, "customer", 7.83, 11.99, "Hi, I would like to cancel my account.")]


def _done_call(pg, s3, key: str) -> int:
    s3.put_bytes(s3.uri(key), (sample_dir() / "call-0001.wav").read_bytes())
    etag, _ = s3.stat("calls", key)
    return load_call(pg, s3, key, DAY, SEGS, etag=etag)


def _log_rows(pg, rid: int) -> list[tuple]:
    with pg.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(
            "SELECT action, detail FROM access_log WHERE recording_id = :r AND action <> 'erase'"), {"r": rid})]


def test_a_play_racing_an_erasure_hands_out_no_link_to_the_erased_call(stack, pg, s3, monkeypatch):
    key = "calls/2026/12/14/erase-race-play.wav"
    rid = _done_call(pg, s3, key)
    real_check = search_page.audio_unchanged

    def stat_while_the_dpo_erases(bucket, k, etag):
        # The play has found the call `done`; while it stats the object, the erasure commits.
        erase(s3, pg, k, actor="dpo@example.com")
        return real_check(bucket, k, etag)

    monkeypatch.setattr(search_page, "audio_unchanged", stat_while_the_dpo_erases)
    played = TestClient(create_app(require_login=False)).post("/api/play", json={"recording_id": rid, "start": 1.0})
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM recordings WHERE object_key = :k"), {"k": key}).scalar_one() == 0
    assert played.status_code in (404, 409), (
        f"the page handed out a play link to a call erased before the play was logged: {played.json()}")
    assert _log_rows(pg, rid) == [], "an access-log row about the erased recording was written after its erasure"


def test_a_download_racing_an_erasure_leaves_no_access_log_row_about_the_erased_call(stack, pg, s3, monkeypatch):
    key = "calls/2026/12/14/erase-race-export.wav"
    rid = _done_call(pg, s3, key)
    real_lookup = access.done_recording_by_key

    def lookup_then_erasure(engine, k):
        found = real_lookup(engine, k)
        erase(s3, pg, k, actor="dpo@example.com")  # commits right after the page found the call
        return found

    monkeypatch.setattr(access, "done_recording_by_key", lookup_then_erasure)
    got = TestClient(create_app(require_login=False)).get("/api/export", params={"key": key, "format": "srt"})
    assert got.status_code == 404
    assert _log_rows(pg, rid) == [], "an access-log row about the erased recording was written after its erasure"
