"""The recognition path shared by the worker and `callscribe transcribe`.

Chunks in, batched through an engine, segments out with times in the recording.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from callscribe.audio import TARGET_SR, Decoded
from callscribe.batching import plan_batches
from callscribe.chunking import DEFAULT_CHUNKING, Chunk, ChunkingParams, chunk_recording
from callscribe.config import speaker_for
from callscribe.engines import Engine, Segment
from callscribe.manifests import BatchMetric

log = logging.getLogger(__name__)
DEFAULT_BATCH_AUDIO_S = 240.0


@dataclass(frozen=True)
class PlacedSegment:
    channel: int
    start: float  # seconds in the recording
    end: float
    text: str


def run_batches(
    engine: Engine, audios: Sequence[np.ndarray], budget_s: float = DEFAULT_BATCH_AUDIO_S
) -> tuple[list[list[Segment]], list[BatchMetric]]:
    """Recognise every chunk in length-sorted batches; results come back in input order."""
    lengths = [len(a) / TARGET_SR for a in audios]
    results: list[list[Segment] | None] = [None] * len(audios)
    metrics: list[BatchMetric] = []
    done_s, total_s, t0 = 0.0, sum(lengths), time.perf_counter()
    for b, idx in enumerate(plan_batches(lengths, budget_s)):
        start = time.perf_counter()
        out = engine.transcribe([audios[i] for i in idx])
        took = time.perf_counter() - start
        if len(out) != len(idx):
            raise RuntimeError(f"engine {engine.name} returned {len(out)} results for {len(idx)} chunks")
        for i, segs in zip(idx, out, strict=True):
            results[i] = segs
        audio_s = sum(lengths[i] for i in idx)
        metrics.append(BatchMetric(batch_index=b, n_chunks=len(idx), audio_s=audio_s, model_s=took,
                                   wall_s=took, device=engine.device))
        done_s += audio_s
        elapsed = time.perf_counter() - t0
        rtfx = done_s / elapsed if elapsed > 0 else 0.0
        eta = (total_s - done_s) / rtfx if rtfx > 0 else float("nan")
        log.info("batch %d: %d chunks, %.1f s audio | %.0f/%.0f s done, RTFx %.1f, ETA %.0f s",
                 b, len(idx), audio_s, done_s, total_s, rtfx, eta)
    return [r or [] for r in results], metrics


def place(chunk_start_s: float, chunk_end_s: float, channel: int, segs: list[Segment]) -> list[PlacedSegment]:
    """Move chunk-relative segment times into the recording, clamped to the chunk."""
    out = []
    for s in segs:
        start = min(chunk_end_s, chunk_start_s + max(0.0, s.start))
        end = min(chunk_end_s, max(start, chunk_start_s + s.end))
        out.append(PlacedSegment(channel, round(start, 3), round(end, 3), s.text))
    return out


def order_segments(segs: list[PlacedSegment]) -> list[PlacedSegment]:
    return sorted(segs, key=lambda s: (s.channel, s.start, s.end))


def transcribe_decoded(
    decoded: Decoded, engine: Engine, params: ChunkingParams = DEFAULT_CHUNKING,
    budget_s: float = DEFAULT_BATCH_AUDIO_S,
) -> list[PlacedSegment]:
    """Chunk a decoded recording, recognise it and return its segments in time order per channel."""
    chunks: list[Chunk] = chunk_recording(decoded, params)
    audios = [decoded.channels[c.channel][c.start : c.end] for c in chunks]
    results, _ = run_batches(engine, audios, budget_s)
    placed: list[PlacedSegment] = []
    for c, segs in zip(chunks, results, strict=True):
        placed.extend(place(c.start_s, c.end_s, c.channel, segs))
    return order_segments(placed)


def as_channels(segments: list[PlacedSegment], n_channels: int,
                speakers: tuple[str, ...] | None = None) -> list[dict]:
    """The per-channel JSON shape used by the CLI: speaker, text and segments."""
    out = []
    for ch in range(n_channels):
        mine = [s for s in segments if s.channel == ch]
        out.append({
            "channel": ch,
            "speaker": speaker_for(ch, n_channels, speakers),
            "text": " ".join(s.text for s in mine),
            "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in mine],
        })
    return out
