"""`callscribe parity`: the native Granite NAR engine against the reference (remote code), same audio.

For users who have the weights and a GPU. Both engines see the same speech chunks (the
pipeline's own chunking) in the same batches; the report gives how often their token ids
agree, the WER between their texts, each one's WER against the labels when the folder has
them, and the largest difference between their editor logits where both expose them.

By default each chunk runs alone (batch 1). The reference's output depends on its batch (it
computes features on the zero-padded batch and masks nothing inside its encoder blocks); the
native's does not. With a larger batch the figures include that artefact, and the report says so.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from callscribe.audio import as_float, decode
from callscribe.chunking import chunking_for
from callscribe.dev.bench import load_labelled
from callscribe.dev.evaluation import corpus_wer
from callscribe.engines.base import Segment
from callscribe.engines.tokens import ItemOutput, TokenEngine
from callscribe.transcription import as_channels, chunk_all, order_segments, place

log = logging.getLogger(__name__)

BATCH_NOTE = ("batched reference figures include the reference's own batch dependence (features on the "
              "zero-padded batch, no masking inside its encoder blocks); run with batch 1 to compare the models alone")


@dataclass
class ParityReport:
    chunks: int
    exact_match: float  # share of chunks whose token ids are identical
    token_agreement: float  # 1 - token edit distance / reference tokens
    wer_between: float  # native text scored against the reference text
    wer_reference: float | None  # each against the labels, when there are labels
    wer_native: float | None
    max_logit_diff: float | None  # None when the reference does not expose comparable logits
    logits_compared: int
    worst: list[dict] = field(default_factory=list)
    batch: int = 1  # chunks per batch, both engines
    note: str | None = None  # BATCH_NOTE when batch > 1

    def as_dict(self) -> dict:
        return asdict(self)


def edit_distance(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i]
        for j, y in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def compare(reference: list[ItemOutput], native: list[ItemOutput]) -> ParityReport:
    if len(reference) != len(native):
        raise ValueError("both engines must answer every chunk")
    dists = [edit_distance(r.ids, n.ids) for r, n in zip(reference, native, strict=True)]
    ref_tokens = sum(len(r.ids) for r in reference)
    diffs = []
    for r, n in zip(reference, native, strict=True):
        if r.logits is not None and n.logits is not None and tuple(r.logits.shape) == tuple(n.logits.shape):
            diffs.append(float((r.logits.float() - n.logits.float()).abs().max()))
    worst = sorted(range(len(dists)), key=lambda i: -dists[i])[:5]
    return ParityReport(
        chunks=len(reference),
        exact_match=round(sum(d == 0 for d in dists) / max(len(dists), 1), 4),
        token_agreement=round(1 - sum(dists) / max(ref_tokens, 1), 4),
        wer_between=round(corpus_wer((r.text, n.text) for r, n in zip(reference, native, strict=True)), 4),
        wer_reference=None, wer_native=None,
        max_logit_diff=round(max(diffs), 5) if diffs else None, logits_compared=len(diffs),
        worst=[{"chunk": i, "token_edits": dists[i], "reference": reference[i].text, "native": native[i].text}
               for i in worst if dists[i]],
    )


def _run(engine: TokenEngine, audios: list[np.ndarray], batch: int) -> list[ItemOutput]:
    order = sorted(range(len(audios)), key=lambda i: len(audios[i]))  # length-sorted, like the worker
    out: list[ItemOutput | None] = [None] * len(audios)
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        # int16 chunks become float32 in [-1, 1], as the batch runner hands them to engines.
        for i, o in zip(idx, engine.token_outputs([as_float(audios[i]) for i in idx]), strict=True):
            out[i] = o
    return out  # type: ignore[return-value]


def _label_wer(files, decoded, labels, items, outputs: list[ItemOutput]) -> float | None:
    placed = [[] for _ in decoded]
    for (i, c), o in zip(items, outputs, strict=True):
        segs = [Segment(0.0, c.duration_s, o.text)] if o.text else []
        placed[i].extend(place(c.region_map(), c.channel, segs))
    pairs = []
    for i, (f, d) in enumerate(zip(files, decoded, strict=True)):
        refs = labels.get(f.name, {}).get("channels")
        if refs:
            got = as_channels(order_segments(placed[i]), d.n_channels)
            pairs.extend((r["text"], g["text"]) for r, g in zip(refs, got, strict=True))
    return round(corpus_wer(pairs), 4) if pairs else None


def run_parity(reference: TokenEngine, native: TokenEngine, folder: Path, batch: int = 1) -> ParityReport:
    if batch > 1:
        log.warning("parity at batch %d: %s", batch, BATCH_NOTE)
    files, labels = load_labelled(folder)
    decoded = [decode(f.read_bytes(), f.name) for f in files]
    items, audios = chunk_all(decoded, chunking_for(native.name))
    ref_out, nat_out = _run(reference, audios, batch), _run(native, audios, batch)
    report = compare(ref_out, nat_out)
    report.wer_reference = _label_wer(files, decoded, labels, items, ref_out)
    report.wer_native = _label_wer(files, decoded, labels, items, nat_out)
    report.batch, report.note = batch, BATCH_NOTE if batch > 1 else None
    return report
