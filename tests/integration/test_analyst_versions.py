"""What analysts (and data-set builds) see while the pipeline changes state:
a key uploaded again with other content, a call erased while a data set is being cut."""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from callscribe import dataset
from callscribe.config import key_hash
from callscribe.erasure import erase
from callscribe.samples import sample_dir
from callscribe.search_page import create_app
from tests.integration.helpers import load_call

pytestmark = pytest.mark.integration

PLAY_DAY, DS_DAY = date(2026, 12, 27), date(2026, 12, 28)
SEGS = [(0, "agent", 0.83, 6.38, "Thank you for calling Acme support, my name is Sarah."),
        (1, "customer", 7.83, 11.99, "Hi, I would like to cancel my account.")]


def _audio(name: str) -> bytes:
    return (sample_dir() / name).read_bytes()


def _transcribed_over_real_audio(pg, s3, key: str, day: date, audio: bytes) -> int:
    """A done call under ``key`` whose recording row carries the uploaded object's own etag."""
    s3.put_bytes(s3.uri(key), audio)
    etag, _ = s3.stat("calls", key)
    return load_call(pg, s3, key, day, SEGS, etag=etag)


def test_play_refuses_audio_that_is_no_longer_what_was_transcribed(stack, pg, s3):
    """K = A transcribed; K = B uploaded (the old transcript stays searchable until B's loads, as
    documented). Playing a hit of A must not hand out a link to B: the analyst would hear another
    call under A's transcript."""
    key = "calls/2026/12/27/review-play.wav"
    rid = _transcribed_over_real_audio(pg, s3, key, PLAY_DAY, _audio("call-0001.wav"))
    client = TestClient(create_app(require_login=False))
    assert client.post("/api/play", json={"recording_id": rid, "start": 1.0}).status_code == 200
    s3.put_bytes(s3.uri(key), _audio("call-0003.wav"))  # uploaded again with other content
    played = client.post("/api/play", json={"recording_id": rid, "start": 1.0})
    assert played.status_code == 409, played.text
    assert "url" not in played.json()
    s3.delete(s3.uri(key))  # deleted from the bucket, not yet noticed by a discovery
    assert client.post("/api/play", json={"recording_id": rid, "start": 1.0}).status_code == 409


def test_a_call_erased_while_a_data_set_is_cut_is_not_written_into_it(stack, pg, s3, tmp_path, monkeypatch):
    """The build reads its calls through one long-running cursor (a snapshot taken when it started);
    a call erased meanwhile must not become examples written after its erasure."""
    first, second = "calls/2026/12/28/review-ds-a.wav", "calls/2026/12/28/review-ds-b.wav"
    _transcribed_over_real_audio(pg, s3, first, DS_DAY, _audio("call-0001.wav"))
    _transcribed_over_real_audio(pg, s3, second, DS_DAY, _audio("call-0001.wav"))
    fetch = dataset.fetch
    erased = []

    def fetch_then_erase(store, rec):
        if rec.key == first and not erased:  # a data subject's request lands mid-build
            erase(s3, pg, second, actor="dpo@example.com")
            erased.append(second)
        return fetch(store, rec)

    monkeypatch.setattr(dataset, "fetch", fetch_then_erase)
    summary = dataset.build(pg, s3, DS_DAY, DS_DAY, tmp_path / "ds", threads=1)
    assert erased == [second]
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM recordings WHERE object_key = :k"),
                         {"k": second}).scalar_one() == 0
    written = "".join(p.read_text() for p in (tmp_path / "ds").glob("*/metadata.jsonl"))
    assert first in written
    assert second not in written, "the erased call was written into the data set after its erasure"
    # Named as erasures name an object (its key's hash): the summary and the log keep no erased key.
    assert f"key sha256 {key_hash(second)[:16]}" in summary.recordings_skipped, summary.recordings_skipped
    assert second not in json.dumps(summary.as_dict())
