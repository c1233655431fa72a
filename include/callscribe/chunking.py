"""Split recordings into speech chunks of at most 30 s, cut at pauses.

Each channel is chunked on its own (agent and customer on separate channels). Voice
activity comes from WebRTC's VAD; neighbouring speech is merged into one chunk while the
pause between is short and the chunk stays under the limit, so the recogniser sees whole
phrases and almost no silence.

The VAD runs on the source samples when their rate is one it takes (8, 16, 32, 48 kHz),
and only the chunks are resampled to 16 kHz: in a two-party call each channel is about
half silence, so this resamples half as much and runs the VAD on half the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from callscribe.audio import TARGET_SR, Decoded, resample

FRAME_MS = 30
VAD_RATES = (8000, 16000, 32000, 48000)


@dataclass(frozen=True)
class ChunkingParams:
    max_chunk_s: float = 30.0
    max_merge_gap_s: float = 1.0  # pauses longer than this always end a chunk
    pad_s: float = 0.2
    vad_aggressiveness: int = 2
    min_speech_s: float = 0.12  # shorter blips are noise


DEFAULT_CHUNKING = ChunkingParams()


@dataclass(frozen=True)
class Chunk:
    channel: int
    index: int  # position among the channel's chunks
    start: int  # sample offsets in the channel, at ``rate``
    end: int
    rate: int  # the samples chunked: the source rate, or 16 kHz for rates the VAD does not take

    @property
    def start_s(self) -> float:
        return self.start / self.rate

    @property
    def end_s(self) -> float:
        return self.end / self.rate

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / self.rate


def frame_len(rate: int) -> int:
    return rate * FRAME_MS // 1000


def _frames(x: np.ndarray, rate: int) -> np.ndarray:
    """The channel's whole 30 ms frames, one per row (a view, no copy)."""
    size = frame_len(rate)
    n = len(x) // size
    return x[: n * size].reshape(n, size)


def frame_peaks(frames: np.ndarray) -> np.ndarray:
    """Each int16 frame's peak magnitude (from max and min: abs() of int16 wraps at -32768)."""
    return np.maximum(frames.max(axis=1).astype(np.int32), -frames.min(axis=1).astype(np.int32))


def speech_frames(x: np.ndarray, rate: int, aggressiveness: int = 2) -> np.ndarray:
    """A bool per 30 ms frame of an int16 channel: does it hold speech?"""
    frames = _frames(x, rate)
    n = len(frames)
    if n == 0:
        return np.zeros(0, dtype=bool)
    # Frames near the channel's noise floor never hold speech: skip the VAD call for them.
    # In a stereo call each channel is quiet while the other party talks, so this halves
    # the work; the floor is the 20th percentile of frame peaks, at least digital silence.
    peaks = frame_peaks(frames)
    floor = max(64.0, 3.0 * float(np.percentile(peaks, 20)))
    vad = webrtcvad.Vad(aggressiveness)
    raw = memoryview(np.ascontiguousarray(frames)).cast("B")
    step = frames.shape[1] * 2
    out = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(peaks > floor):
        out[i] = vad.is_speech(raw[i * step : (i + 1) * step], rate)
    return out


def frames_to_regions(flags: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """Runs of True as (first_frame, end_frame) pairs, dropping runs shorter than min_frames."""
    if flags.size == 0:
        return []
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_frames]


def _split_long(start: int, end: int, max_len: int, energy: np.ndarray) -> list[tuple[int, int]]:
    """Cut one long region (in frames) at its quietest frames so no piece exceeds max_len."""
    pieces = []
    while end - start > max_len:
        lo = start + max_len // 2
        hi = start + max_len
        cut = lo + int(np.argmin(energy[lo:hi]))
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def plan_chunks(regions: list[tuple[int, int]], energy: np.ndarray, params: ChunkingParams,
                n_frames: int) -> list[tuple[int, int]]:
    """Merge speech regions (in frames) into chunks that respect the length limit."""
    pad = int(round(params.pad_s * 1000 / FRAME_MS))
    max_len = int(params.max_chunk_s * 1000 / FRAME_MS) - 2 * pad
    max_gap = int(params.max_merge_gap_s * 1000 / FRAME_MS)
    pieces: list[tuple[int, int]] = []
    for a, b in regions:
        pieces.extend(_split_long(a, b, max_len, energy))
    chunks: list[tuple[int, int]] = []
    for a, b in pieces:
        if chunks and a - chunks[-1][1] <= max_gap and b - chunks[-1][0] <= max_len:
            chunks[-1] = (chunks[-1][0], b)
        else:
            chunks.append((a, b))
    return [(max(0, a - pad), min(n_frames, b + pad)) for a, b in chunks]


def chunk_channel(x: np.ndarray, rate: int, channel: int,
                  params: ChunkingParams = DEFAULT_CHUNKING) -> list[Chunk]:
    """The speech chunks of one int16 channel at a rate the VAD takes (see VAD_RATES)."""
    flags = speech_frames(x, rate, params.vad_aggressiveness)
    n = flags.size
    if n == 0:
        return []
    min_frames = max(1, int(params.min_speech_s * 1000 / FRAME_MS))
    regions = frames_to_regions(flags, min_frames)
    # Long regions are cut at their quietest frame, so only frames inside regions need an energy.
    frames, energy = _frames(x, rate), np.zeros(n, dtype=np.float32)
    for a, b in regions:
        f = frames[a:b].astype(np.float32)
        energy[a:b] = np.sqrt(np.mean(f * f, axis=1))
    spans = plan_chunks(regions, energy, params, n)
    size, total = frame_len(rate), len(x)
    return [
        Chunk(channel, i, a * size, min(total, b * size) if b < n else total, rate)
        for i, (a, b) in enumerate(spans)
    ]


def chunk_recording(decoded: Decoded, params: ChunkingParams = DEFAULT_CHUNKING,
                    ) -> list[tuple[Chunk, np.ndarray]]:
    """Every speech chunk of a recording with its audio (int16, 16 kHz), channel by channel in time order."""
    out: list[tuple[Chunk, np.ndarray]] = []
    for c, x in enumerate(decoded.channels):
        rate = decoded.source_rate
        if rate not in VAD_RATES:  # 11.025, 22.05, 44.1 kHz: the VAD runs on the 16 kHz signal
            x, rate = resample(x, rate), TARGET_SR
        out.extend((chunk, resample(x[chunk.start : chunk.end], rate))
                   for chunk in chunk_channel(x, rate, c, params))
    return out
