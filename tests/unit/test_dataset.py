"""`callscribe dataset` without services: choosing segments, merging them, cutting audio, the layout."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from minio.error import S3Error

from callscribe import dataset
from callscribe.audio import Decoded, decode
from callscribe.dataset import (
    LOW_CONFIDENCE,
    NO_CONFIDENCE,
    PII,
    SPLITS,
    TOO_LONG,
    TOO_SHORT,
    Recording,
    Seg,
    examples_of,
    split_of,
)
from callscribe.redaction import redact_channel
from callscribe.storage import CHANGED

KEY = "calls/2026/12/01/call-1.wav"


def seg(seq: int, start: float, end: float, text: str = "hello there", channel: int = 0,
        confidence: float | None = 0.9, speaker: str = "agent") -> Seg:
    return Seg(channel, seq, speaker, start, end, text, redact_channel([text])[0], confidence)


def rec(*segs: Seg, key: str = KEY) -> Recording:
    return Recording(1, "calls", key, "etag-1", list(segs))


# ---------------------------------------------------------------- splits


def test_a_recording_always_lands_in_the_same_split_and_the_shares_are_about_80_10_10():
    keys = [f"calls/2026/12/{d:02d}/call-{d:02d}{i:04d}.wav" for d in range(1, 29) for i in range(100)]
    splits = Counter(split_of(k) for k in keys)
    assert set(splits) == set(SPLITS)
    assert splits["train"] / len(keys) == pytest.approx(0.8, abs=0.02)
    assert splits["validation"] / len(keys) == pytest.approx(0.1, abs=0.02)
    assert splits["test"] / len(keys) == pytest.approx(0.1, abs=0.02)
    # "The same on every run": computed again in fresh interpreters whose str/bytes hashes differ.
    here = [split_of(k) for k in keys[:50]]
    code = ("import json, sys; from callscribe.dataset import split_of; "
            "print(json.dumps([split_of(k) for k in json.load(sys.stdin)]))")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run([sys.executable, "-c", code], input=json.dumps(keys[:50]), env=env,
                              capture_output=True, text=True, check=True)
        assert json.loads(done.stdout) == here, seed
    # One call delivered again under another day's folder or as another format: the same split.
    again = [(k, k.replace("/12/01/", "/12/02/").replace(".wav", ".mp3")) for k in keys[:300]]
    assert all(split_of(a) == split_of(b) for a, b in again)


def test_every_example_of_a_recording_is_in_its_split(tmp_path):
    store = FakeStore({KEY: _two_channel_wav(20.0)})
    r = rec(seg(0, 1.0, 3.0), seg(1, 8.0, 9.0), seg(0, 2.0, 4.0, channel=1, speaker="customer"))
    written = dataset.write_recording(store, r, tmp_path, None, 30.0)
    assert written.split == split_of(KEY) and len(written.rows) == 3
    assert {p.parts[len(tmp_path.parts)] for p in tmp_path.rglob("*.flac")} == {split_of(KEY)}


# ---------------------------------------------------------------- what is left out


def test_a_segment_with_a_masked_number_is_left_out_with_its_neighbours_and_nothing_is_merged_across():
    segs = [seg(0, 0.0, 0.9, "hello there"), seg(1, 1.0, 2.0, "my card number is"),
            seg(2, 2.2, 4.0, "4111 1111 1111 1111"), seg(3, 4.1, 5.0, "and it expires soon"),
            seg(4, 5.1, 6.0, "thank you")]
    examples, left = examples_of(rec(*segs))
    assert left == Counter({PII: 3})  # the number, and the segments either side of it
    assert [e.text for e in examples] == ["hello there", "thank you"]
    # The padding stops where the left-out segments' time begins and ends.
    assert examples[0].end == 1.0 and examples[1].start == 5.0


def test_numbers_the_analysts_masking_keeps_are_left_out_too():
    """Short groups said in pieces, a security code, spoken digits: personal data all the same."""
    for text in ("the security code is 123", "4111 then 1111 then 2222", "it is four one one one",
                 "double seven", "my card number is 4111"):
        assert dataset.holds_pii(seg(0, 0.0, 1.0, text)), text
    for text in ("no one is here", "oh I see", "thank you so much"):
        assert not dataset.holds_pii(seg(0, 0.0, 1.0, text)), text


def test_the_other_channel_is_left_out_where_it_overlaps_a_number():
    """The other party's line can carry the number as echo."""
    segs = [seg(0, 2.0, 4.0, "it is 4111 1111", channel=1, speaker="customer"),
            seg(0, 3.0, 5.0, "okay got it"), seg(1, 9.0, 10.0, "anything else")]
    examples, left = examples_of(rec(*segs))
    assert [e.text for e in examples] == ["anything else"] and left == Counter({PII: 2})


def test_spacing_alone_is_not_a_masked_number():
    s = Seg(0, 0, "agent", 0.0, 1.0, "thank  you ", "thank you", 0.9)
    assert not dataset.holds_pii(s)
    assert examples_of(rec(s))[0][0].text == "thank you"


def test_min_confidence_leaves_out_low_and_unknown_confidence():
    segs = [seg(0, 0.0, 1.0, confidence=0.95), seg(1, 5.0, 6.0, confidence=0.4), seg(2, 10.0, 11.0, confidence=None)]
    kept, left = examples_of(rec(*segs), min_confidence=0.5)
    assert [e.start for e in kept] == [0.0] and left == Counter({LOW_CONFIDENCE: 1, NO_CONFIDENCE: 1})
    kept, left = examples_of(rec(*segs))  # no threshold: confidence is not looked at
    assert len(kept) == 3 and not left


def test_too_long_and_too_short_segments_are_left_out():
    kept, left = examples_of(rec(seg(0, 0.0, 31.0), seg(1, 40.0, 40.1), seg(2, 50.0, 52.0)), max_chunk_s=30.0)
    assert [(e.start, e.end) for e in kept] == [(49.9, 52.1)]
    assert left == Counter({TOO_LONG: 1, TOO_SHORT: 1})


# ---------------------------------------------------------------- merging


def test_neighbours_of_a_channel_merge_up_to_the_limit_and_across_short_pauses_only():
    segs = [seg(0, 0.0, 10.0, "one"), seg(1, 10.5, 20.0, "two"), seg(2, 20.5, 29.0, "three"),
            seg(3, 29.5, 35.0, "four"),  # would make the example longer than 30 s
            seg(4, 38.0, 40.0, "five")]  # after a 3 s pause
    examples, left = examples_of(rec(*segs), max_chunk_s=30.0)
    assert not left
    assert [(e.text, e.segments) for e in examples] == [("one two three", 3), ("four", 1), ("five", 1)]
    first = examples[0]
    assert (first.start, first.end) == (0.0, 29.1)  # padded by PAD_S, not before the recording
    assert examples[1].start == 29.4
    assert all(e.end - e.start <= 30.0 for e in examples)


def test_channels_are_never_merged_and_keep_their_speaker():
    segs = [seg(0, 0.0, 2.0, "hi", channel=0), seg(0, 2.1, 4.0, "hello", channel=1, speaker="customer"),
            seg(1, 2.5, 4.5, "how can I help", channel=0)]
    examples, _ = examples_of(rec(*segs))
    assert [(e.channel, e.speaker, e.text) for e in examples] == [
        (0, "agent", "hi how can I help"), (1, "customer", "hello")]


def test_a_mono_calls_speakers_are_not_merged():
    segs = [seg(0, 0.0, 2.0, "hi", speaker="speaker_1"), seg(1, 2.2, 4.0, "hello", speaker="speaker_2"),
            seg(2, 4.2, 6.0, "how are you", speaker="speaker_2")]
    examples, _ = examples_of(rec(*segs))
    assert [(e.speaker, e.text) for e in examples] == [("speaker_1", "hi"), ("speaker_2", "hello how are you")]
    assert examples[0].end == 2.1 and examples[1].start == 2.1  # padded towards each other, not past


def test_padding_stays_inside_the_limit():
    (ex,), _ = examples_of(rec(seg(0, 5.0, 34.9)), max_chunk_s=30.0)
    assert ex.end - ex.start == pytest.approx(30.0)  # 29.9 s of speech, 0.05 s each side
    (ex,), _ = examples_of(rec(seg(0, 0.05, 3.0)))
    assert ex.start == 0.0 and ex.end == 3.1  # not before the recording starts


# ---------------------------------------------------------------- audio and files


def _two_channel_wav(seconds: float, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 880 * t)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class FakeStore:
    """Objects whose content has ``etag``; a read asking for another content is refused, as a
    conditional GET (If-Match) is by S3."""

    def __init__(self, objects: dict[str, bytes], etag: str = "etag-1"):
        self.objects, self.etag = objects, etag

    def get_bytes(self, uri: str, version_id: str | None = None, etag: str | None = None) -> bytes:
        if etag is not None and etag != self.etag:
            raise S3Error(None, CHANGED, "At least one of the pre-conditions you specified did not hold", uri, "r", "h")
        return self.objects[uri.split("/", 3)[3]]


def test_cut_takes_one_channel_at_16_khz():
    decoded = decode(_two_channel_wav(5.0))
    piece = dataset.cut(decoded, 1, 1.0, 2.5)
    assert piece.dtype == np.int16 and len(piece) == pytest.approx(1.5 * 16_000, abs=2)
    spectrum = np.abs(np.fft.rfft(piece.astype(np.float32)))
    assert np.argmax(spectrum) * 16_000 / len(piece) == pytest.approx(880, abs=2)  # channel 1's tone
    with pytest.raises(ValueError, match="channel 2"):
        dataset.cut(decoded, 2, 0.0, 1.0)


def test_cut_stops_at_the_end_of_the_audio():
    decoded = Decoded([np.zeros(8000, np.int16)], 8000, 1.0, "PCM_16")
    assert len(dataset.cut(decoded, 0, 0.5, 3.0)) == 8000


def test_a_recording_changed_in_the_bucket_is_skipped(tmp_path):
    written = dataset.write_recording(FakeStore({KEY: _two_channel_wav(5.0)}, etag="other"), rec(seg(0, 1.0, 2.0)),
                                      tmp_path, None, 30.0)
    assert written.skipped and "changed" in written.skipped and not written.rows
    assert not list(tmp_path.rglob("*.flac"))


def test_file_names_hold_no_split_word():
    # audiofolder assigns a file to every split whose keyword its folders hold between separators.
    ex = examples_of(rec(seg(0, 1.0, 2.0), key="calls/2026/12/01/test-dev_train.val.wav"))[0][0]
    name = dataset.example_path(ex)
    assert all(c in "0123456789abcdef-/." for c in name.removesuffix(".flac")), name


@pytest.fixture
def built(tmp_path, monkeypatch):
    keys = [f"calls/2026/12/01/call-{i}.wav" for i in range(12)]
    recs = [rec(seg(0, 1.0, 3.0, "good morning"), seg(1, 5.0, 6.0, "please hold"),
                seg(2, 10.0, 12.0, "my card is 4111 1111 1111 1111"), seg(3, 14.0, 15.0, "right"),
                seg(4, 20.0, 22.0, "thanks", confidence=0.3), seg(0, 2.0, 4.0, "hello", channel=1, speaker="customer"),
                key=k) for k in keys]
    monkeypatch.setattr(dataset, "recordings_between", lambda engine, first, last: iter(recs))
    store = FakeStore({k: _two_channel_wav(10.0) for k in keys})
    out = tmp_path / "ds"
    summary = dataset.build(None, store, date(2026, 12, 1), date(2026, 12, 1), out, min_confidence=0.5, threads=3)
    return out, keys, summary


def test_the_layout_is_audiofolder_with_nemo_manifests(built):
    out, keys, summary = built
    splits = {split_of(k) for k in keys}
    assert {p.name for p in out.iterdir() if p.is_dir()} == splits
    total = 0
    for split in splits:
        rows = [json.loads(line) for line in (out / split / "metadata.jsonl").read_text().splitlines()]
        nemo = [json.loads(line) for line in (out / f"{split}_manifest.jsonl").read_text().splitlines()]
        assert all(set(r) == {"file_name", "text", "speaker", "duration", "recording"} for r in rows)
        assert {r["recording"] for r in rows} == {k for k in keys if split_of(k) == split}
        assert [n["audio_filepath"] for n in nemo] == [f"{split}/{r['file_name']}" for r in rows]
        for r in rows:
            audio, rate = sf.read(out / split / r["file_name"])
            assert rate == 16_000 and audio.ndim == 1 and len(audio) / rate == pytest.approx(r["duration"], abs=1e-3)
        total += len(rows)
        assert summary.examples[split] == len(rows)
    assert total == 2 * len(keys)  # "good morning" and "hello"
    assert summary.left_out[PII] == 3 * len(keys) and summary.left_out[LOW_CONFIDENCE] == len(keys)
    assert json.loads((out / "summary.json").read_text())["examples"] == summary.examples
    lines = dataset.summary_lines(summary, 0.5, 30.0)
    assert "36 segments with or next to a number" in lines[4] and "12 segments below confidence 0.5" in lines[5]


def load_audiofolder(data_dir: Path, cache: Path, monkeypatch):
    """``datasets.load_dataset("audiofolder", data_dir=...)``, each split's audio column not decoded.

    datasets 4+ imports torchcodec to encode any audio, even a file path it keeps as it is, and
    torchcodec needs FFmpeg's shared libraries, which this environment does not install: where it
    cannot be imported, a stand-in lets the path through (nothing here encodes or decodes audio;
    the tests read the files with soundfile)."""
    datasets = pytest.importorskip("datasets")
    try:
        import torchcodec.encoders  # noqa: F401
    except Exception:  # not installed, or installed without FFmpeg
        encoders = types.ModuleType("torchcodec.encoders")
        encoders.AudioEncoder = None
        monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
        monkeypatch.setitem(sys.modules, "torchcodec.encoders", encoders)
    ds = datasets.load_dataset("audiofolder", data_dir=str(data_dir), cache_dir=str(cache))
    return {name: part.cast_column("audio", datasets.Audio(decode=False)) for name, part in ds.items()}


def test_hugging_face_loads_it_with_the_splits(built, tmp_path, monkeypatch):
    out, keys, summary = built
    ds = load_audiofolder(out, tmp_path / "hf-cache", monkeypatch)
    assert {name: len(part) for name, part in ds.items()} == {s: n for s, n in summary.examples.items() if n}
    for name, part in ds.items():
        assert set(part.column_names) == {"audio", "text", "speaker", "duration", "recording"}
        for row in part:
            assert row["audio"]["path"].startswith(str(out / name)) and row["audio"]["path"].endswith(".flac")
            assert split_of(row["recording"]) == name
            assert (row["text"], row["speaker"]) in (("good morning", "agent"), ("hello", "customer"))


def test_the_folder_must_be_new_or_empty(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(FileExistsError):
        dataset.build(None, FakeStore({}), date(2026, 12, 1), date(2026, 12, 1), tmp_path)


def _tone_wav(seconds: float, hz: float, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * hz * t)] * 2, axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class BucketStore(FakeStore):
    """Objects by bucket and key: one key may hold another call in each bucket."""

    def get_bytes(self, uri: str, version_id: str | None = None, etag: str | None = None) -> bytes:
        return self.objects[tuple(uri.split("/", 3)[2:])]


def test_one_key_in_two_buckets_keeps_each_calls_own_audio(tmp_path, monkeypatch):
    """Two calls under one key in two buckets (a deployment that moved bucket keeps the old one's
    rows, and the export treats them as two calls) with the same segment times: each example's
    file must hold its own call's audio, not the other bucket's written over it."""
    recs = [Recording(1, "calls-archive", KEY, "etag-1", [seg(0, 1.0, 3.0, "the old bucket")]),
            Recording(2, "calls", KEY, "etag-1", [seg(0, 1.0, 3.0, "the new bucket")])]
    monkeypatch.setattr(dataset, "recordings_between", lambda engine, first, last: iter(recs))
    store = BucketStore({("calls-archive", KEY): _tone_wav(5.0, 440), ("calls", KEY): _tone_wav(5.0, 880)})
    out = tmp_path / "ds"
    dataset.build(None, store, date(2026, 12, 1), date(2026, 12, 1), out, threads=2)
    split = split_of(KEY)
    rows = [json.loads(line) for line in (out / split / "metadata.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["the old bucket", "the new bucket"]
    assert len({r["file_name"] for r in rows}) == 2, f"both calls' examples in one file: {rows}"
    for r, hz in zip(rows, (440, 880), strict=True):
        audio, rate = sf.read(out / split / r["file_name"])
        assert np.argmax(np.abs(np.fft.rfft(audio))) * rate / len(audio) == pytest.approx(hz, abs=2), r["text"]


def test_a_build_cut_short_leaves_no_metadata_that_looks_like_a_whole_data_set(tmp_path, monkeypatch):
    """The store goes away after some recordings (or the build is killed): the examples written so far
    must not load as the data set of the range (audiofolder reads whatever metadata.jsonl holds)."""
    keys = [f"calls/2026/12/01/cut-short-{i}.wav" for i in range(12)]
    recs = [rec(seg(0, 1.0, 3.0, "good morning"), key=k) for k in keys]
    monkeypatch.setattr(dataset, "recordings_between", lambda engine, first, last: iter(recs))

    class GoingAway(FakeStore):
        def get_bytes(self, uri: str, version_id: str | None = None, etag: str | None = None) -> bytes:
            if uri.endswith(keys[-1]):
                raise ConnectionError("the store went away")
            return super().get_bytes(uri, version_id, etag)

    out = tmp_path / "ds"
    with pytest.raises(ConnectionError):
        dataset.build(None, GoingAway({k: _two_channel_wav(5.0) for k in keys}), date(2026, 12, 1),
                      date(2026, 12, 1), out, threads=1)
    assert list(out.rglob("*.flac")), "the recordings before the outage were written"
    left = [p.relative_to(out) for p in out.rglob("*.jsonl")] + [p.relative_to(out) for p in out.glob("summary.json")]
    assert not left, f"an unfinished build looks whole: {left}"
