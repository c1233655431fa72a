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
