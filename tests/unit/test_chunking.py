import numpy as np
import pytest
import soxr

from benchmarks.data import tiled_call
from callscribe.audio import TARGET_SR, Decoded, decode, resample
from callscribe.chunking import (
    FRAME_MS,
    ChunkingParams,
    chunk_recording,
    chunking_for,
    frame_len,
    frame_levels,
    frames_to_regions,
    pack,
    plan_regions,
    speech_frames,
)
from callscribe.samples import labels, sample_dir


def _frames(seconds: float) -> int:
    return int(round(seconds * 1000 / FRAME_MS))


def _sample(name: str) -> Decoded:
    return decode((sample_dir() / name).read_bytes(), name)


def test_regions_drop_short_blips():
    flags = np.array([0, 1, 1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    assert frames_to_regions(flags, min_frames=2) == [(1, 4), (8, 10)]


def test_short_pauses_stay_long_ones_are_cut_down_to_the_context():
    params = ChunkingParams(max_chunk_s=30, max_merge_gap_s=1.0, pad_s=0.3)
    regions = [(_frames(1), _frames(2)), (_frames(2.5), _frames(5)), (_frames(9), _frames(10))]
    spans = plan_regions(regions, np.ones(_frames(11)), params, _frames(11))
    pad = _frames(0.3)
    # The 0.5 s pause stays inside one region; the 4 s pause leaves only the context each side.
    assert spans == [(_frames(1) - pad, _frames(5) + pad), (_frames(9) - pad, _frames(10) + pad)]


def test_context_never_reaches_into_the_previous_region_or_past_the_channel():
    params = ChunkingParams(max_chunk_s=30, max_merge_gap_s=0.0, pad_s=0.3)
    regions = [(0, _frames(1)), (_frames(1.3), _frames(2))]
    spans = plan_regions(regions, np.ones(_frames(2.1)), params, _frames(2.1))
    assert spans[0][0] == 0 and spans[-1][1] == _frames(2.1)
    assert spans[0][1] <= spans[1][0]


def test_long_speech_is_cut_at_the_quietest_frame_near_the_limit_and_the_pieces_touch():
    params = ChunkingParams(max_chunk_s=30, pad_s=0.3, cut_search_s=5.0)
    n = _frames(95)
    energy = np.ones(n)
    early, late = _frames(10), _frames(27)
    energy[early] = 0.0  # quieter, but far before the limit: a chunk would be a third full
    energy[late] = 0.1
    spans = plan_regions([(_frames(0.3), n - _frames(0.3))], energy, params, n)
    assert spans[0][1] == late  # cut near the limit, at the quietest frame of that window
    assert all(b - a <= _frames(30) for a, b in spans)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # no gap, no overlap at cuts
    assert spans[0][0] == 0 and spans[-1][1] == n  # outer edges keep their context


def test_packing_fills_chunks_in_order_up_to_the_limit():
    spans = [(0, 10), (20, 35), (50, 60), (70, 95), (100, 101)]
    assert pack(spans, 30) == [[(0, 10), (20, 35)], [(50, 60)], [(70, 95), (100, 101)]]
    assert pack(spans, 30, together=False) == [[s] for s in spans]


@pytest.mark.parametrize("name", sorted(labels()))
def test_no_detected_speech_is_lost_or_doubled_between_chunks(name):
    decoded = _sample(name)
    params = ChunkingParams()
    pairs = chunk_recording(decoded, params)
    for ch, x in enumerate(decoded.channels):
        mine = [c for c, _ in pairs if c.channel == ch]
        assert mine, f"no speech found on channel {ch}"
        covered = np.zeros(len(x), dtype=np.int8)
        for c in mine:
            assert c.duration_s <= params.max_chunk_s and c.rate == decoded.source_rate
            for a, b in c.regions:
                covered[a:b] += 1
        assert covered.max() == 1  # no sample in two regions
        size = frame_len(decoded.source_rate)
        flags = speech_frames(x, decoded.source_rate)
        for a, b in frames_to_regions(flags, max(1, int(params.min_speech_s * 1000 / FRAME_MS))):
            assert covered[a * size : b * size].all(), f"speech {a * FRAME_MS} ms .. {b * FRAME_MS} ms lost"
        starts = [c.start for c in mine]
        assert starts == sorted(starts) and all(a.end <= b.start for a, b in zip(mine, mine[1:], strict=False))


def test_a_call_channel_packs_its_turns_into_one_chunk():
    decoded = _sample("call-0001.wav")  # 43 s, four turns a channel, pauses of 5 s and more
    packed = chunk_recording(decoded)
    apart = chunk_recording(decoded, ChunkingParams(pack=False))
    for ch in range(2):
        assert len([c for c, _ in packed if c.channel == ch]) == 1
        assert len([c for c, _ in apart if c.channel == ch]) >= 4
        one = next(c for c, _ in packed if c.channel == ch)
        assert len(one.regions) >= 4
        # Long pauses were cut out: the chunk is far shorter than the time it covers.
        assert one.duration_s < 0.7 * (one.end_s - one.start_s)


def test_long_calls_give_long_chunks():
    audio = tiled_call(600, stereo=True)  # ten minutes of turns
    x = [(audio[:, c] * 32767).astype(np.int16) for c in range(2)]
    lengths = [c.duration_s for c, _ in chunk_recording(Decoded(x, 8000, 600.0, "PCM_16"))]
    assert np.percentile(lengths, 50) >= 25 and max(lengths) <= 30


def test_each_region_is_resampled_in_place_and_the_map_says_where():
    decoded = _sample("call-0001.wav")
    whole = [resample(x, decoded.source_rate) for x in decoded.channels]
    for c, audio in chunk_recording(decoded):
        assert audio.dtype == np.int16 and len(c.region_map()) == len(c.regions)
        assert abs(len(audio) - c.duration_s * TARGET_SR) <= len(c.regions)
        for (in_chunk, start, end) in c.region_map():
            a, n = int(round(in_chunk * TARGET_SR)), int(round((end - start) * TARGET_SR))
            ref = whole[c.channel][int(round(start * TARGET_SR)) :][:n].astype(np.float32)
            got = audio[a : a + n].astype(np.float32)
            mid = slice(400, n - 400)  # resampling a piece alone matches the whole, away from its edges
            assert np.max(np.abs(got[mid] - ref[mid])) <= 0.01 * 32768


@pytest.mark.parametrize("rate", [11025, 44100])
def test_rates_the_vad_does_not_take_are_chunked_at_16k(rate):
    src = _sample(sorted(labels())[0])
    up = Decoded([soxr.resample(x, src.source_rate, rate) for x in src.channels], rate, src.duration_s, "PCM_16")
    direct = chunk_recording(src)
    converted = chunk_recording(up)
    assert converted and all(c.rate == TARGET_SR and len(a) == sum(b - e for e, b in c.regions)
                             for c, a in converted)
    # The same speech is found, give or take a frame or two at each edge.
    assert sum(c.duration_s for c, _ in converted) == pytest.approx(sum(c.duration_s for c, _ in direct), rel=0.05)


def test_silence_gives_no_chunks():
    silent = Decoded([np.zeros(8000 * 5, np.int16)], 8000, 5.0, "PCM_16")
    assert chunk_recording(silent) == []


def test_each_engine_gets_its_chunk_length(monkeypatch):
    assert chunking_for("whisper-tiny").max_chunk_s == 25.0 and chunking_for("granite-nar-native").max_chunk_s == 30
    monkeypatch.setenv("CALLSCRIBE_CHUNK_S", "20")
    assert chunking_for("granite-nar").max_chunk_s == 20.0
    for bad in ("0.5", "600"):
        monkeypatch.setenv("CALLSCRIBE_CHUNK_S", bad)
        with pytest.raises(ValueError, match="CALLSCRIBE_CHUNK_S"):
            chunking_for("whisper-tiny")


def test_frame_levels_are_half_the_swing_and_do_not_wrap():
    frames = np.array([[0, -32768, 5], [-3, 2, 1], [32767, 0, -32767], [900, 1000, 1100]], np.int16)
    assert frame_levels(frames).tolist() == [16386, 2, 32767, 100]


@pytest.mark.parametrize("offset", [2000, 4000, 8000])
def test_a_dc_offset_does_not_hide_the_speech(offset):
    """A recorder's constant offset lifts every frame's peak alike: the noise floor that spares
    the VAD its quiet frames must not rise above the speech with it."""
    decoded = _sample("call-0001.wav")

    def speech_s(d: Decoded) -> list[float]:
        found = [0.0] * d.n_channels
        for chunk, _ in chunk_recording(d, at_16k=False):
            found[chunk.channel] += chunk.duration_s
        return found

    lifted = [np.clip(x.astype(np.int32) + offset, -32768, 32767).astype(np.int16) for x in decoded.channels]
    clean, shifted = speech_s(decoded), speech_s(Decoded(lifted, decoded.source_rate, decoded.duration_s, "PCM_16"))
    assert min(clean) > 10
    for a, b in zip(clean, shifted, strict=True):
        assert b == pytest.approx(a, abs=1.0)


def test_speech_frames_are_one_per_30_ms_at_the_source_rate():
    for rate in (8000, 16000, 48000):
        assert speech_frames(np.zeros(rate * 2, np.int16), rate).shape == (2000 // FRAME_MS,)


def test_a_channel_that_fits_in_one_chunk_goes_whole():
    decoded = _sample("call-0002.mp3")  # 20 s, mono
    [(chunk, audio)] = chunk_recording(decoded, ChunkingParams(max_chunk_s=25))
    assert chunk.regions == ((0, len(decoded.channels[0])),)
    assert len(audio) == pytest.approx(decoded.duration_s * TARGET_SR, abs=2)
    # Longer than a chunk: packed speech, the silence at the ends left out.
    [(short, _)] = chunk_recording(decoded, ChunkingParams(max_chunk_s=18))
    assert short.start > 0 and short.duration_s < decoded.duration_s


def test_packs_of_8k_calls_stay_at_8k_and_resample_to_what_the_engine_gets():
    decoded = _sample("call-0001.wav")
    at_16k = chunk_recording(decoded)
    stored = chunk_recording(decoded, at_16k=False)
    assert [c for c, _ in stored] == [c for c, _ in at_16k]
    for (c, low), (_, high) in zip(stored, at_16k, strict=True):
        assert len(low) == sum(b - a for a, b in c.regions)  # 8 kHz: half the samples to encode and store
        assert np.array_equal(resample(low, 8000), high)  # what the worker hands the engine
    up = Decoded([soxr.resample(x, 8000, 48000) for x in decoded.channels], 48000, decoded.duration_s, "PCM_16")
    assert all(len(a) * 3 <= sum(b - e for e, b in c.regions) + 3 for c, a in chunk_recording(up, at_16k=False))


def test_the_vad_gives_the_same_frames_through_its_public_call(monkeypatch):
    from callscribe import chunking
    from callscribe.chunking import speech_frames

    x = (tiled_call(20, False)[:, 0] * 32767).astype(np.int16)
    direct = speech_frames(x, 8000)
    monkeypatch.setattr(chunking, "_VAD_EXTENSION", None)  # a build without the extension module exposed
    assert direct.any() and np.array_equal(speech_frames(x, 8000), direct)


def test_granite_chunks_stay_within_the_editors_positions(monkeypatch):
    """The editor holds 4096 positions: audio at 10 Hz plus 2n+1 slots for n draft tokens. A 240 s
    chunk at 4 tokens/s needs 2400 + 1921; past them the text is unreliable, with no error."""
    monkeypatch.setenv("CALLSCRIBE_CHUNK_S", "200")
    assert chunking_for("whisper-tiny").max_chunk_s == 200.0
    for name in ("granite-nar", "granite-nar-native"):
        with pytest.raises(ValueError, match="CALLSCRIBE_CHUNK_S=200.*120"):
            chunking_for(name)
    monkeypatch.setenv("CALLSCRIBE_CHUNK_S", "120")
    assert chunking_for("granite-nar-native").max_chunk_s == 120.0
