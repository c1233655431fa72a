"""Labelled sample calls shipped with the package (made by scripts/make_samples.py)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


def sample_dir() -> Path:
    return Path(str(resources.files("callscribe.samples")))


def sample_files() -> list[Path]:
    return sorted(p for p in sample_dir().iterdir() if p.suffix in (".wav", ".mp3"))


def labels() -> dict[str, dict]:
    """What was said in each sample: {file name: {"channels": [{"speaker", "text"}], "duration_s"}}."""
    return json.loads((sample_dir() / "labels.json").read_text())


def distinct_copy(data: bytes, suffix: str, i: int) -> bytes:
    """Copy ``i`` of a recording as the bytes of another call: the pipeline transcribes a day's
    identical uploads once (the others are `duplicate`), so tests and benchmarks that need many
    calls from a few samples make each one differ. Copy 0 is ``data`` itself; an MP3 copy gains
    an ID3v1 tag (decoders skip it), a WAV copy one sample's lowest bit (inaudible)."""
    if i == 0:
        return data
    if suffix.lower() == ".mp3":
        return data + b"TAG" + f"callscribe copy {i}".encode().ljust(125, b"\0")
    if 2 * i > len(data) - 64:
        raise ValueError(f"too many copies ({i}) of a {len(data)}-byte recording")
    out = bytearray(data)
    out[-2 * i] ^= 1  # the low byte of a 16-bit sample near the end, or one 8-bit sample
    return bytes(out)
