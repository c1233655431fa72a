"""A fine-tuning data set from the transcribed calls: audio examples with their text.

The calls of a date range that are ``done`` are cut into examples: each is a stretch of one
channel of the original recording (fetched from the bucket, decoded, resampled to 16 kHz mono
FLAC) with the text the engine heard there. The output folder is laid out for Hugging Face's
``audiofolder`` (``datasets.load_dataset("audiofolder", data_dir=...)``) and carries NeMo
manifests beside it::

    OUT/train/metadata.jsonl           file_name, text, speaker, duration, recording
    OUT/train/<16 hex>/<ch>-<ms>.flac  one folder per recording (a hash of bucket and key), one file per example
    OUT/validation/..., OUT/test/...   the folder names audiofolder maps to its three splits
    OUT/train_manifest.jsonl ...       NeMo: audio_filepath (relative to OUT), duration, text, speaker, recording
    OUT/summary.json                   what was written and what was left out, and why

Choices:

- Splits are by recording, never by example: a hash of the object key puts every example of a
  call in the same split (80/10/10), the same one on every run and for every version of the key.
- A segment whose text holds a number the redaction masks (its text differs from its redacted
  text: card, account and phone numbers) is left out, with its audio: a model must not learn to
  write those down. The segments around it stay, but no example reaches into its time.
- Neighbouring segments of one channel are merged into one example while the example stays
  within ``max_chunk_s`` and the pause between them is at most ``MAX_GAP_S`` (longer examples
  give a model context; a long pause may hold speech the engine did not transcribe). Nothing is
  merged across a left-out segment, nor across a change of speaker (a diarized mono call). A
  single segment longer than ``max_chunk_s`` is left out (splitting it would need word times
  the text may not line up with); so is one shorter than ``MIN_SEGMENT_S``.
- Each example gets up to ``PAD_S`` of audio on each side (a segment's times are its words',
  and a cut exactly there can clip a sound), never into a neighbouring segment's time and
  never past ``max_chunk_s``.
- With ``min_confidence``, segments below it are left out, and so are segments with no
  confidence (loaded before confidences were stored, or from an engine without one).
- The text is as spoken (the raw transcript, whitespace made single): no numbers are in it,
  as segments with anything like one are left out, with their neighbours (:func:`near_pii`).
- A recording whose object is gone or was replaced (another etag) since it was transcribed is
  skipped: its transcript no longer belongs to the audio there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf
from minio.error import S3Error
from sqlalchemy.engine import Engine

from callscribe import db
from callscribe.audio import TARGET_SR, Decoded, DecodeError, decode, resample
from callscribe.config import key_hash
from callscribe.discovery import call_id_for
from callscribe.storage import CHANGED, Store, make_uri, unavailable

log = logging.getLogger(__name__)

# Folder names Hugging Face's audiofolder maps to its train, validation and test splits.
SPLITS = ("train", "validation", "test")
SPLIT_SHARES = (0.8, 0.1, 0.1)
DEFAULT_MAX_CHUNK_S = 30.0  # the longest window Whisper and Granite NAR are trained on
MAX_GAP_S = 1.0  # the chunker keeps pauses up to 1 s inside a speech region
PAD_S = 0.1
MIN_SEGMENT_S = 0.2
# Why a segment is left out, in the order the reasons are checked.
PII, LOW_CONFIDENCE, NO_CONFIDENCE, TOO_LONG, TOO_SHORT = (
    "pii", "low_confidence", "no_confidence", "too_long", "too_short")


@dataclass(frozen=True)
class Seg:
    channel: int
    seq: int
    speaker: str
    start: float
    end: float
    text: str
    text_redacted: str
    confidence: float | None = None


@dataclass
class Recording:
    id: int
    bucket: str
    key: str
    etag: str
    segments: list[Seg] = field(default_factory=list)


@dataclass(frozen=True)
class Example:
    """One stretch of one channel: [start, end] in the recording, padded, and the text spoken in it."""

    recording: str
    channel: int
    speaker: str
    start: float
    end: float
    text: str
    segments: int = 1
    bucket: str = ""  # with ``recording``, the call: one key may hold another call in each bucket


@dataclass
class Summary:
    examples: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0.0))
    recordings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    left_out: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        (PII, LOW_CONFIDENCE, NO_CONFIDENCE, TOO_LONG, TOO_SHORT), 0))
    recordings_skipped: dict[str, str] = field(default_factory=dict)  # object key -> why

    def hours(self, split: str) -> float:
        return self.seconds[split] / 3600

    def as_dict(self) -> dict:
        return {**asdict(self), "hours": {s: round(self.hours(s), 4) for s in SPLITS}}


# ---------------------------------------------------------------- choosing what goes in


def recordings_between(engine: Engine, first: date, last: date) -> Iterator[Recording]:
    """The ``done`` recordings of [first, last] with their segments, a channel at a time in order."""
    current: Recording | None = None
    # A server-side cursor: a long range's segments are read as they are used, not all at once.
    with engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=10_000).execute(
            db.q("dataset_segments"), {"first": first, "last": last})
        for r in rows:
            if current is None or current.id != r.recording_id:
                if current is not None:
                    yield current
                current = Recording(r.recording_id, r.bucket, r.object_key, r.etag)
            current.segments.append(Seg(r.channel, r.seq, r.speaker, float(r.start_s), float(r.end_s), r.text,
                                        r.text_redacted,
                                        None if r.confidence is None else float(r.confidence)))
    if current is not None:
        yield current


def split_of(key: str, shares: tuple[float, ...] = SPLIT_SHARES) -> str:
    """The split of a recording, from a hash of its call id (the key's file name without its
    extension): the same on every run, and the same for one call delivered again under another
    folder or format."""
    call = call_id_for(key).lower().encode("utf-8", "surrogatepass")
    at = int.from_bytes(hashlib.sha256(call).digest()[:8], "big") / 2**64
    bound = 0.0
    for split, share in zip(SPLITS, shares, strict=True):
        bound += share
        if at < bound:
            return split
    return SPLITS[-1]


def _words(text: str) -> str:
    return " ".join(text.split())


# The analysts' redaction keeps short numbers (a security code, half a card number said in
# pieces, "4111 then 1111"); a training set keeps nothing that looks like one: any digit, or
# two spoken digit words.
_SPOKEN_DIGIT = re.compile(r"\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple)\b", re.I)


def holds_pii(seg: Seg) -> bool:
    """Whether the segment masked a number or holds anything like one (see above)."""
    if _words(seg.text) != _words(seg.text_redacted) or any(c.isdigit() for c in seg.text):
        return True
    return len(_SPOKEN_DIGIT.findall(seg.text)) >= 2


def near_pii(segments: list[Seg]) -> set[tuple[int, int]]:
    """(channel, seq) of the segments left out for numbers: those that hold one, their neighbours
    on the channel (a number dictated over two segments), and whatever overlaps them in time on
    another channel (the other party's line can carry it as echo)."""
    hot = [s for s in segments if holds_pii(s)]
    out = {(s.channel, s.seq) for s in hot}
    out |= {(s.channel, s.seq + d) for s in hot for d in (-1, 1)}
    out |= {(o.channel, o.seq) for o in segments for s in hot
            if o.channel != s.channel and o.start < s.end and s.start < o.end}
    return out


def left_out_because(seg: Seg, min_confidence: float | None, max_chunk_s: float,
                     pii: set[tuple[int, int]] | None = None) -> str | None:
    """Why the segment cannot be an example (or part of one); None when it can. ``pii``: the
    recording's segments near a number (:func:`near_pii`); by default the segment's own text."""
    if (seg.channel, seg.seq) in pii if pii is not None else holds_pii(seg):
        return PII
    if min_confidence is not None:
        if seg.confidence is None:
            return NO_CONFIDENCE
        if seg.confidence < min_confidence:
            return LOW_CONFIDENCE
    if seg.end - seg.start > max_chunk_s:
        return TOO_LONG
    if seg.end - seg.start < MIN_SEGMENT_S or not seg.text.strip():
        return TOO_SHORT
    return None


def _example(rec: Recording, group: list[Seg], before: float, after: float, max_chunk_s: float,
             barriers: list[tuple[float, float]] = ()) -> Example:
    """The group's example, padded by up to PAD_S into the free time around it (``before`` is where
    the channel's previous segment ends, ``after`` where its next one starts), never into a
    ``barrier`` (a number said on another channel)."""
    start, end = group[0].start, max(s.end for s in group)
    pad = max(0.0, min(PAD_S, (max_chunk_s - (end - start)) / 2))
    lo = min(start, max(start - pad, before, 0.0))
    hi = max(end, min(end + pad, after))
    for a, b in barriers:
        if a < start and b > lo:
            lo = max(lo, min(b, start))
        if a < hi and b > end:
            hi = min(hi, max(a, end))
    return Example(rec.key, group[0].channel, group[0].speaker, round(lo, 3), round(hi, 3),
                   " ".join(_words(s.text) for s in group), len(group), rec.bucket)


def examples_of(rec: Recording, min_confidence: float | None = None,
                max_chunk_s: float = DEFAULT_MAX_CHUNK_S) -> tuple[list[Example], Counter]:
    """A recording's examples (neighbouring usable segments of a channel merged up to
    ``max_chunk_s``) and how many segments were left out, by reason."""
    out: list[Example] = []
    left: Counter = Counter()
    by_channel: dict[int, list[Seg]] = {}
    pii = near_pii(rec.segments)
    # When a number was said, on which channel: an example of another channel is more than its
    # segments (merged across pauses, padded) and must not reach into that time either (echo).
    said = [(s.channel, s.start, s.end) for s in rec.segments if holds_pii(s)]
    for s in rec.segments:
        by_channel.setdefault(s.channel, []).append(s)
    for channel, segs in by_channel.items():
        barriers = [(a, b) for ch, a, b in said if ch != channel]
        group: list[Seg] = []
        before = last_end = 0.0  # where the segment before the group ends; where the last one seen ends
        for s in sorted(segs, key=lambda s: s.seq):
            why = left_out_because(s, min_confidence, max_chunk_s, pii)
            if why:
                left[why] += 1
            # A mono call's channel holds both speakers (diarized): an example keeps to one of them.
            joins = bool(group) and why is None and s.speaker == group[-1].speaker \
                and s.start - group[-1].end <= MAX_GAP_S and s.end - group[0].start <= max_chunk_s \
                and not any(a < s.start and b > group[-1].end for a, b in barriers)
            if group and not joins:
                out.append(_example(rec, group, before, s.start, max_chunk_s, barriers))
                group = []
            if why is None:
                if not group:
                    before = last_end
                group.append(s)
            last_end = max(last_end, s.end)
        if group:
            out.append(_example(rec, group, before, float("inf"), max_chunk_s, barriers))
    return sorted(out, key=lambda e: (e.start, e.channel)), left


# ---------------------------------------------------------------- audio


def cut(decoded: Decoded, channel: int, start: float, end: float) -> np.ndarray:
    """[start, end] of one channel, as int16 at 16 kHz (only the piece is resampled)."""
    if channel >= decoded.n_channels:
        raise ValueError(f"channel {channel} of a {decoded.n_channels}-channel recording")
    rate = decoded.source_rate
    a = max(0, int(round(start * rate)))
    b = min(len(decoded.channels[channel]), int(round(end * rate)))
    return resample(decoded.channels[channel][a:b], rate)


def recording_folder(key: str, bucket: str = "") -> str:
    """A recording's folder: hex digits of a hash of its bucket and key only. A name made from the key
    could hold "test" or "dev" between separators, and audiofolder would then put its files in that
    split too; the bucket is in it as one key may hold another call in each bucket, and their examples
    (the same times on the same channel) would be written over each other."""
    return hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:16]


def example_path(ex: Example) -> str:
    """Where an example goes, relative to its split's folder."""
    return f"{recording_folder(ex.recording, ex.bucket)}/{ex.channel}-{round(ex.start * 1000):08d}.flac"


def write_flac(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, TARGET_SR, format="FLAC", subtype="PCM_16")


@dataclass
class Written:
    """One recording's part of the data set."""

    key: str
    split: str
    rows: list[dict] = field(default_factory=list)  # metadata rows, file_name relative to the split
    left_out: Counter = field(default_factory=Counter)
    skipped: str | None = None


def fetch(store: Store, rec: Recording) -> Decoded | str:
    """The recording's audio as it was transcribed, or why it cannot be had (a string)."""
    try:
        # One conditional read: a content replaced between a check and a download would go in.
        return decode(store.get_bytes(make_uri(rec.bucket, rec.key), etag=rec.etag), rec.key)
    except DecodeError as exc:
        return str(exc)
    except S3Error as exc:
        if exc.code == CHANGED:
            return f"the object changed since it was transcribed (transcribed etag {rec.etag})"
        if unavailable(exc):
            raise
        return f"not readable in the bucket ({exc.code})"


NO_LONGER_DONE = "erased, deleted or replaced since the build began"


def still_transcribed(engine: Engine, rec: Recording) -> bool:
    """Whether ``rec`` is still `done` with the content it was read with (see dataset_still_done.sql)."""
    with engine.connect() as conn:
        return conn.execute(db.q("dataset_still_done"), {"id": rec.id, "etag": rec.etag}).scalar_one()


def write_recording(store: Store, rec: Recording, out: Path, min_confidence: float | None,
                    max_chunk_s: float, still: Callable[[Recording], bool] | None = None) -> Written:
    """Cut and write one recording's examples into its split's folder; ``still`` says, once its audio
    is fetched (or refused) and before anything is written, whether it may still be used."""
    examples, left = examples_of(rec, min_confidence, max_chunk_s)
    done = Written(rec.key, split_of(rec.key), left_out=left)
    if not examples:
        return done
    decoded = fetch(store, rec)
    # Asked also when the audio could not be had: an erasure may have deleted it.
    if still is not None and not still(rec):
        # Perhaps erased: named as erasures name an object, by its key's hash (summary.json, the log).
        done.key, done.skipped = f"key sha256 {key_hash(rec.key)[:16]}", NO_LONGER_DONE
        return done
    if isinstance(decoded, str):
        done.skipped = decoded
        return done
    for ex in examples:
        samples = cut(decoded, ex.channel, ex.start, ex.end)
        if len(samples) == 0:
            continue  # times past the end of a truncated file
        name = example_path(ex)
        write_flac(out / done.split / name, samples)
        done.rows.append({"file_name": name, "text": ex.text, "speaker": ex.speaker,
                          "duration": round(len(samples) / TARGET_SR, 3), "recording": ex.recording})
    return done


def _in_order(pool: ThreadPoolExecutor, recs: Iterable[Recording], work, ahead: int) -> Iterator[Written]:
    """``work`` over the recordings in the pool, results in order, at most ``ahead`` in flight
    (a long date range is never held in memory at once)."""
    pending: deque[Future] = deque()
    for rec in recs:
        pending.append(pool.submit(work, rec))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _unfinished(path: Path) -> Path:
    """Where ``path`` is written until the build ends: a build cut short (an outage, a kill) leaves
    FLAC files and these, no metadata.jsonl or manifest that audiofolder or NeMo would load as if
    it were the whole range's data set."""
    return path.with_name(f".{path.name}.unfinished")


def build(engine: Engine, store: Store, first: date, last: date, out: Path, min_confidence: float | None = None,
          max_chunk_s: float = DEFAULT_MAX_CHUNK_S, threads: int = 4) -> Summary:
    """Write the data set of the calls of [first, last] into ``out`` (which must be empty or new)."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: the data set goes into a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary()

    # The calls are read at the start; one erased (or deleted, or replaced) while the build runs
    # must not be written after that. No database: the caller gave the calls itself (tests).
    still = None if engine is None else (lambda rec: still_transcribed(engine, rec))

    def work(rec: Recording) -> Written:
        return write_recording(store, rec, out, min_confidence, max_chunk_s, still)

    with ExitStack() as files, ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="dataset") as pool:
        opened: dict[str, tuple] = {}  # split -> its metadata file and its NeMo manifest
        for w in _in_order(pool, recordings_between(engine, first, last), work, 2 * max(1, threads)):
            if w.skipped:
                log.warning("%s skipped: %s", w.key, w.skipped)
                summary.recordings_skipped[w.key] = w.skipped
                continue
            for why, n in w.left_out.items():
                summary.left_out[why] += n
            if not w.rows:
                continue
            if w.split not in opened:
                opened[w.split] = tuple(files.enter_context(open(_unfinished(p), "w", encoding="utf-8"))
                                        for p in (out / w.split / "metadata.jsonl", out / f"{w.split}_manifest.jsonl"))
            meta, nemo = opened[w.split]
            for row in w.rows:
                meta.write(json.dumps(row, ensure_ascii=False) + "\n")
                nemo.write(json.dumps({"audio_filepath": f"{w.split}/{row['file_name']}", "duration": row["duration"],
                                       "text": row["text"], "speaker": row["speaker"],
                                       "recording": row["recording"]}, ensure_ascii=False) + "\n")
            summary.examples[w.split] += len(w.rows)
            summary.seconds[w.split] += sum(r["duration"] for r in w.rows)
            summary.recordings[w.split] += 1
    for split in opened:  # every recording written: the files take their names, summary.json last
        for path in (out / split / "metadata.jsonl", out / f"{split}_manifest.jsonl"):
            _unfinished(path).replace(path)
    (out / "summary.json").write_text(json.dumps(
        {**summary.as_dict(), "from": first.isoformat(), "to": last.isoformat(), "min_confidence": min_confidence,
         "max_chunk_s": max_chunk_s}, indent=2) + "\n")
    return summary


def summary_lines(summary: Summary, min_confidence: float | None, max_chunk_s: float) -> list[str]:
    """What the command prints: examples and hours per split, then what was left out and why."""
    lines = [f"{'split':<11} {'recordings':>10} {'examples':>9} {'hours':>8}"]
    for s in SPLITS:
        lines.append(f"{s:<11} {summary.recordings[s]:>10} {summary.examples[s]:>9} {summary.hours(s):>8.3f}")
    left = summary.left_out
    lines.append(f"left out: {left[PII]} segments with or next to a number (PII), "
                 f"{left[TOO_LONG]} longer than {max_chunk_s:g} s, {left[TOO_SHORT]} shorter than {MIN_SEGMENT_S:g} s")
    if min_confidence is not None:
        lines.append(f"left out: {left[LOW_CONFIDENCE]} segments below confidence {min_confidence:g}, "
                     f"{left[NO_CONFIDENCE]} without a confidence (loaded before it was stored, or its engine "
                     "gives none)")
    if summary.recordings_skipped:
        lines.append(f"recordings skipped: {len(summary.recordings_skipped)} (gone, changed or undecodable in "
                     "the bucket; see summary.json)")
    return lines
