"""A small English normaliser for WER checks: case, punctuation and spelled-out digits."""

from __future__ import annotations

import re

_DIGITS = "zero one two three four five six seven eight nine".split()
_TENS = {"20": "twenty", "12": "twelve", "10": "ten", "11": "eleven"}


def normalize(text: str) -> str:
    t = text.lower().replace("%", " percent")
    t = re.sub(r"\b(\d+)\b", lambda m: _TENS.get(m.group(1)) or " ".join(_DIGITS[int(d)] for d in m.group(1)), t)
    t = t.replace("cancelling", "canceling")
    t = re.sub(r"[^a-z' ]", " ", t)
    return " ".join(t.split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(normalize(reference), normalize(hypothesis))
