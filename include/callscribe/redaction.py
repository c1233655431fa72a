"""Masking numbers in transcripts before analysts see them (card, account and phone numbers).

The loader redacts each channel of a recording once, when it loads the transcript, and the
database keeps both: the raw text for the privileged role, the redacted text (and the search
index built from it) for analysts. A number is a run of neighbouring number words:

- digit groups, whatever the signs between or around the digits: ``4111 1111 1111 1111``,
  ``4111-1111``, ``4111.1111``, ``4111, 1111``, ``4111–1111``, ``(555) 123-4567``,
  ``+1 555 123 4567``, ``#45678``, and any Unicode digits (``４１１１``, ``٤١١١``);
- spoken digits: ``four one one one``, ``oh``, ``zero``, ``double five``, ``four-five-six``,
  mixed with digits (``four 5 6 7 8``);
- between two of those, up to two separators said or written on their own: ``dash``,
  ``dot``, ``-``, ``|``.

A run is masked when it holds 5 or more digits, or 4 or more spoken digits. Runs continue
across the boundary between a channel's consecutive segments, so a number dictated over two
segments is masked in both. Digits glued to letters (``acct#45678``, ``x12345``,
``45678th``) are masked in the word when there are 5 or more. What stays readable, and ends a
run: money (``12.99``, ``1,250``, ``$1,299.99``), dates (``2026-11-26``, ``11/26/2024``,
``26.11.2024``) and runs made only of years (``in 2024, 2025``). Each masked run becomes
``[redacted]``; text around it is kept as it was.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

MASK = "[redacted]"
MIN_DIGITS = 5  # digit groups: fewer than this is a quantity, a time, a room
MIN_SPOKEN = 4  # spoken digits: "one two" is not a number anyone dictates
MAX_GLUE = 2  # separators that may stand between two parts of one number

SPOKEN = {"zero": 1, "oh": 1, "one": 1, "two": 1, "three": 1, "four": 1, "five": 1, "six": 1,
          "seven": 1, "eight": 1, "nine": 1}
REPEAT = {"double": 2, "triple": 3}  # "double five": two digits
CONNECTORS = {"dash", "hyphen", "dot", "slash", "space"}  # "4111 dash 1111": one number
_WORDS = tuple(sorted({*SPOKEN, *REPEAT, *CONNECTORS}))

_EDGE = ".,;:!?\"'“”‘’"
_DIGIT = re.compile(r"\d")
_LETTERS = re.compile(r"[^\W\d_]+")
_SPACE = re.compile(r"\s")
# Money: thousands groups of three and/or cents, or a dollar sign with at most six digits before cents.
_MONEY = re.compile(r"^(\$\d{1,6}(\.\d{1,2})?|\$?\d{1,3}(,\d{3})+(\.\d{1,2})?|\$?\d+\.\d{1,2})$")
_DATE = re.compile(r"^(\d{4}[-/.]\d{1,2}([-/.]\d{1,2})?|\d{1,2}[-/.]\d{1,2}[-/.](\d{2}|\d{4}))$")
_YEAR = re.compile(r"^(19|20)\d\d$")


def _is_sign(word: str) -> bool:
    return not any(c.isalnum() for c in word)


def _fold(text: str) -> str:
    """Lower case and compatibility forms ("ｆｏｕｒ" -> "four"), one character for one, so
    positions in the folded text are positions in the text."""
    if text.isascii():
        return text.lower()
    out = []
    for c in text:
        f = unicodedata.normalize("NFKC", c).lower()
        out.append(f if len(f) == 1 else c)
    return "".join(out)


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    kind: str  # "digits", "spoken", "glue", "other"
    digits: int = 0  # digits it adds to a number
    year: bool = False


def _token(text: str, folded: str, start: int, end: int) -> _Token:
    low = folded[start:end]
    core = low.strip(_EDGE)
    if not core:
        return _Token(start, end, "glue")  # punctuation alone, such as "-" or "|"
    lead = len(low) - len(low.lstrip(_EDGE))
    a, b = start + lead, start + lead + len(core)  # the mask leaves hugging punctuation alone
    letters = _LETTERS.findall(core)
    has_digit = _DIGIT.search(core) is not None
    if not has_digit and letters:
        if core in CONNECTORS:
            return _Token(a, b, "glue")
        if all(w in SPOKEN or w in REPEAT for w in letters) and any(w in SPOKEN for w in letters):
            count = sum(SPOKEN.get(w, 0) for w in letters) + sum(REPEAT[w] - 1 for w in letters if w in REPEAT)
            return _Token(a, b, "spoken", count)
        if len(letters) == 1 and letters[0] in REPEAT:
            # "double five" is two digits: "double" adds the repeats of the digit after it.
            return _Token(a, b, "spoken", REPEAT[letters[0]] - 1)
        return _Token(start, end, "other")
    if not has_digit:
        return _Token(start, end, "glue")  # signs alone
    digits = sum(c.isdigit() for c in core)
    if letters:
        return _Token(start, end, "glued", digits)  # "acct#45678": masked on its own below
    ascii_core = "".join(str(unicodedata.digit(c)) if c.isdigit() else c for c in core)
    if _MONEY.match(ascii_core) or _DATE.match(ascii_core):
        return _Token(start, end, "other")
    return _Token(a, b, "digits", digits, bool(_YEAR.match(ascii_core)))


def _hits(folded: str) -> list[int]:
    """Positions where a digit or a whole number word starts (str.find per word: several times
    faster than one regular expression over the text)."""
    found = [m.start() for m in _DIGIT.finditer(folded)]
    for word in _WORDS:
        i = folded.find(word)
        while i != -1:
            end = i + len(word)
            if (i == 0 or not folded[i - 1].isalpha()) and (end == len(folded) or not folded[end].isalpha()):
                found.append(i)
            i = folded.find(word, end)
    return sorted(found)


def _candidates(text: str) -> list[tuple[int, int]]:
    """Spans of the whitespace-separated words that hold a digit or a number word, in order."""
    out: list[tuple[int, int]] = []
    end = -1
    for hit in _hits(_fold(text)):
        if hit < end:
            continue  # inside the word found last
        start = hit
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        after = _SPACE.search(text, hit)
        end = after.start() if after else len(text)
        out.append((start, end))
    return out


def _runs(text: str) -> list[tuple[int, int]]:
    """Character spans of ``text`` to mask, in order."""
    folded = _fold(text)
    spans: list[tuple[int, int]] = []
    run: list[_Token] = []

    def close() -> None:
        if run:
            digits = sum(t.digits for t in run)
            spoken = sum(t.digits for t in run if t.kind == "spoken")
            only_years = all(t.year for t in run)
            if not only_years and (digits >= MIN_DIGITS or spoken >= MIN_SPOKEN):
                spans.append((run[0].start, run[-1].end))
            run.clear()

    glue, prev_end = 0, None
    for start, end in _candidates(text):
        # Words between two candidates: signs alone ("-", "|") may join a number, anything else ends it.
        gap = text[prev_end:start].split() if prev_end is not None else []
        if prev_end is None or glue + len(gap) > MAX_GLUE or not all(_is_sign(w) for w in gap):
            close()
            glue = 0
        else:
            glue += len(gap)
        prev_end = end
        tok = _token(text, folded, start, end)
        if tok.kind in ("digits", "spoken"):
            run.append(tok)
            glue = 0
        elif tok.kind == "glue" and run and glue < MAX_GLUE:
            glue += 1
        elif tok.kind == "glued":
            close()
            glue = 0
            digit_at = [i for i in range(start, end) if text[i].isdigit()]
            if tok.digits >= MIN_DIGITS:
                spans.append((digit_at[0], digit_at[-1] + 1))
        else:
            close()
            glue = 0
    close()
    return spans


def redact(text: str) -> str:
    """One text on its own (a segment with no neighbours, an error message)."""
    return redact_channel([text])[0]


def _masks(texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """Per text, the character spans to mask, found over the channel's texts joined in order;
    a span's part in one text never starts or ends with whitespace, and is never empty."""
    bounds, pos = [], 0
    for t in texts:
        bounds.append((pos, pos + len(t)))
        pos += len(t) + 1
    spans = _runs(" ".join(texts))
    out: list[list[tuple[int, int]]] = []
    k = 0
    for (lo, hi), text in zip(bounds, texts, strict=True):
        while k < len(spans) and spans[k][1] <= lo:
            k += 1
        mine, j = [], k
        while j < len(spans) and spans[j][0] < hi:
            a, b = max(spans[j][0], lo) - lo, min(spans[j][1], hi) - lo
            while a < b and text[a].isspace():
                a += 1
            while b > a and text[b - 1].isspace():
                b -= 1
            if a < b:
                mine.append((a, b))
            j += 1
        out.append(mine)
    return out


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
    """What analysts get: redact_channel with whitespace made single spaces, and each text's word
    start times (one per word, or None) carried over to the redacted text: a masked number
    becomes one word, starting when the number did. So the times line up with what analysts
    read (split on spaces, the same in Python and in the database) and say nothing about how
    many words a number took. None where the times did not line up with the text in the first
    place."""
    masked_texts, timed = [], []
    for text, masks, times in zip(texts, _masks(texts), starts, strict=True):
        masked = " ".join((_apply(text, masks) if masks else text).split())
        masked_texts.append(masked)
        if times is None:
            timed.append(None)
            continue
        if not masks:  # the common case: nothing masked, the times stand as they are
            # (str.split and the \S+ runs below split at the same whitespace)
            timed.append([float(t) for t in times] if len(times) == len(text.split()) else None)
            continue
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        if len(times) != len(words):
            timed.append(None)
            continue
        out, last_mask, k = [], None, 0
        for (a, b), t in zip(words, times, strict=True):
            while k < len(masks) and masks[k][1] <= a:
                k += 1
            hit = k if k < len(masks) and masks[k][0] < b else None
            if hit is not None and hit == last_mask:
                continue  # another word of the same masked number
            out.append(float(t))
            last_mask = hit
        timed.append(out if len(out) == len(masked.split()) else None)
    return masked_texts, timed
