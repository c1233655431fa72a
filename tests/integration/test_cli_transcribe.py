"""`callscribe transcribe` on local files: the pipeline's own decode, chunk, engine and stitch path."""

from __future__ import annotations

import json
import subprocess
import sys

from callscribe.dev.evaluation import wer
from callscribe.samples import labels, sample_dir


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callscribe.cli", *args], capture_output=True, text=True)


def test_json_lines_per_file_with_channels_and_segments(tmp_path):
    files = [sample_dir() / "call-0001.wav", sample_dir() / "call-0003.wav"]
    out = _run("transcribe", "--json", *map(str, files))
    assert out.returncode == 0, out.stderr
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [o["file"] for o in objs] == [str(f) for f in files]
    stereo, mono = objs
    assert stereo["engine"] == "whisper-tiny"
    assert abs(stereo["duration_s"] - labels()["call-0001.wav"]["duration_s"]) < 0.05
    assert [c["speaker"] for c in stereo["channels"]] == ["agent", "customer"]
    assert [c["speaker"] for c in mono["channels"]] == ["mixed"]
    for obj in objs:
        lab = labels()[obj["file"].rsplit("/", 1)[1]]
        for ch, ref in zip(obj["channels"], lab["channels"], strict=True):
            assert wer(ref["text"], ch["text"]) <= 0.35
            starts = [s["start"] for s in ch["segments"]]
            assert starts == sorted(starts)
            assert all(s["start"] <= s["end"] <= obj["duration_s"] + 0.01 for s in ch["segments"])


def test_bad_file_gives_a_clear_error_and_exit_code(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"definitely not audio")
    out = _run("transcribe", str(bad))
    assert out.returncode == 1
    assert "bad.wav" in out.stderr and "cannot decode" in out.stderr


def test_bench_reports_speed_accuracy_and_batches(tmp_path):
    out = _run("bench", "--json", "--batch-audio-s", "60")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["engine"] == "whisper-tiny" and r["files"] == len(labels())
    assert r["speech_audio_s"] <= r["recording_audio_s"] * 2  # stereo counts both channels
    assert r["rtfx_e2e"] > 0 and r["rtfx_model"] > 0 and r["model_s"] <= r["e2e_s"]
    assert 0 <= r["wer"] <= 0.3
    assert r["batches"] >= 2 and 0 < r["batch_fill"] <= 1  # 60 s budget: several batches
    assert r["peak_mem_bytes"] > 0
    assert {f["file"] for f in r["per_file"]} == set(labels())
    # The table of the same figures, from a labelled folder of one of the samples (--dir): the engine's
    # speed and accuracy on all of them are the JSON's, checked above.
    (tmp_path / "call-0003.wav").write_bytes((sample_dir() / "call-0003.wav").read_bytes())
    (tmp_path / "labels.json").write_text(json.dumps({"call-0003.wav": labels()["call-0003.wav"]}))
    table = _run("bench", "--batch-audio-s", "60", "--dir", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert "RTFx end to end" in table.stdout and "WER" in table.stdout
    assert next(line for line in table.stdout.splitlines() if line.startswith("WER")).endswith("%")  # labels read


def test_each_turn_of_the_stereo_call_starts_its_own_segment_on_time():
    """A channel's turns are packed into one chunk; the text still comes back turn by turn."""
    out = _run("transcribe", "--json", str(sample_dir() / "call-0001.wav"))
    assert out.returncode == 0, out.stderr
    channels = json.loads(out.stdout)["channels"]
    turns = labels()["call-0001.wav"]["turns"]
    for ch, channel in enumerate(channels):
        mine = [t for t in turns if t["channel"] == ch]
        segs = channel["segments"]
        for turn, after in zip(mine, [*mine[1:], None], strict=True):
            first = next(s for s in segs if s["end"] > turn["start_s"])
            assert abs(first["start"] - turn["start_s"]) <= 0.3, (turn, first)  # its first word's start
            if after is not None:  # nothing runs on through the silence to the channel's next turn
                assert not any(s["start"] < turn["end_s"] and s["end"] > after["start_s"] for s in segs)
