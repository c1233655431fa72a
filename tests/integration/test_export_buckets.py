"""Two transcribed calls under one key in two buckets (recordings are keyed on bucket, key and
etag; erase takes --bucket; a deployment that moved to another bucket keeps the old one's rows)
are two calls in an export and in the page's download, not one with both transcripts interleaved
(which the exports did while they grouped a call's lines by key alone)."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
import srt
from fastapi.testclient import TestClient

from callscribe.exporting import calls_between
from callscribe.search_page import create_app
from tests.integration.helpers import load_call

pytestmark = pytest.mark.integration

DAY = date(2026, 12, 13)
KEY = "calls/2026/12/13/two-buckets.wav"


def test_one_key_in_two_buckets_is_exported_as_two_calls_not_one(stack, pg, s3):
    first = load_call(pg, s3, KEY, DAY, [(0, "agent", 1.0, 3.0, "Thank you for calling the old bucket."),
                                         (1, "customer", 4.0, 6.0, "I want to cancel my order.")], etag="b1")
    with pg.begin() as c:  # the same key, transcribed in the bucket the deployment used before
        c.execute(sa.text("UPDATE recordings SET bucket = 'calls-archive' WHERE id = :i"), {"i": first})
    load_call(pg, s3, KEY, DAY, [(0, "agent", 1.5, 2.5, "Good morning, new bucket here."),
                                 (1, "customer", 5.0, 7.0, "My parcel never arrived.")], etag="b2")
    calls = [c for c in calls_between(pg, DAY, DAY) if c.key == KEY]
    assert len(calls) == 2, f"two calls (two buckets) exported as {len(calls)}: {[len(c.lines) for c in calls]} lines"
    got = TestClient(create_app(require_login=False)).get("/api/export", params={"key": KEY, "format": "srt"})
    assert got.status_code == 200
    texts = [cue.content for cue in srt.parse(got.text)]
    assert len(texts) == 2, f"the downloaded transcript mixes both buckets' calls: {texts}"
    # A hit's download link names its recording: the other bucket's call, on its own.
    old = TestClient(create_app(require_login=False)).get(
        "/api/export", params={"key": KEY, "format": "srt", "recording_id": first})
    assert [cue.content for cue in srt.parse(old.text)] == [
        "agent: Thank you for calling the old bucket.", "customer: I want to cancel my order."]


def test_an_export_of_one_key_in_two_buckets_writes_two_files(stack, pg, tmp_path):
    from callscribe.exporting import export

    written = export(calls_between(pg, DAY, DAY), "srt", tmp_path)
    mine = [p for p in written if "two-buckets" in p.name]
    assert len(mine) == 2 and len(set(mine)) == 2, written


def test_a_day_read_a_page_at_a_time_is_the_same_calls_in_the_same_order(stack, pg, monkeypatch):
    from callscribe import exporting

    whole = [(c.recording_id, c.lines) for c in calls_between(pg, DAY, DAY)]
    monkeypatch.setattr(exporting, "PAGE", 1)  # a page ends between the key's two buckets
    assert [(c.recording_id, c.lines) for c in calls_between(pg, DAY, DAY)] == whole and len(whole) >= 2
