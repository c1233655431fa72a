"""Split recordings into speech chunks of at most 30 s, cut at pauses.

Each channel is chunked on its own (agent and customer on separate channels). Voice
activity comes from WebRTC's VAD; neighbouring speech is merged into one chunk while the
pause between is short and the chunk stays under the limit, so the recogniser sees whole
phrases and almost no silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from callscribe.audio import TARGET_SR, Decoded, to_int16

FRAME_MS = 30
FRAME = TARGET_SR * FRAME_MS // 1000


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
    start: int  # sample offsets in the channel, at 16 kHz
    end: int

    @property
    def start_s(self) -> float:
        return self.start / TARGET_SR

    @property
    def end_s(self) -> float:
        return self.end / TARGET_SR

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / TARGET_SR


def speech_frames(x: np.ndarray, aggressiveness: int = 2) -> np.ndarray:
    """A bool per 30 ms frame: does it hold speech?"""
    n = len(x) // FRAME
    if n == 0:
        return np.zeros(0, dtype=bool)
    pcm = to_int16(x[: n * FRAME])
    # Frames near the channel's noise floor never hold speech: skip the VAD call for them.
    # In a stereo call each channel is quiet while the other party talks, so this halves
    # the work; the floor is the 20th percentile of frame peaks, at least digital silence.
    peaks = np.abs(pcm.reshape(n, FRAME)).max(axis=1)
    floor = max(64.0, 3.0 * float(np.percentile(peaks, 20)))
    energetic = peaks > floor
    vad = webrtcvad.Vad(aggressiveness)
    raw = pcm.tobytes()
    step = FRAME * 2
    out = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(energetic):
        out[i] = vad.is_speech(raw[i * step : (i + 1) * step], TARGET_SR)
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


def chunk_channel(x: np.ndarray, channel: int, params: ChunkingParams = DEFAULT_CHUNKING) -> list[Chunk]:
    flags = speech_frames(x, params.vad_aggressiveness)
    n = flags.size
    if n == 0:
        return []
    frames = x[: n * FRAME].reshape(n, FRAME)
    energy = np.sqrt(np.mean(frames * frames, axis=1))
    min_frames = max(1, int(params.min_speech_s * 1000 / FRAME_MS))
    regions = frames_to_regions(flags, min_frames)
    spans = plan_chunks(regions, energy, params, n)
    total = len(x)
    return [
        Chunk(channel, i, a * FRAME, min(total, b * FRAME) if b < n else total)
        for i, (a, b) in enumerate(spans)
    ]


def chunk_recording(decoded: Decoded, params: ChunkingParams = DEFAULT_CHUNKING) -> list[Chunk]:
    out: list[Chunk] = []
    for c, x in enumerate(decoded.channels):
        out.extend(chunk_channel(x, c, params))
    return out
