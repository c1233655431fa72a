"""Slot-for-slot parity of two builds of the native Granite NAR model (eager against compiled).

With random weights the editor's logits are nearly flat over a 100k vocabulary, so bf16 rounding
in another order flips an argmax somewhere in almost every chunk, and a flipped draft token
changes every slot after it: "token ids equal on k of n chunks" says little about whether the
builds compute the same function. So both builds also edit the same drafts (the reference
build's), and each text slot is compared: whether its argmax agrees, and how far the other
build's logit of the reference's token moved, against the spread of the reference's logits and
the gap between its top two. The logit error is the figure that carries over to the real
weights: a trained model's slots flip only where its own top two are closer than that error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from callscribe.engines.nar.modeling import Draft, GraniteNar

TOP_K = 8  # the reference's best tokens kept per slot: where the other build's choice ranks among them
GROUP = 32  # chunks per forward pass: their logits are chunks x ~230 slots x vocabulary floats


@dataclass
class Reference:
    """What the reference build gave on a sample of chunks: its own drafts and tokens, and per
    text slot of the edit of those drafts its TOP_K logits and ids and the spread of all its logits."""

    drafts: list[Draft]
    tokens: list[list[int]]
    top_vals: list[torch.Tensor]  # per chunk: (slots, TOP_K) float32, on the CPU
    top_ids: list[torch.Tensor]  # per chunk: (slots, TOP_K) int64
    spread: list[torch.Tensor]  # per chunk: (slots,) standard deviation of the slot's logits


def _groups(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def reference(model: GraniteNar, waves: list[torch.Tensor], draft_tokens_per_s: float | None,
              group: int = GROUP) -> Reference:
    ref = Reference(drafts=[], tokens=[], top_vals=[], top_ids=[], spread=[])
    for part in _groups(waves, group):
        out = model.transcribe(list(part), draft_tokens_per_s=draft_tokens_per_s, return_logits=True)
        ref.drafts += list(zip(out.drafts, out.draft_steps, strict=True))
        ref.tokens += out.tokens
        for logits in out.logits:
            vals, ids = logits.topk(min(TOP_K, logits.shape[-1]), dim=-1)
            ref.top_vals.append(vals.cpu())
            ref.top_ids.append(ids.cpu())
            ref.spread.append(logits.std(dim=-1).cpu())
    return ref


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0)


def _quantile(x: torch.Tensor, q: float) -> float | None:
    return round(float(torch.quantile(x, q)), 6) if x.numel() else None


def compare(model: GraniteNar, waves: list[torch.Tensor], ref: Reference, draft_tokens_per_s: float | None,
            group: int = GROUP) -> dict:
    """``model`` against the reference on the same chunks: free-running (chunks whose drafts and whose
    tokens are identical), then editing the reference's drafts, slot for slot."""
    tokens, drafts = [], []
    for part in _groups(waves, group):
        out = model.transcribe(list(part), draft_tokens_per_s=draft_tokens_per_s)
        tokens += out.tokens
        drafts += list(zip(out.drafts, out.draft_steps, strict=True))
    agree, err, margin, flip_margin, spread, chunks_equal, outside = [], [], [], [], [], 0, 0
    k = 0
    for part, forced in zip(_groups(waves, group), _groups(ref.drafts, group), strict=True):
        out = model.transcribe(list(part), return_logits=True, drafts=list(forced))
        for logits in out.logits:
            top_vals, top_ids = ref.top_vals[k], ref.top_ids[k]
            if logits.shape[0] != top_ids.shape[0]:
                raise ValueError(f"chunk {k}: {logits.shape[0]} text slots against the reference's {top_ids.shape[0]}")
            got = logits.argmax(-1).cpu()
            same = got == top_ids[:, 0]
            chunks_equal += bool(same.all())
            # How far this build moved the logit of the reference's choice, slot by slot.
            err.append((logits.gather(-1, top_ids[:, :1].to(logits.device)).squeeze(-1).float().cpu()
                        - top_vals[:, 0]).abs())
            if top_vals.shape[1] > 1:
                margin.append(top_vals[:, 0] - top_vals[:, 1])
            # Where the choice differs: the reference's own gap between its choice and this one's
            # (past its top k: at least the gap to its k-th).
            rank = top_ids[~same] == got[~same, None]
            outside += int((~rank.any(-1)).sum())
            flip_margin.append(top_vals[~same, 0] - torch.where(rank.any(-1), (top_vals[~same] * rank).sum(-1),
                                                                 top_vals[~same, -1]))
            agree.append(same)
            spread.append(ref.spread[k])
            k += 1
    agree_t, err_t, margin_t, flips_t, spread_t = map(_cat, (agree, err, margin, flip_margin, spread))
    slots = int(agree_t.numel())
    err_max = float(err_t.max()) if slots else 0.0
    equal = sum(a == b for a, b in zip(tokens, ref.tokens, strict=True))
    return {
        "chunks": len(tokens),
        "equal": equal,
        "share": round(equal / len(tokens), 4) if tokens else None,
        "drafts_equal": sum(a == b for a, b in zip(drafts, ref.drafts, strict=True)),
        "same_drafts": {
            "chunks_equal": chunks_equal,
            "slots": slots,
            "slots_equal": int(agree_t.sum()),
            "slot_share": round(float(agree_t.float().mean()), 6) if slots else None,
            "logit_err_p50": _quantile(err_t, 0.5),
            "logit_err_p99": _quantile(err_t, 0.99),
            "logit_err_max": round(err_max, 6),
            "logit_spread_p50": _quantile(spread_t, 0.5),
            "top2_gap_p01": _quantile(margin_t, 0.01),
            "top2_gap_p50": _quantile(margin_t, 0.5),
            # The reference's slots whose top two are closer than the largest error: the ones a
            # build that differs only by rounding can flip.
            "near_ties": int((margin_t <= err_max).sum()),
            "flips": int(flips_t.numel()),
            "flip_gap_max": round(float(flips_t.max()), 6) if flips_t.numel() else None,
            "flips_outside_top_k": outside,
        },
    }
