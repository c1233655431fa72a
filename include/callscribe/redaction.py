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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

MASK = "[redacted]"
MIN_DIGITS = 5  # digit groups: fewer than this is a year, a time, a quantity
MIN_SPOKEN = 4  # spoken digits: "one two" is not a number anyone dictates

SPOKEN = {"zero": 1, "oh": 1, "one": 1, "two": 1, "three": 1, "four": 1, "five": 1, "six": 1,
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


# What can start a number: a digit or a number word (or a spoken separator). Only the words
# holding one are looked at; everything else ends a number (most words are not numbers). Found
# with str.find per word, which scans text several times faster than one regular expression.
_DIGITS = re.compile(r"[0-9]+")
_NUMBER_WORDS = tuple(sorted({*SPOKEN, *REPEAT, *CONNECTORS}))
_SPACE = re.compile(r"\s")


def _hits(text: str) -> list[int]:
    """Positions where a digit run or a whole number word starts."""
    low = text.lower()
    if len(low) != len(text):  # a character whose lower case is longer: positions would shift
        low = "".join(c.lower() if len(c.lower()) == 1 else "_" for c in text)
    found = [m.start() for m in _DIGITS.finditer(text)]
    for word in _NUMBER_WORDS:
        i = low.find(word)
        while i != -1:
            end = i + len(word)
            if (i == 0 or not low[i - 1].isalpha()) and (end == len(low) or not low[end].isalpha()):
                found.append(i)
            i = low.find(word, end)
    return sorted(found)


def _candidates(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the whitespace-separated words that hold a hit, in order, each once."""
    end = -1
    for hit in _hits(text):
        if hit < end:
            continue  # inside the word found last
        start = hit
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        after = _SPACE.search(text, hit)
        end = after.start() if after else len(text)
        yield start, end


def _runs(text: str) -> list[tuple[int, int]]:
    """Character spans of ``text`` to mask."""
    spans: list[tuple[int, int]] = []
    run: list[_Token] = []

    def close() -> None:
        if run:
            digits = sum(t.digits for t in run)
            spoken = sum(t.digits for t in run if t.spoken)
            money = len(run) == 1 and run[0].money
            if not money and (digits >= MIN_DIGITS or spoken >= MIN_SPOKEN):
                spans.append((run[0].start, run[-1].end))
            run.clear()

    glue, prev_end = 0, None
    for start, end in _candidates(text):
        if prev_end is None or not text[prev_end:start].isspace():
            close()  # another word came between: the number (if any) ended there
            glue = 0
        prev_end = end
        tok = _classify(text, start, end)
        if tok.digits or tok.spoken:
            run.append(tok)
            glue = 0
        elif run and glue == 0 and text[tok.start:tok.end].lower() in CONNECTORS:
            glue = 1  # one spoken separator between two number tokens keeps the number going
        else:
            close()
            glue = 0
    close()
    return spans


def redact(text: str) -> str:
    """One text on its own (a segment with no neighbours, an error message)."""
    return redact_channel([text])[0]


def _masks(texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """Per text, the character spans to mask, found over the channel's texts joined in order."""
    bounds, pos = [], 0
    for t in texts:
        bounds.append((pos, pos + len(t)))
        pos += len(t) + 1
    spans = _runs(" ".join(texts))
    return [[(max(a, lo) - lo, min(b, hi) - lo) for a, b in spans if a < hi and b > lo] for lo, hi in bounds]


def _apply(text: str, masks: list[tuple[int, int]]) -> str:
    pieces, cursor = [], 0
    for a, b in masks:
        pieces += [text[cursor:a], MASK]
        cursor = b
    pieces.append(text[cursor:])
    return "".join(pieces)


def redact_channel(texts: Sequence[str]) -> list[str]:
    """A channel's segment texts in order -> the same texts with numbers masked; a number that
    runs from one segment into the next is masked in both."""
    return [_apply(t, m) for t, m in zip(texts, _masks(texts), strict=True)]


def redact_channel_timed(texts: Sequence[str], starts: Sequence[Sequence[float] | None],
                         ) -> tuple[list[str], list[list[float] | None]]:
    """redact_channel, and each text's word start times (one per whitespace-separated word, or None)
    carried over to the redacted text: a masked number becomes one word, starting when the number
    did. So the times line up with what analysts read and say nothing about how many words a number
    took. None where the times did not line up with the text in the first place."""
    masked_texts, timed = [], []
    for text, masks, times in zip(texts, _masks(texts), starts, strict=True):
        masked = _apply(text, masks) if masks else text
        masked_texts.append(masked)
        if times is None:
            timed.append(None)
            continue
        if not masks:  # the common case: nothing masked, the times stand as they are
            timed.append(list(times) if len(times) == len(text.split()) else None)
            continue
        words = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        if len(times) != len(words):
            timed.append(None)
            continue
        out, last_mask = [], None
        for (a, b), t in zip(words, times, strict=True):
            hit = next((i for i, (ma, mb) in enumerate(masks) if a < mb and b > ma), None)
            if hit is not None and hit == last_mask:
                continue  # another word of the same masked number
            out.append(float(t))
            last_mask = hit
        timed.append(out if len(out) == len(masked.split()) else None)
    return masked_texts, timed
