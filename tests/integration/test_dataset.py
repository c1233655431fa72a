"""`callscribe dataset` on transcribed calls: the sample calls through the real worker and loader
(whisper-tiny, with its confidences), plus hand-made transcripts over real audio for the choices
(a dictated number, a low and a missing confidence, a recording that is not done)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import pytest
import soundfile as sf
import sqlalchemy as sa

from callscribe.dataset import SPLITS, split_of
from callscribe.loading import load_shards
from callscribe.samples import sample_dir
from tests.integration.helpers import load_call, shards_for, upload_day
from tests.unit.test_dataset import load_audiofolder

pytestmark = pytest.mark.integration

PIPELINE_DAY, HAND_DAY, NOT_DONE_DAY = date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)
HAND_KEY = "calls/2026/12/02/dataset-hand.wav"
NOT_DONE_KEY = "calls/2026/12/03/dataset-failed.wav"
# Over call-0001.wav's turns: (channel, speaker, start, end, text, word starts, confidence).
HAND = [
    (0, "agent", 0.83, 6.38, "Thank you for calling Acme support, my name is Sarah.", None, 0.9),
    (1, "customer", 7.83, 11.99, "Hi, I would like to cancel my account.", None, 0.8),
    (0, "agent", 13.13, 17.82, "Can you give me your account number please?", None, 0.3),
    (1, "customer", 19.27, 21.26, "Sure, it is four five six seven eight.", None, 0.95),  # masked: left out,
    # and with it its neighbour on the channel, the customer's first segment
    (0, "agent", 22.5, 26.0, "Thank you.", None, None),  # an engine without confidences
]
CLI = [sys.executable, "-m", "callscribe.cli", "dataset", "--from", "2026-12-01",
       "--to", "2026-12-03"]


def _real_etag(pg, s3, key: str) -> None:
    """load_call registers a made-up etag; the data set wants the object's own."""
    etag, _ = s3.stat("calls", key)
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET etag = :e WHERE object_key = :k"), {"e": etag, "k": key})


@pytest.fixture(scope="module")
def calls(pg, s3) -> list[str]:
    upload_day(s3, PIPELINE_DAY)
    _, shards = shards_for(s3, pg, PIPELINE_DAY, "dataset-run")
    load_shards(s3, pg, shards)
    audio = (sample_dir() / "call-0001.wav").read_bytes()
    for key, day in ((HAND_KEY, HAND_DAY), (NOT_DONE_KEY, NOT_DONE_DAY)):
        s3.put_bytes(s3.uri(key), audio)
        load_call(pg, s3, key, day, HAND)
        _real_etag(pg, s3, key)
    with pg.begin() as c:  # transcribed once, then failed on a later reprocess: not used
        c.execute(sa.text("UPDATE recordings SET status = 'failed' WHERE object_key = :k"), {"k": NOT_DONE_KEY})
        keys = c.execute(sa.text("SELECT object_key FROM recordings WHERE call_date = :d AND status = 'done' "
                                 "ORDER BY object_key"), {"d": PIPELINE_DAY}).scalars().all()
    assert len(keys) == 3
    return [*keys, HAND_KEY]


def _rows(out) -> dict[str, list[dict]]:
    return {s: [json.loads(line) for line in (out / s / "metadata.jsonl").read_text().splitlines()]
            for s in SPLITS if (out / s / "metadata.jsonl").exists()}


def test_the_engine_confidence_reaches_the_database(pg, calls):
    with pg.connect() as c:
        got = c.execute(sa.text("SELECT s.confidence FROM segments AS s JOIN recordings AS r ON r.id = s.recording_id "
                                "WHERE r.call_date = :d"), {"d": PIPELINE_DAY}).scalars().all()
    assert got and all(v is not None and 0 < v <= 1 for v in got)


KEPT = [HAND[i] for i in (0, 2, 4)]  # the agent's: the customer's are the number and its neighbour


def test_a_data_set_of_the_calls(pg, calls, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    run = subprocess.run([*CLI, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train" in run.stdout and "next to a number" in run.stdout
    with pg.connect() as c:  # the copy left a trace
        assert c.execute(sa.text("SELECT count(*) FROM access_log WHERE action = 'dataset' AND detail LIKE :d"),
                         {"d": f"%{out.resolve()}%"}).scalar_one() == 1
    rows = _rows(out)
    seen = {r["recording"] for split_rows in rows.values() for r in split_rows}
    assert seen == set(calls)  # the failed recording is not used
    for split, split_rows in rows.items():
        nemo = [json.loads(line) for line in (out / f"{split}_manifest.jsonl").read_text().splitlines()]
        assert len(nemo) == len(split_rows)
        for r, n in zip(split_rows, nemo, strict=True):
            assert split_of(r["recording"]) == split  # by recording, never by example
            audio, rate = sf.read(out / split / r["file_name"])
            assert rate == 16_000 and audio.ndim == 1
            assert len(audio) / rate == pytest.approx(r["duration"], abs=1e-3) and 0.2 < r["duration"] <= 30.2
            assert n["audio_filepath"] == f"{split}/{r['file_name']}" and n["text"] == r["text"]
            assert (out / n["audio_filepath"]).exists()
    hand = [r for r in rows[split_of(HAND_KEY)] if r["recording"] == HAND_KEY]
    assert [r["text"] for r in hand] == [s[4] for s in KEPT]
    # Each example is its segment with up to 0.1 s either side.
    assert [r["duration"] for r in hand] == pytest.approx([s[3] - s[2] + 0.2 for s in KEPT], abs=0.002)
    whole = json.dumps(rows)
    assert "four five six" not in whole and "[redacted]" not in whole
    summary = json.loads((out / "summary.json").read_text())
    assert summary["left_out"]["pii"] >= 1
    assert sum(summary["examples"].values()) == sum(len(v) for v in rows.values())

    ds = load_audiofolder(out, tmp_path / "hf-cache", monkeypatch)
    assert {name: len(part) for name, part in ds.items()} == {s: len(v) for s, v in rows.items()}
    for name, part in ds.items():
        assert sorted(part["text"]) == sorted(r["text"] for r in rows[name])
        assert all(p["path"].startswith(str(out / name)) for p in part["audio"])


def test_min_confidence_leaves_out_unsure_and_unknown_segments(pg, calls, tmp_path):
    out = tmp_path / "ds"
    run = subprocess.run([*CLI, "--out", str(out), "--min-confidence", "0.5"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "below confidence 0.5" in run.stdout
    hand = [r["text"] for r in _rows(out)[split_of(HAND_KEY)] if r["recording"] == HAND_KEY]
    assert hand == [HAND[0][4]]
    summary = json.loads((out / "summary.json").read_text())
    with pg.connect() as c:
        low = c.execute(sa.text(
            "SELECT count(*) FROM segments AS s JOIN recordings AS r ON r.id = s.recording_id "
            "WHERE r.status = 'done' AND r.call_date BETWEEN '2026-12-01' AND '2026-12-03' AND s.confidence < 0.5"
        )).scalar_one()
    # Each low one is counted once, as low or (checked first) as near a number.
    assert 1 <= summary["left_out"]["low_confidence"] <= low
    assert summary["left_out"]["no_confidence"] == 1


def test_the_folder_must_be_new_or_empty(calls, tmp_path):
    (tmp_path / "something").write_text("")
    run = subprocess.run([*CLI, "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "not empty" in run.stderr


def test_a_call_replaced_between_the_check_and_the_download_is_not_taken(stack, s3):
    """The object is replaced right after its etag is read: the audio fetched must still be
    the transcribed content, or nothing (a race the check-then-download order left open)."""
    from callscribe.dataset import Recording, fetch
    from callscribe.samples import sample_files

    first, second = sample_files()[:2]
    key = "calls/2031/05/02/replaced-mid-fetch.wav"
    s3.put_bytes(s3.uri(key), first.read_bytes())
    etag, _ = s3.stat(s3.bucket, key)

    class Replacing:
        """The store, with the object replaced after whatever first asks about it."""

        def __init__(self, store):
            self.store, self.replaced = store, False

        def __getattr__(self, name):
            call = getattr(self.store, name)

            def replaced_after(*args, **kwargs):
                if self.replaced:
                    return call(*args, **kwargs)
                self.replaced = True
                if name == "stat":
                    out = call(*args, **kwargs)
                    s3.put_bytes(s3.uri(key), second.read_bytes())
                    return out
                s3.put_bytes(s3.uri(key), second.read_bytes())
                return call(*args, **kwargs)

            return replaced_after

    got = fetch(Replacing(s3), Recording(1, s3.bucket, key, etag))
    assert isinstance(got, str) and "changed" in got, got


ERASED_DAY = date(2100, 1, 6)


@pytest.mark.parametrize("delete_audio", [False, True], ids=["audio-kept", "audio-deleted"])
def test_a_call_erased_while_the_data_set_is_built_is_not_written(stack, pg, s3, tmp_path, delete_audio):
    """The build reads its calls at its start; a call erased after that, before its audio is cut,
    goes into no file: neither its FLAC nor its text, nor its key (summary.json named it, as a
    recording not readable in the bucket, when the erasure deleted its audio)."""
    import uuid

    from callscribe.config import key_hash
    from callscribe.dataset import NO_LONGER_DONE, build
    from callscribe.erasure import erase

    audio = (sample_dir() / "call-0001.wav").read_bytes()
    run = uuid.uuid4().hex[:8]
    keys = [f"calls/2100/01/06/erased-mid-build-{run}-{n}.wav" for n in "abc"]
    for key in keys:
        s3.put_bytes(s3.uri(key), audio)
        load_call(pg, s3, key, ERASED_DAY, HAND)
        _real_etag(pg, s3, key)

    class ErasingOnFirstRead:
        """The store, with the last call erased once the first one's audio is read."""

        def __init__(self, store):
            self.store, self.erased = store, False

        def __getattr__(self, name):
            return getattr(self.store, name)

        def get_bytes(self, uri, *args, **kwargs):
            if not self.erased:
                self.erased = True
                erase(self.store, pg, keys[-1], actor="dpo@example.com", delete_audio=delete_audio)
            return self.store.get_bytes(uri, *args, **kwargs)

    out = tmp_path / "ds"
    summary = build(pg, ErasingOnFirstRead(s3), ERASED_DAY, ERASED_DAY, out, threads=1)
    rows = [r for split_rows in _rows(out).values() for r in split_rows]
    assert {r["recording"] for r in rows if run in r["recording"]} == set(keys[:2])
    # Named as erasures name objects, by its key's hash: the key of an erased call is not written either.
    assert summary.recordings_skipped.get(f"key sha256 {key_hash(keys[-1])[:16]}") == NO_LONGER_DONE
    assert keys[-1] not in (out / "summary.json").read_text()
