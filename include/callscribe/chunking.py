"""Split a recording's channels into chunks of packed speech, each at most the engine's target (25-30 s).

Each channel is chunked on its own (agent and customer on separate channels). Voice
activity comes from WebRTC's VAD. Speech regions separated by a short pause are joined
with the pause kept; longer pauses are cut out, leaving only ``pad_s`` of context on each
side. Consecutive regions are then packed into one chunk up to the target length, so a
GPU batch holds speech rather than padding and per-item overhead, and the model hears a
turn with the turns before it.

A chunk is its audio plus the map of its regions: where each region sits in the chunk
and in the recording. Recognised words are put back in place through that map, so no
segment ever spans a pause that was cut out (see transcription.place).

A channel no longer than one chunk is sent whole. A region longer than a chunk is cut at
its quietest frame shortly before the limit, not at the limit, so a cut rarely falls inside
a word; the two sides of a cut touch, so no sample of speech is lost or heard twice.

The VAD runs on the source samples when their rate is one it takes (8, 16, 32, 48 kHz),
and only the regions are resampled to 16 kHz: in a two-party call each channel is about
half silence, so this resamples half as much and runs the VAD on half the samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import webrtcvad

from callscribe.audio import TARGET_SR, Decoded, resample
from callscribe.diarization import DEFAULT_DIARIZATION, Diarization, DiarizationParams, diarize

FRAME_MS = 30
VAD_RATES = (8000, 16000, 32000, 48000)


@dataclass(frozen=True)
class ChunkingParams:
    max_chunk_s: float = 30.0  # the target: a chunk's audio (regions with their context) at most
    max_merge_gap_s: float = 1.0  # a pause up to this long stays whole inside a region; longer ones are cut out
    pad_s: float = 0.4  # context kept before and after each region (measured: docs/benchmarks.md)
    pack: bool = True  # several regions per chunk (or the whole channel); False: one chunk per region
    cut_search_s: float = 5.0  # a too-long region is cut at its quietest frame in this window before the limit
    vad_aggressiveness: int = 2
    min_speech_s: float = 0.12  # shorter blips are noise
    # Mono recordings only: find who speaks when (callscribe.diarization) and keep every chunk
    # to one speaker; at most ``speakers`` voices (the hint; a call has two parties).
    diarize: bool = False
    speakers: int = 2


DEFAULT_CHUNKING = ChunkingParams()


def chunking_for(engine: str | None) -> ChunkingParams:
    """The chunking an engine wants: its chunk length (engines.chunk_seconds), defaults otherwise."""
    from callscribe.engines import chunk_seconds

    return replace(DEFAULT_CHUNKING, max_chunk_s=chunk_seconds(engine))


@dataclass(frozen=True)
class Chunk:
    channel: int
    index: int  # position among the channel's chunks
    rate: int  # the samples chunked: the source rate, or 16 kHz for rates the VAD does not take
    regions: tuple[tuple[int, int], ...]  # (start, end) sample offsets in the channel at ``rate``, in order
    speaker: int | None = None  # diarized mono recordings: the chunk's one speaker (0 speaks first)

    @property
    def start(self) -> int:
        return self.regions[0][0]

    @property
    def end(self) -> int:
        return self.regions[-1][1]

    @property
    def start_s(self) -> float:
        return self.start / self.rate

    @property
    def end_s(self) -> float:
        return self.end / self.rate

    @property
    def duration_s(self) -> float:
        """Seconds of audio in the chunk: its regions, without the pauses cut out between them."""
        return sum(b - a for a, b in self.regions) / self.rate

    def region_map(self) -> list[tuple[float, float, float]]:
        """Per region: (start in the chunk's audio, start in the recording, end in the recording), seconds.

        The chunk's audio is its regions back to back, so a region starts where the ones
        before it add up to.
        """
        out, offset = [], 0.0
        for a, b in self.regions:
            out.append((offset, a / self.rate, b / self.rate))
            offset += (b - a) / self.rate
        return out


def frame_len(rate: int) -> int:
    return rate * FRAME_MS // 1000


def _frames(x: np.ndarray, rate: int) -> np.ndarray:
    """The channel's whole 30 ms frames, one per row (a view, no copy)."""
    size = frame_len(rate)
    n = len(x) // size
    return x[: n * size].reshape(n, size)


def frame_levels(frames: np.ndarray) -> np.ndarray:
    """Each int16 frame's level: half its peak-to-peak swing. Unlike the peak magnitude, a
    recorder's constant (DC) offset does not lift it, and in int32 nothing wraps at -32768."""
    return (frames.max(axis=1).astype(np.int32) - frames.min(axis=1).astype(np.int32)) // 2


# webrtcvad's C extension, called directly per frame when this build exposes it.
_VAD_EXTENSION = getattr(webrtcvad, "_webrtcvad", None)


def speech_frames(x: np.ndarray, rate: int, aggressiveness: int = 2) -> np.ndarray:
    """A bool per 30 ms frame of an int16 channel: does it hold speech?"""
    frames = _frames(x, rate)
    n = len(frames)
    if n == 0:
        return np.zeros(0, dtype=bool)
    # Frames near the channel's noise floor never hold speech: skip the VAD call for them.
    # In a stereo call each channel is quiet while the other party talks, so this halves
    # the work; the floor is the 20th percentile of frame levels, at least digital silence.
    peaks = frame_levels(frames)
    floor = max(64.0, 3.0 * float(np.percentile(peaks, 20)))
    vad = webrtcvad.Vad(aggressiveness)
    raw = memoryview(np.ascontiguousarray(frames)).cast("B")
    size = frames.shape[1]
    step = size * 2
    idx = np.flatnonzero(peaks > floor)
    out = np.zeros(n, dtype=bool)
    # One C call per frame is most of chunking's time: call the extension directly (the
    # wrapper's checks cost about a quarter as much again), over plain ints.
    handle = getattr(vad, "_vad", None)
    if _VAD_EXTENSION is None or handle is None:  # another webrtcvad build: its public call
        out[idx] = [vad.is_speech(raw[i * step : i * step + step], rate) for i in idx.tolist()]
    else:
        process = _VAD_EXTENSION.process
        out[idx] = [process(handle, rate, raw[i * step : i * step + step], size) for i in idx.tolist()]
    return out


def frames_to_regions(flags: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """Runs of True as (first_frame, end_frame) pairs, dropping runs shorter than min_frames."""
    if flags.size == 0:
        return []
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_frames]


def _ms_frames(seconds: float) -> int:
    return int(round(seconds * 1000 / FRAME_MS))


def join_close(regions: list[tuple[int, int]], max_gap: int) -> list[tuple[int, int]]:
    """Regions (in frames) separated by at most max_gap frames become one, pause included."""
    out: list[tuple[int, int]] = []
    for a, b in regions:
        if out and a - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def split_long(start: int, end: int, max_len: int, energy: np.ndarray, search: int) -> list[tuple[int, int]]:
    """Cut a span (in frames) so no piece exceeds max_len, each cut at the quietest frame of
    the window that ends at the limit (a pause if there is one, else the softest sound)."""
    pieces = []
    while end - start > max_len:
        hi = start + max_len
        lo = max(start + max_len // 2, hi - search)
        cut = lo + int(np.argmin(energy[lo:hi]))
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def plan_regions(regions: list[tuple[int, int]], energy: np.ndarray, params: ChunkingParams,
                 n_frames: int) -> list[tuple[int, int]]:
    """Speech regions (in frames) -> the padded regions that go into chunks, in time order.

    Short pauses are kept inside a region; a region too long for one chunk is cut (no
    padding at a cut, so the two sides touch); every other edge gets ``pad_s`` of context,
    never reaching into the previous region.
    """
    pad = _ms_frames(params.pad_s)
    limit = max(1, int(params.max_chunk_s * 1000 / FRAME_MS))
    max_len = max(1, limit - 2 * pad)
    search = max(1, _ms_frames(params.cut_search_s))
    out: list[tuple[int, int]] = []
    for a, b in join_close(regions, _ms_frames(params.max_merge_gap_s)):
        pieces = split_long(a, b, max_len, energy, search)
        for k, (pa, pb) in enumerate(pieces):
            lo = pa - pad if k == 0 else pa
            hi = pb + pad if k == len(pieces) - 1 else pb
            lo = max(lo, out[-1][1] if out else 0)
            out.append((lo, min(hi, n_frames)))
    return out


def pack(spans: list[tuple[int, int]], limit: int, together: bool = True) -> list[list[tuple[int, int]]]:
    """Consecutive spans into groups whose total length stays within limit (each span alone fits)."""
    groups: list[list[tuple[int, int]]] = []
    size = 0
    for a, b in spans:
        if together and groups and size + (b - a) <= limit:
            groups[-1].append((a, b))
            size += b - a
        else:
            groups.append([(a, b)])
            size = b - a
    return groups


def speech_regions(x: np.ndarray, rate: int, params: ChunkingParams = DEFAULT_CHUNKING,
                   ) -> tuple[int, list[tuple[int, int]]]:
    """A channel's frame count and its speech runs (first frame, end frame), blips dropped."""
    flags = speech_frames(x, rate, params.vad_aggressiveness)
    min_frames = max(1, int(params.min_speech_s * 1000 / FRAME_MS))
    return flags.size, frames_to_regions(flags, min_frames)


def diarize_channel(x: np.ndarray, rate: int, params: ChunkingParams = DEFAULT_CHUNKING,
                    regions: list[tuple[int, int]] | None = None,
                    settings: DiarizationParams | None = None, energy: np.ndarray | None = None) -> Diarization:
    """Who speaks when on one int16 channel (frames of FRAME_MS), from its speech runs (found
    here unless given); ``settings`` default to the diarizer's with ``params.speakers``."""
    if regions is None:
        regions = speech_regions(x, rate, params)[1]
    settings = settings or replace(DEFAULT_DIARIZATION, max_speakers=params.speakers)
    return diarize(_frames(x, rate), rate, regions, FRAME_MS / 1000, settings, energy)


def _energy(frames: np.ndarray, spans: list[tuple[int, int]], n: int) -> np.ndarray:
    """RMS per frame inside the spans (where cuts are looked for), 0 elsewhere."""
    energy = np.zeros(n, dtype=np.float32)
    for a, b in spans:
        f = frames[a:b].astype(np.float32)
        energy[a:b] = np.sqrt(np.mean(f * f, axis=1))
    return energy


def chunk_channel(x: np.ndarray, rate: int, channel: int,
                  params: ChunkingParams = DEFAULT_CHUNKING) -> list[Chunk]:
    """The speech chunks of one int16 channel at a rate the VAD takes (see VAD_RATES).

    With ``params.diarize`` the channel's speakers are told apart first: each chunk then
    holds one speaker's speech (its ``speaker``), see :func:`chunk_turns`.
    """
    n, regions = speech_regions(x, rate, params)
    if not regions:
        return []
    speaker, energy = None, None
    if params.diarize:
        # The diarizer picks the loudest frames to analyse from the energy the cuts need anyway.
        energy = _energy(_frames(x, rate), join_close(regions, _ms_frames(params.max_merge_gap_s)), n)
        diarization = diarize_channel(x, rate, params, regions, energy=energy)
        if diarization.n_speakers > 1:
            return chunk_turns(x, rate, channel, diarization.turns, params, n, energy)
        speaker = 0
    if params.pack and len(x) <= params.max_chunk_s * rate:
        # A channel that fits in one chunk goes whole: nothing to gain from cutting it,
        # and the model hears exactly what it would hear decoding the file by itself.
        return [Chunk(channel, 0, rate, ((0, len(x)),), speaker)]
    # Cuts are only looked for inside joined regions: only their frames need an energy.
    if energy is None:
        energy = _energy(_frames(x, rate), join_close(regions, _ms_frames(params.max_merge_gap_s)), n)
    spans = plan_regions(regions, energy, params, n)
    size, total = frame_len(rate), len(x)
    limit = int(params.max_chunk_s * rate)

    def samples(a: int, b: int) -> tuple[int, int]:
        end = total if b >= n else b * size  # the last frame's region keeps the tail (under a frame)
        return a * size, min(end, a * size + limit)

    groups = pack([samples(a, b) for a, b in spans], limit, together=params.pack)
    return [Chunk(channel, i, rate, tuple(g), speaker) for i, g in enumerate(groups)]


def join_turns(turns: tuple[tuple[int, int, int], ...] | list[tuple[int, int, int]],
               max_gap: int) -> list[tuple[int, int, int]]:
    """Consecutive turns (frames) of one speaker at most max_gap apart become one, pause included;
    a turn of another speaker in between keeps them apart."""
    out: list[tuple[int, int, int]] = []
    for a, b, s in turns:
        if out and out[-1][2] == s and a - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], b, s)
        else:
            out.append((a, b, s))
    return out


def plan_turns(turns: list[tuple[int, int, int]], energy: np.ndarray, params: ChunkingParams,
               n_frames: int) -> list[tuple[int, int, int]]:
    """Speaker turns (frames, joined) -> padded spans (first frame, end frame, speaker) in time order.

    As :func:`plan_regions`, except that context never reaches into another speaker's turn:
    the pause between two speakers is shared at its middle (no context where they touch).
    """
    pad = _ms_frames(params.pad_s)
    limit = max(1, int(params.max_chunk_s * 1000 / FRAME_MS))
    max_len = max(1, limit - 2 * pad)
    search = max(1, _ms_frames(params.cut_search_s))
    out: list[tuple[int, int, int]] = []
    for j, (a, b, s) in enumerate(turns):
        lo_bound = (turns[j - 1][1] + a) // 2 if j else 0
        hi_bound = (b + turns[j + 1][0] + 1) // 2 if j + 1 < len(turns) else n_frames
        pieces = split_long(a, b, max_len, energy, search)
        for k, (pa, pb) in enumerate(pieces):
            lo = max(pa - pad, lo_bound) if k == 0 else pa
            hi = min(pb + pad, hi_bound) if k == len(pieces) - 1 else pb
            lo = max(lo, out[-1][1] if out else 0)
            out.append((lo, min(hi, n_frames), s))
    return out


def chunk_turns(x: np.ndarray, rate: int, channel: int, turns: tuple[tuple[int, int, int], ...],
                params: ChunkingParams, n: int, energy: np.ndarray | None = None) -> list[Chunk]:
    """Chunks of a channel with several speakers: each speaker's turns padded and packed on their
    own (as a stereo call's channels are), so no chunk mixes two voices; chunks in time order.
    ``energy``: per frame, at least over the joined turns (where cuts are looked for)."""
    joined = join_turns(turns, _ms_frames(params.max_merge_gap_s))
    if energy is None:
        energy = _energy(_frames(x, rate), [(a, b) for a, b, _ in joined], n)
    spans = plan_turns(joined, energy, params, n)
    size, total = frame_len(rate), len(x)
    limit = int(params.max_chunk_s * rate)

    def samples(a: int, b: int) -> tuple[int, int]:
        end = total if b >= n else b * size
        return a * size, min(end, a * size + limit)

    groups = [(s, g) for s in sorted({s for _, _, s in spans})
              for g in pack([samples(a, b) for a, b, t in spans if t == s], limit, together=params.pack)]
    groups.sort(key=lambda sg: sg[1][0][0])
    return [Chunk(channel, i, rate, tuple(g), s) for i, (s, g) in enumerate(groups)]


def pack_rate(rate: int) -> int:
    """The rate a chunk's audio is stored at: its own below 16 kHz (the worker resamples it),
    16 kHz above (fewer samples to store and send)."""
    return min(rate, TARGET_SR)


def chunk_audio(x: np.ndarray, chunk: Chunk, rate: int = TARGET_SR) -> tuple[Chunk, np.ndarray]:
    """A chunk's regions from its channel, joined and resampled to ``rate``."""
    if len(chunk.regions) == 1:
        a, b = chunk.regions[0]
        joined = x[a:b]
    else:
        joined = np.concatenate([x[a:b] for a, b in chunk.regions])
    # Joined first: one resampler call per chunk, on the fewer source samples.
    return chunk, resample(joined, chunk.rate, rate)


def chunk_recording(decoded: Decoded, params: ChunkingParams = DEFAULT_CHUNKING, at_16k: bool = True,
                    ) -> list[tuple[Chunk, np.ndarray]]:
    """Every speech chunk of a recording with its audio (int16), channel by channel in time order.

    The audio is at 16 kHz, or with ``at_16k=False`` at ``pack_rate(chunk.rate)``: an 8 kHz
    call's chunks stay at 8 kHz, which halves the speech pack's encoding and size (the worker
    resamples them when it reads the pack).
    """
    out: list[tuple[Chunk, np.ndarray]] = []
    if decoded.n_channels > 1 and params.diarize:  # each party has a channel: nothing to tell apart
        params = replace(params, diarize=False)
    for c, x in enumerate(decoded.channels):
        rate = decoded.source_rate
        if rate not in VAD_RATES:  # 11.025, 22.05, 44.1 kHz: the VAD runs on the 16 kHz signal
            x, rate = resample(x, rate), TARGET_SR
        target = TARGET_SR if at_16k else pack_rate(rate)
        out.extend(chunk_audio(x, chunk, target) for chunk in chunk_channel(x, rate, c, params))
    return out
