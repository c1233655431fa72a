"""`callscribe transcribe` on local files: the pipeline's own decode, chunk, engine and stitch path."""

from __future__ import annotations

import json
import subprocess
import sys

from callscribe.samples import labels, sample_dir
from tests.textnorm import wer


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
