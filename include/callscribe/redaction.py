"""Masking numbers in transcripts before analysts see them (card, account and phone numbers).

The loader redacts each channel of a recording once, when it loads the transcript, and the
database keeps both: the raw text for the privileged role, the redacted text (and the search
index built from it) for analysts. A number is a run of neighbouring number tokens:

- digit groups with any light separators between them: ``4111 1111 1111 1111``,
  ``4111-1111-1111-1111``, ``4111.1111.1111.1111``, ``4111, 1111, 1111, 1111``,
  ``(555) 123-4567``, ``555.123.4567`` (dates such as ``2026-11-26`` are not numbers);
- spoken digits: ``four one one one``, ``oh``, ``zero``, ``double five``, mixed with digits
  (``four 5 6 7 8``); a spoken separator between groups (``4111 dash 1111``) joins them.

A run is masked when it holds 5 or more digits, or 4 or more spoken digits. Runs continue
across the boundary between a channel's consecutive segments, so a number dictated over two
segments is masked in both. Amounts stay readable: a lone ``12.99``, ``1,250`` or
``$1,299.99`` (thousands groups of three, at most two decimals) is money, not an account.
Each masked run becomes ``[redacted]``; text around it is kept as it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MASK = "[redacted]"
MIN_DIGITS = 5  # digit groups: fewer than this is a year, a time, a quantity
MIN_SPOKEN = 4  # spoken digits: "one two" is not a number anyone dictates

SPOKEN = {"zero": 1, "oh": 1, "o": 1, "one": 1, "two": 1, "three": 1, "four": 1, "five": 1, "six": 1,
          "seven": 1, "eight": 1, "nine": 1}
REPEAT = {"double": 2, "triple": 3}  # "double five": two digits
CONNECTORS = {"dash", "hyphen", "dot", "slash", "space"}  # "4111 dash 1111": one number
# A token: anything between whitespace. Punctuation hugging a token is trimmed before it is judged.
_TOKEN = re.compile(r"\S+")
_EDGE = ".,;:!?\"'“”‘’"
_DIGIT_GROUP = re.compile(r"^[(\[]?\$?\d[\d().,\-/]*\d?[)\]]?$")
_DATE = re.compile(r"^(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/(\d{2}|\d{4}))$")
# Money: a dollar sign, thousands groups of three, or cents; a bare "45678" is not money.
_MONEY = re.compile(r"^(\$\d[\d,]*(\.\d{1,2})?|\d{1,3}(,\d{3})+(\.\d{1,2})?|\d+\.\d{1,2})$")


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    digits: int  # digits it contributes to a number (0: not a number token)
    spoken: bool
    money: bool


def _classify(text: str, start: int, end: int) -> _Token:
    word = text[start:end]
    core = word.strip(_EDGE)
    if not core:
        return _Token(start, end, 0, False, False)
    lead = len(word) - len(word.lstrip(_EDGE))
    start, end = start + lead, start + lead + len(core)  # the mask leaves hugging punctuation alone
    lower = core.lower().replace("-", " ").split()
    if lower and all(w in SPOKEN or w in REPEAT for w in lower) and any(w in SPOKEN for w in lower):
        count = sum(SPOKEN.get(w, 0) for w in lower) + sum(REPEAT[w] - 1 for w in lower if w in REPEAT)
        return _Token(start, end, count, True, False)
    if len(lower) == 1 and lower[0] in REPEAT:
        # "double five" is two digits: "double" adds the repeats of the digit after it.
        return _Token(start, end, REPEAT[lower[0]] - 1, True, False)
    if _DIGIT_GROUP.match(core) and not _DATE.match(core):
        digits = sum(c.isdigit() for c in core)
        return _Token(start, end, digits, False, bool(_MONEY.match(core)))
    return _Token(start, end, 0, False, False)


def _runs(text: str) -> list[tuple[int, int]]:
    """Character spans of ``text`` to mask."""
    tokens = [_classify(text, m.start(), m.end()) for m in _TOKEN.finditer(text)]
    spans, run, glue = [], [], 0
    for tok in [*tokens, None]:
        if tok is not None and (tok.digits or tok.spoken):
            run.append(tok)
            glue = 0
            continue
        if tok is not None and run and text[tok.start:tok.end].lower() in CONNECTORS and glue == 0:
            glue = 1  # one spoken separator between two number tokens keeps the number going
            continue
        glue = 0
        if run:
            digits = sum(t.digits for t in run)
            spoken = sum(t.digits for t in run if t.spoken)
            money = len(run) == 1 and run[0].money
            if not money and (digits >= MIN_DIGITS or spoken >= MIN_SPOKEN):
                spans.append((run[0].start, run[-1].end))
            run = []
    return spans


def redact(text: str) -> str:
    """One text on its own (a segment with no neighbours, an error message)."""
    return redact_channel([text])[0]


def redact_channel(texts: Sequence[str]) -> list[str]:
    """A channel's segment texts in order -> the same texts with numbers masked; a number that
    runs from one segment into the next is masked in both."""
    joined, bounds, pos = [], [], 0
    for t in texts:
        bounds.append((pos, pos + len(t)))
        joined.append(t)
        pos += len(t) + 1
    spans = _runs(" ".join(joined))
    out = []
    for (lo, hi), text in zip(bounds, texts, strict=True):
        pieces, cursor = [], lo
        for a, b in spans:
            if b <= lo or a >= hi:
                continue
            a, b = max(a, lo), min(b, hi)
            pieces += [text[cursor - lo : a - lo], MASK]
            cursor = b
        pieces.append(text[cursor - lo :])
        out.append("".join(pieces))
    return out
