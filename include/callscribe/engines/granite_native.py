"""Granite Speech NAR, native: our own PyTorch implementation (engines/nar) behind the engine interface.

Loads the checkpoint from a local folder through the documented name tables (the published
remote-code layout or transformers' native one, recognised from the tensor names), or
builds the architecture with random weights (``random_weights=True``) to measure throughput
without the checkpoint. On CUDA it runs in bf16 with flash-attn's varlen kernel for the
packed editor; on a CPU in float32 with the exact per-item fallback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from callscribe.engines.base import EngineOutOfMemory, Segment, TorchEngine, Word
from callscribe.engines.device import choose_device
from callscribe.engines.granite import HUB_ID, PINNED_REVISION, ModelDirError, missing_weights, model_dir
from callscribe.engines.tokens import ItemOutput

log = logging.getLogger(__name__)

# English speech runs at about 2.5-3 words a second, 1.3 BPE tokens a word: with random
# weights each draft is held at this many tokens per second of audio.
REALISTIC_DRAFT_TOKENS_PER_S = 4.0


def missing_native_files(path: Path) -> list[str]:
    """What the native engine reads: config, weights and tokenizer (no remote code, no processor)."""
    if not path.is_dir():
        return [f"the folder itself ({path})"]
    return [f for f in ("config.json", "tokenizer.json") if not (path / f).exists()] + missing_weights(path)


def starts_word(tokenizer: Any, token: int, cache: dict[int, bool] | None = None) -> bool:
    """Whether the token's text begins with whitespace in the middle of a sequence.

    Asked of the tokenizer by decoding the token twice in a row and looking at what the second
    copy adds: that works alike for byte-level BPE (Granite's: a leading space is part of the
    token), SentencePiece's word marker, WordPiece's ``##`` continuations and a word-level
    vocabulary (tokens joined with spaces). A byte that continues a UTF-8 character adds no
    whitespace, so a word is never cut inside a character. Cached per id in ``cache``.
    """
    known = cache.get(token) if cache is not None else None
    if known is None:
        one = tokenizer.decode([token], skip_special_tokens=True)
        two = tokenizer.decode([token, token], skip_special_tokens=True)
        added = two[len(one):] if two.startswith(one) else ""
        known = added[:1].isspace()
        if cache is not None:
            cache[token] = known
    return known


def timed_words(tokenizer: Any, ids: list[int], times: list[tuple[float, float]], duration: float,
                cache: dict[int, bool] | None = None) -> list[Word]:
    """Token ids grouped into words (a word starts at a token whose text starts with a space),
    each decoded on its own and timed from its first token's start to its last token's end.
    Words that decode to nothing (special tokens only) are dropped; times are clamped to
    [0, duration] and never go back."""
    groups: list[tuple[list[int], float, float]] = []
    for i, (t, (start, end)) in enumerate(zip(ids, times, strict=True)):
        if i == 0 or starts_word(tokenizer, t, cache):
            groups.append(([t], start, end))
        else:
            group, first, _ = groups[-1]
            group.append(t)
            groups[-1] = (group, first, end)
    words, floor = [], 0.0
    for group, start, end in groups:
        text = tokenizer.decode(group, skip_special_tokens=True).strip()
        if not text:
            continue
        start = min(max(start, floor), duration)
        end = min(max(end, start), duration)
        words.append(Word(start, end, text))
        floor = end
    return words


class GraniteNarNativeEngine(TorchEngine):
    name = "granite-nar-native"

    def __init__(self, path: Path | None = None, device: str | None = None, random_weights: bool = False,
                 size: str = "full", compile: bool | None = None, seed: int = 0, fuse: bool | None = None):
        import torch

        from callscribe.engines.nar.checkpoint import load_model
        from callscribe.engines.nar.config import NarConfig
        from callscribe.engines.nar.modeling import random_model

        self.torch = torch
        # Explicit device, else CALLSCRIBE_DEVICE (a GPU asked for and absent raises), else auto.
        self.device = choose_device(device)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = None
        self._word_start: dict[int, bool] = {}
        self.draft_tokens_per_s: float | None = None
        if random_weights:
            self.model = random_model(NarConfig.named(size), seed=seed, dtype=dtype, device=self.device)
            self.draft_tokens_per_s = REALISTIC_DRAFT_TOKENS_PER_S
            self.source = f"random weights ({size})"
        else:
            self.path = path or model_dir()
            missing = missing_native_files(self.path)
            if missing:
                raise ModelDirError(
                    f"Granite model folder {self.path} is incomplete; missing: {', '.join(missing)}. "
                    f"Download {HUB_ID} at revision {PINNED_REVISION} into it (see docs/granite.md).")
            from tokenizers import Tokenizer

            self.model = load_model(self.path, device=self.device, dtype=dtype)
            self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
            self.source = str(self.path)
        from callscribe.engines.nar.fuse import fusion_enabled, optimize_for_inference

        # Load-time fusions (same results, fewer kernels) on every device; CALLSCRIBE_NAR_FUSE=0 for A/B runs.
        self.fused = fuse if fuse is not None else fusion_enabled()
        if self.fused:
            optimize_for_inference(self.model)
        if compile if compile is not None else os.environ.get("CALLSCRIBE_NAR_COMPILE") == "1":
            # Encoder shapes repeat (frames round up to whole attention blocks); the editor's
            # packed length varies, so it is compiled with dynamic shapes.
            self.model.encoder = torch.compile(self.model.encoder)
            self.model.editor.layers = torch.nn.ModuleList(
                torch.compile(layer, dynamic=True) for layer in self.model.editor.layers)
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        log.info("Granite NAR native on %s (%s) from %s, %s", self.device, dtype, self.source,
                 "fused" if self.fused else "unfused")

    def run(self, prepared: Any) -> list[list[Segment]]:
        tensors, durations = prepared
        torch = self.torch
        try:
            waves = [t.to(self.device, non_blocking=True) for t in tensors]
            out = self.model.transcribe(waves, draft_tokens_per_s=self.draft_tokens_per_s)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise EngineOutOfMemory(str(exc)) from exc
        return [self._segments(ids, times, d)
                for ids, times, d in zip(out.tokens, out.token_times, durations, strict=True)]

    def _segments(self, ids: list[int], times: list[tuple[float, float]], duration: float) -> list[Segment]:
        """One segment per chunk, its text the full decode (as without word times), spanning the
        chunk as before; its words say when each was spoken."""
        text = self.decode(ids)
        if not text:
            return []
        words = timed_words(self.tokenizer, ids, times, duration, self._word_start)
        return [Segment(0.0, duration, text, words=tuple(words))]

    def token_outputs(self, batch: list[np.ndarray]) -> list[ItemOutput]:
        """Token ids, text and editor logits per chunk (for `callscribe parity`)."""
        tensors, _ = self.prepare(batch)
        waves = [t.to(self.device) for t in tensors]
        out = self.model.transcribe(waves, draft_tokens_per_s=self.draft_tokens_per_s, return_logits=True)
        return [ItemOutput(ids, self.decode(ids), lg.cpu()) for ids, lg in zip(out.tokens, out.logits, strict=True)]

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:  # random weights: no vocabulary to speak of
            return ""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
