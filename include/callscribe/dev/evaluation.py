"""Accuracy: Whisper-style text normalisation and word error rate."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache


@cache
def _whisper_normalizer():
    try:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer
    except ImportError:
        return None
    # Whisper's British-to-American spelling table ships with its tokenizer, not with
    # transformers; without it the normaliser still handles numbers, case and punctuation.
    return EnglishTextNormalizer({})


def normalize(text: str) -> str:
    """Whisper's English normaliser when transformers is installed, else a basic one."""
    n = _whisper_normalizer()
    if n is not None:
        return n(text)
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words), on normalised text."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def wer(reference: str, hypothesis: str) -> float:
    errors, n = word_errors(reference, hypothesis)
    return errors / n if n else float(errors > 0)


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Errors summed over all pairs divided by reference words summed (not a mean of rates)."""
    errors = words = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        errors, words = errors + e, words + n
    return errors / words if words else 0.0
