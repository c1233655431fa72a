import numpy as np
import pytest

from callscribe.audio import TARGET_SR, decode
from callscribe.chunking import FRAME_MS, ChunkingParams, chunk_recording, frames_to_regions, plan_chunks
from callscribe.samples import labels, sample_dir


def test_regions_drop_short_blips():
    flags = np.array([0, 1, 1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    assert frames_to_regions(flags, min_frames=2) == [(1, 4), (8, 10)]


def _frames(seconds: float) -> int:
    return int(seconds * 1000 / FRAME_MS)


def test_close_regions_merge_far_ones_split():
    params = ChunkingParams(max_chunk_s=30, max_merge_gap_s=1.0, pad_s=0)
    regions = [(0, _frames(2)), (_frames(2.5), _frames(5)), (_frames(9), _frames(10))]
    chunks = plan_chunks(regions, np.ones(_frames(11)), params, _frames(11))
    assert chunks == [(0, _frames(5)), (_frames(9), _frames(10))]


def test_long_speech_is_cut_at_the_quietest_frame_and_never_exceeds_the_limit():
    params = ChunkingParams(max_chunk_s=30, pad_s=0.3)
    n = _frames(95)
    energy = np.ones(n)
    quiet = _frames(22)
    energy[quiet] = 0.0
    chunks = plan_chunks([(0, n)], energy, params, n)
    assert chunks[0][1] - _frames(0.3) == quiet  # first cut at the quiet frame (plus padding)
    assert all((b - a) * FRAME_MS / 1000 <= 30 for a, b in chunks)
    assert chunks[0][0] == 0 and chunks[-1][1] == n


@pytest.mark.parametrize("name", sorted(labels()))
def test_sample_chunks_are_bounded_ordered_and_cover_the_speech(name):
    decoded = decode((sample_dir() / name).read_bytes(), name)
    assert decoded.n_channels == len(labels()[name]["channels"])
    chunks = chunk_recording(decoded)
    assert chunks
    for ch in range(decoded.n_channels):
        mine = [c for c in chunks if c.channel == ch]
        assert mine, f"no speech found on channel {ch}"
        assert all(c.duration_s <= 30.0 for c in mine)
        assert all(a.end <= b.start for a, b in zip(mine, mine[1:], strict=False))  # ordered, no overlap
        x = decoded.channels[ch]
        inside = np.zeros(len(x), dtype=bool)
        for c in mine:
            inside[c.start : c.end] = True
        loud = np.abs(x) > 0.1
        assert inside[loud].mean() > 0.97  # nearly all loud samples are in some chunk
    speech_s = sum(c.duration_s for c in chunks)
    assert speech_s < decoded.duration_s * decoded.n_channels  # silence was left out


def test_silence_gives_no_chunks():
    from callscribe.audio import Decoded

    silent = Decoded([np.zeros(TARGET_SR * 5, np.float32)], 8000, 5.0, "PCM_16")
    assert chunk_recording(silent) == []
