"""`make bench` in miniature, so the benchmark code cannot rot. Figures are not judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from callscribe.dev import services

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"chunk_rtf_per_core", "chunk_rtf_per_core_wav_ulaw_stereo", "chunk_rtf_per_core_mp3",
            "worker_null_rtf", "load_segments_per_s", "load_run_segments_per_s", "discovery_100k_s",
            "discovery_rerun_s", "search_p95_ms_1m", "e2e_overhead_share"}


def test_smoke_benchmarks_produce_every_figure(tmp_path):
    profile = services.profile("bench", root=REPO / ".callscribe")
    services.wipe(profile)
    out = tmp_path / "results.json"
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
                              cwd=REPO, capture_output=True, text=True, timeout=900)
    finally:
        services.down(profile)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["results"]) == EXPECTED
    for name, fig in report["results"].items():
        assert set(fig) == {"median", "runs", "unit"}, name
        assert fig["runs"] and all(isinstance(r, float | int) and r > 0 for r in fig["runs"]), name
    assert 0 < report["results"]["e2e_overhead_share"]["median"] < 1
    assert report["machine"]["cpus"] >= 1
