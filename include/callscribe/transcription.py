"""The recognition path shared by the worker and `callscribe transcribe`.

Chunks in, length-sorted batches through an engine, segments out with times in the
recording. A background thread prepares the next batch (conversion, padding, pinned
memory: whatever the engine's ``prepare`` does) while the engine runs the current one.
A batch that runs out of device memory is split in halves and retried; no chunk is dropped.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from callscribe.audio import TARGET_SR, Decoded, as_float
from callscribe.batching import DEFAULT_BATCH_AUDIO_S, plan_batches
from callscribe.chunking import (
    DEFAULT_CHUNKING,
    FRAME_MS,
    Chunk,
    ChunkingParams,
    chunk_recording,
    chunking_for,
    frame_len,
)
from callscribe.config import speaker_for
from callscribe.engines import Engine, EngineOutOfMemory, Segment, Word
from callscribe.errors import describe, machine_fault
from callscribe.manifests import BatchMetric, Region

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacedSegment:
    channel: int
    start: float  # seconds in the recording
    end: float
    text: str
    # When each whitespace-separated word of ``text`` starts, in seconds in the recording (a
    # search hit jumps to its word); empty when the engine gave no word times or its words do
    # not line up with the text.
    word_starts: tuple[float, ...] = ()
    # The engine's confidence in the segment it comes from, in [0, 1] (engines.Segment); None when
    # the engine has none. A segment split over two regions gives both pieces its confidence.
    confidence: float | None = None


def _prepare(engine: Engine, audios: Sequence[np.ndarray], idx: list[int]) -> Any:
    # An engine that says it takes int16 (``takes_int16``) gets the packs' chunks as they are and
    # scales them itself (on the device); every other engine gets float32 in [-1, 1].
    if getattr(engine, "takes_int16", False):
        return engine.prepare([audios[i] for i in idx])
    return engine.prepare([as_float(audios[i]) for i in idx])


def _launch(engine: Engine, prepared: Any) -> Callable[[], list[list[Segment]]]:
    """Start a batch: the engine's ``start`` where it has one (it queues the work and returns the call
    that finishes it), else its ``run`` (finished at once)."""
    start = getattr(engine, "start", None)
    if start is not None:
        return start(prepared)
    out = engine.run(prepared)
    return lambda: out


def _store(engine: Engine, idx: list[int], out: list[list[Segment]], results: list) -> None:
    if len(out) != len(idx):
        raise RuntimeError(f"engine {engine.name} returned {len(out)} results for {len(idx)} chunks")
    for i, segs in zip(idx, out, strict=True):
        results[i] = segs


# Called with chunks just before the engine gets them (run_batches' ``before_batch``).
BeforeBatch = Callable[[list[int]], None]
# Called with a batch's chunks and their segments once final (run_batches' ``after_batch``).
AfterBatch = Callable[[list[int], list[list[Segment]]], None]


def _run_splitting(engine: Engine, audios: Sequence[np.ndarray], idx: list[int], prepared: Any,
                   results: list, splits: list[int], failures: dict[int, str] | None,
                   before: BeforeBatch | None = None) -> None:
    """Run one batch; on out-of-memory, halve it and run the halves (recursively).

    With ``failures``, any other error is narrowed down the same way, to the chunk that
    causes it: that chunk's reason is recorded and every other chunk is recognised.
    """
    if before is not None:
        before(idx)  # outside the try: its error is not the batch's
    try:
        _store(engine, idx, engine.run(prepared), results)
    except Exception as exc:  # a miscounted result is this batch's failure too
        _failed(exc, engine, audios, idx, results, splits, failures, before)


def _failed(exc: Exception, engine: Engine, audios: Sequence[np.ndarray], idx: list[int], results: list,
            splits: list[int], failures: dict[int, str] | None, before: BeforeBatch | None = None) -> None:
    """What a batch whose run raised ``exc`` becomes: halves run again, or that chunk's failure. A
    full local disk (an engine compiling kernels for a new shape into its cache) is the machine's: it
    fails the job, for the task's retry, instead of failing the chunks of every new shape."""
    if machine_fault(exc):
        raise exc
    if isinstance(exc, EngineOutOfMemory):
        if len(idx) == 1:
            if failures is None:
                raise exc
            failures[idx[0]] = f"out of memory on a single chunk of {len(audios[idx[0]]) / TARGET_SR:.1f} s ({exc})"
            return
        splits[0] += 1
        log.warning("out of memory on a batch of %d chunks; retrying as halves", len(idx))
        _run_halves(engine, audios, idx, results, splits, failures, before)
        return
    if failures is None:
        raise exc
    if len(idx) == 1:
        failures[idx[0]] = describe(exc)
        log.warning("chunk %d failed alone: %s", idx[0], failures[idx[0]])
        return
    log.warning("a batch of %d chunks failed (%s: %s); retrying as halves to find the cause",
                len(idx), type(exc).__name__, exc)
    _run_halves(engine, audios, idx, results, splits, failures, before)


def _run_halves(engine: Engine, audios: Sequence[np.ndarray], idx: list[int], results: list,
                splits: list[int], failures: dict[int, str] | None, before: BeforeBatch | None = None) -> None:
    half = len(idx) // 2
    for part in (idx[:half], idx[half:]):
        try:
            prepared = _prepare(engine, audios, part)
        except Exception as exc:
            _failed(exc, engine, audios, part, results, splits, failures, before)
            continue
        _run_splitting(engine, audios, part, prepared, results, splits, failures, before)


@dataclass
class _InFlight:
    """A batch started and not yet finished."""

    index: int
    idx: list[int]
    finish: Callable[[], list[list[Segment]]] | None  # None: its start failed (``error``)
    error: Exception | None
    wait_s: float  # waiting for the reader to prepare it
    model_s: float  # time in the engine so far
    splits: list[int]


def run_batches(
    engine: Engine, audios: Sequence[np.ndarray], budget_s: float = DEFAULT_BATCH_AUDIO_S,
    failures: dict[int, str] | None = None, overlap: bool = True, before_batch: BeforeBatch | None = None,
    after_batch: AfterBatch | None = None,
) -> tuple[list[list[Segment]], list[BatchMetric]]:
    """Recognise every chunk in length-sorted batches; results come back in input order.

    Pass a dict as ``failures`` to have a chunk the engine cannot recognise (an error, or
    out of memory even alone) recorded there by index, instead of failing every chunk.

    The next batch is prepared on a reader thread while the engine runs, and, for an engine
    that starts a batch before finishing it (``start``), batch k+1 is started before batch k
    is finished: the device computes k+1 while the host finishes k (``overlap=False`` finishes
    each batch before starting the next, for A/B timing). A batch whose start or finish fails
    is run again on its own, halved as above.

    ``before_batch``, when given, is called just before the engine gets a batch (or a half of
    one) with the chunks it holds from then on: that batch's, and those of a batch started
    before it and not yet finished (the overlap). An error in it is raised, not taken for
    the batch's.

    ``after_batch``, when given, is called with each batch's chunks and their segments once
    they are final (a chunk that failed has none, and its reason is in ``failures``), in the
    order the batches finish. With an engine that overlaps
    batches it runs while the device computes the next batch: the place for the host's own
    work on a batch's results, which would otherwise wait for the last batch. An error in it
    is raised, not taken for the batch's.
    """
    lengths = [len(a) / TARGET_SR for a in audios]
    plan = plan_batches(lengths, budget_s)
    results: list[list[Segment] | None] = [None] * len(audios)
    metrics: list[BatchMetric] = []
    done_s, total_s, t0 = 0.0, sum(lengths), time.perf_counter()
    unfinished: dict[int, list[int]] = {}  # batch number -> its chunks, from its start to its finish

    def held(idx: list[int]) -> None:  # the engine gets ``idx``: what it holds from now on
        before_batch(sorted(set(idx).union(*unfinished.values())))

    before: BeforeBatch | None = held if before_batch is not None else None

    def complete(f: _InFlight) -> None:
        nonlocal done_s
        t = time.perf_counter()
        if f.error is not None:
            _failed(f.error, engine, audios, f.idx, results, f.splits, failures, before)
        else:
            try:
                _store(engine, f.idx, f.finish(), results)
            except Exception as exc:
                _failed(exc, engine, audios, f.idx, results, f.splits, failures, before)
        unfinished.pop(f.index, None)
        now = time.perf_counter()
        model_s = f.model_s + (now - t)
        audio_s = sum(lengths[i] for i in f.idx)
        metrics.append(BatchMetric(
            batch_index=f.index, n_chunks=len(f.idx), audio_s=audio_s,
            padded_audio_s=max(lengths[i] for i in f.idx) * len(f.idx), model_s=model_s,
            wall_s=f.wait_s + model_s, device=engine.device, peak_mem_bytes=engine.peak_memory_bytes(),
            oom_splits=f.splits[0],
        ))
        done_s += audio_s
        elapsed = now - t0
        rtfx = done_s / elapsed if elapsed > 0 else 0.0
        eta = (total_s - done_s) / rtfx if rtfx > 0 else float("nan")
        log.info("batch %d/%d: %d chunks, %.1f s audio | %.0f/%.0f s done (%.0f%%), RTFx %.1f, ETA %.0f s",
                 f.index + 1, len(plan), len(f.idx), audio_s, done_s, total_s,
                 100 * done_s / total_s if total_s else 100.0, rtfx, eta)  # chunks of no samples: no audio
        if after_batch is not None:
            after_batch(list(f.idx), [results[i] or [] for i in f.idx])  # host work, outside model_s

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-reader") as reader:
        pending = reader.submit(_prepare, engine, audios, plan[0]) if plan else None
        in_flight: _InFlight | None = None
        for b, idx in enumerate(plan):
            wall_start = time.perf_counter()
            finish, error = None, None
            try:
                prepared = pending.result()  # time spent here is the engine waiting for input
            except Exception as exc:  # a batch that cannot be prepared is halved like one that fails
                error = exc
            pending = reader.submit(_prepare, engine, audios, plan[b + 1]) if b + 1 < len(plan) else None
            unfinished[b] = idx
            if error is None and before is not None:
                before(idx)  # not engine time: outside model_s
            model_start = time.perf_counter()
            if error is None:
                try:
                    finish = _launch(engine, prepared)
                except Exception as exc:  # handled in turn, after the batch before it
                    error = exc
            started = _InFlight(b, idx, finish, error, model_start - wall_start, time.perf_counter() - model_start,
                                [0])
            if in_flight is not None:
                complete(in_flight)
            if error is not None or not overlap:  # a failed start is run again now, alone
                complete(started)
                in_flight = None
            else:
                in_flight = started
        if in_flight is not None:
            complete(in_flight)
    return [r or [] for r in results], metrics


def _region_at(starts: list[float], t: float) -> int:
    """The region a chunk time falls in: the last one that starts at or before it."""
    return max(0, bisect.bisect_right(starts, t) - 1)


def _to_recording(region: Region, t: float) -> float:
    offset, start, end = region
    return min(end, max(start, start + t - offset))


# How far into a region its speech onset is looked for: the context kept before speech is 0.4 s.
ONSET_SEARCH_S = 1.0


def region_onsets(audio: np.ndarray, regions: Sequence[Region]) -> list[float]:
    """Per region of a chunk, the chunk time its speech starts: the first 30 ms frame within
    ONSET_SEARCH_S of the region's start that is well above the quietest frames there (the
    region's start when none is).

    A region begins with up to 0.4 s of context before the speech, and an engine may put the
    first word of a chunk at the chunk's very start (Whisper does): no word starts before this.
    Frame peaks only, in numpy: this runs for every chunk the GPU returns."""
    x = np.asarray(audio, dtype=np.float32)
    if np.issubdtype(np.asarray(audio).dtype, np.integer):
        x /= 32768.0  # int16 samples (the worker's packs): the floor below is in [-1, 1] units
    size = frame_len(TARGET_SR)
    out = []
    for offset, start, end in regions:
        a = int(round(offset * TARGET_SR))
        b = min(len(x), a + int(round(min(end - start, ONSET_SEARCH_S) * TARGET_SR)))
        n = (b - a) // size
        first = 0
        if n >= 2:
            frames = x[a : a + n * size].reshape(n, size)
            peaks = (frames.max(axis=1) - frames.min(axis=1)) / 2  # half the swing: blind to a DC offset
            # Well above the window's quiet frames, and above digital silence (64 in int16 terms).
            floor = max(64 / 32768, 4.0 * float(np.percentile(peaks, 20)))
            loud = np.flatnonzero(peaks > floor)
            first = int(loud[0]) if len(loud) else 0
        out.append(round(offset + first * FRAME_MS / 1000, 3))
    return out


def place(regions: Sequence[Region], channel: int, segs: list[Segment],
          onsets: Sequence[float] | None = None) -> list[PlacedSegment]:
    """Segments timed in a chunk -> segments timed in the recording, one per region they touch.

    A chunk packs speech regions with the pauses between them cut out, so a segment that
    runs from one region into the next is split there: each word goes to the region that
    holds its midpoint, and a segment's times are its words' (an engine may time only the
    chunk as a whole, as Granite does). Without word times a segment goes whole to the region
    it overlaps most. Times are clamped to their region: no segment spans a pause cut out.
    With ``onsets`` (region_onsets), no word starts before its region's speech does.
    """
    starts = [r[0] for r in regions]
    ends = [r[0] + (r[2] - r[1]) for r in regions]
    out = []
    for s in segs:
        groups: list[tuple[int, list[Word]]] = []
        for w in s.words:
            k = _region_at(starts, (w.start + w.end) / 2)
            if onsets is not None and w.start < onsets[k] <= w.end:
                w = Word(onsets[k], w.end, w.text)  # the context before the speech held no word
            if groups and groups[-1][0] == k:
                groups[-1][1].append(w)
            else:
                groups.append((k, [w]))
        if len(groups) == 1:  # the engine's own text, timed by its words
            k, words = groups[0]
            out.append(_placed(channel, regions[k], words[0].start, words[-1].end, s.text, words, s.confidence))
        elif groups:
            for k, words in groups:
                out.append(_placed(channel, regions[k], words[0].start, words[-1].end,
                                   " ".join(w.text for w in words if w.text), words, s.confidence))
        else:
            overlaps = [min(s.end, e) - max(s.start, a) for a, e in zip(starts, ends, strict=True)]
            out.append(_placed(channel, regions[int(np.argmax(overlaps))], s.start, s.end, s.text,
                               confidence=s.confidence))
    return out


def place_chunk(regions: Sequence[Region], channel: int, audio: np.ndarray,
                segs: list[Segment]) -> list[PlacedSegment]:
    """A chunk's segments timed in the recording (``place``), its words held to each region's
    speech onset when the engine timed words (onsets only move word times)."""
    onsets = region_onsets(audio, regions) if any(s.words for s in segs) else None
    return place(regions, channel, segs, onsets)


def _placed(channel: int, region: Region, start: float, end: float, text: str,
            words: Sequence[Word] = (), confidence: float | None = None) -> PlacedSegment:
    a = round(float(_to_recording(region, max(0.0, start))), 3)
    b = round(float(max(a, _to_recording(region, end))), 3)
    return PlacedSegment(channel, a, b, text, word_starts(region, text, words, a, b), confidence)


def word_starts(region: Region, text: str, words: Sequence[Word], lo: float, hi: float) -> tuple[float, ...]:
    """Recording time of each whitespace-separated word of ``text``, from the engine's words (a
    word that prints as two pieces gives both its start), inside [lo, hi] and never going back;
    when the text prints several pieces as one word ("20" and "%" as "20%") the word takes its first
    piece's; empty when the pieces spell other words than the text's."""
    starts: list[float] = []
    pieces: list[str] = []
    floor = lo
    for w in words:
        t = min(max(round(float(_to_recording(region, max(0.0, w.start))), 3), floor), hi)
        split = w.text.split()
        starts += [t] * len(split)
        pieces += split
        floor = t
    n = len(text.split())
    if starts and len(starts) == n:
        return tuple(starts)
    joined = _joined_starts(text.split(), pieces, starts) if len(starts) > n else None
    return joined or ()


def _joined_starts(text_words: list[str], pieces: list[str], starts: list[float]) -> tuple[float, ...] | None:
    """Each text word's start when it is spelled by consecutive pieces (Whisper prints "20%" as
    "20" and "%", punctuation it does not attach to a word): its first piece's; None unless the
    pieces spell exactly the text's words, so a text that differs gets no times, not wrong ones."""
    out, j = [], 0
    for word in text_words:
        if j >= len(pieces):
            return None
        out.append(starts[j])
        spelled = ""
        while len(spelled) < len(word) and j < len(pieces):
            spelled += pieces[j]
            j += 1
        if spelled != word:
            return None
    return tuple(out) if j == len(pieces) else None


def order_segments(segs: list[PlacedSegment]) -> list[PlacedSegment]:
    return sorted(segs, key=lambda s: (s.channel, s.start, s.end))


def chunk_all(decoded: Sequence[Decoded], params: ChunkingParams = DEFAULT_CHUNKING,
              ) -> tuple[list[tuple[int, Chunk]], list[np.ndarray]]:
    """Speech chunks of several recordings: (recording index, chunk) pairs and their audio."""
    pairs = [((i, c), audio) for i, d in enumerate(decoded) for c, audio in chunk_recording(d, params)]
    return [item for item, _ in pairs], [audio for _, audio in pairs]


def recognize_chunks(
    engine: Engine, n_recordings: int, items: list[tuple[int, Chunk]], audios: Sequence[np.ndarray],
    budget_s: float = DEFAULT_BATCH_AUDIO_S,
) -> tuple[list[list[PlacedSegment]], list[BatchMetric]]:
    """Recognise chunks of several recordings in shared batches; segments per recording, in time order."""
    results, metrics = run_batches(engine, audios, budget_s)
    placed: list[list[PlacedSegment]] = [[] for _ in range(n_recordings)]
    for (i, c), segs, audio in zip(items, results, audios, strict=True):
        placed[i].extend(place_chunk(c.region_map(), c.channel, audio, segs))
    return [order_segments(p) for p in placed], metrics


def transcribe_decoded(
    decoded: Decoded, engine: Engine, params: ChunkingParams | None = None,
    budget_s: float = DEFAULT_BATCH_AUDIO_S,
) -> list[PlacedSegment]:
    """Chunk a decoded recording (as the engine wants it, by default), recognise it and return
    its segments in time order per channel."""
    items, audios = chunk_all([decoded], params or chunking_for(engine.name))
    placed, _ = recognize_chunks(engine, 1, items, audios, budget_s)
    return placed[0]


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
