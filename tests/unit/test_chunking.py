import numpy as np
import pytest
import soxr

from callscribe.audio import TARGET_SR, Decoded, decode, resample
from callscribe.chunking import (
    FRAME_MS,
    ChunkingParams,
    chunk_recording,
    frame_peaks,
    frames_to_regions,
    plan_chunks,
    speech_frames,
)
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
    pairs = chunk_recording(decoded)
    assert pairs
    for ch in range(decoded.n_channels):
        mine = [(c, a) for c, a in pairs if c.channel == ch]
        assert mine, f"no speech found on channel {ch}"
        assert all(c.duration_s <= 30.0 and c.rate == decoded.source_rate for c, _ in mine)
        assert all(a.end <= b.start for (a, _), (b, _) in zip(mine, mine[1:], strict=False))  # ordered
        x = decoded.channels[ch]
        inside = np.zeros(len(x), dtype=bool)
        for c, _ in mine:
            inside[c.start : c.end] = True
        loud = np.abs(x.astype(np.float32)) > 0.1 * 32768
        assert inside[loud].mean() > 0.97  # nearly all loud samples are in some chunk
    speech_s = sum(c.duration_s for c, _ in pairs)
    assert speech_s < decoded.duration_s * decoded.n_channels  # silence was left out


def test_each_chunk_carries_its_own_audio_resampled_to_16k():
    name = sorted(labels())[0]
    decoded = decode((sample_dir() / name).read_bytes(), name)
    whole = [resample(x, decoded.source_rate) for x in decoded.channels]
    for c, audio in chunk_recording(decoded):
        assert audio.dtype == np.int16 and abs(len(audio) - c.duration_s * TARGET_SR) <= 1
        # Resampling the chunk alone matches resampling the whole channel, away from its edges.
        a = int(round(c.start_s * TARGET_SR))
        ref = whole[c.channel][a : a + len(audio)].astype(np.float32)
        mid = slice(400, len(audio) - 400)
        assert np.max(np.abs(audio[mid].astype(np.float32) - ref[mid])) <= 0.01 * 32768


@pytest.mark.parametrize("rate", [11025, 44100])
def test_rates_the_vad_does_not_take_are_chunked_at_16k(rate):
    name = sorted(labels())[0]
    src = decode((sample_dir() / name).read_bytes(), name)
    up = Decoded([soxr.resample(x, src.source_rate, rate) for x in src.channels], rate, src.duration_s, "PCM_16")
    direct = chunk_recording(src)
    converted = chunk_recording(up)
    assert converted and all(c.rate == TARGET_SR and len(a) == c.end - c.start for c, a in converted)
    # The same speech is found, give or take a frame or two at each edge.
    assert sum(c.duration_s for c, _ in converted) == pytest.approx(sum(c.duration_s for c, _ in direct), rel=0.05)


def test_silence_gives_no_chunks():
    silent = Decoded([np.zeros(8000 * 5, np.int16)], 8000, 5.0, "PCM_16")
    assert chunk_recording(silent) == []


def test_frame_peaks_of_full_scale_negative_samples_do_not_wrap():
    frames = np.array([[0, -32768, 5], [-3, 2, 1], [32767, 0, -32767]], np.int16)
    assert frame_peaks(frames).tolist() == [32768, 3, 32767]


def test_speech_frames_are_one_per_30_ms_at_the_source_rate():
    for rate in (8000, 16000, 48000):
        assert speech_frames(np.zeros(rate * 2, np.int16), rate).shape == (2000 // FRAME_MS,)
