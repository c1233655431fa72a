"""Generated benchmark data: long calls tiled from the labelled samples, synthetic segments."""

from __future__ import annotations

import io
import itertools
import random

import numpy as np
import soundfile as sf

from callscribe.samples import sample_dir

WORDS = ("account bill refund discount cancel subscription router internet connection payment card "
         "delivery address order invoice upgrade plan price month contract support agent customer "
         "password login email phone number transfer balance credit charge fee late service outage").split()
NAMES = ["Sarah", "David", "Siobhan", "Mohammed", "Priya", "Joaquin", "Olga", "Kenji", "Aoife", "Thabo"]
PHRASES = ["I want to cancel my account", "can you give me a refund", "my internet connection is slow",
           "I would like to upgrade my plan", "the bill was too high this month", "please update my address"]


def tiled_call(seconds: float, stereo: bool, rate: int = 8000) -> np.ndarray:
    """Speech with pauses, `seconds` long: the stereo sample call repeated."""
    x, sr = sf.read(sample_dir() / "call-0001.wav", dtype="float32", always_2d=True)
    assert sr == rate
    reps = int(np.ceil(seconds * rate / len(x)))
    out = np.tile(x, (reps, 1))[: int(seconds * rate)]
    return out if stereo else out.mean(axis=1, keepdims=True)


def encode(audio: np.ndarray, rate: int, fmt: str, subtype: str, **kw) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype, **kw)
    return buf.getvalue()


_SYLLABLES = [c + v for c in "bklmnrt" for v in "aeiou"]


def _vocabulary(n: int = 6000) -> list[str]:
    rng = random.Random(7)
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


VOCABULARY = _vocabulary()
# Zipf-like word frequencies, as in speech: a few words everywhere, most words rare.
# Cumulative once: random.choices would otherwise sum 6000 weights on every call.
_CUM_WEIGHTS = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(VOCABULARY))))


def sentence(rng: random.Random) -> str:
    """A segment's worth of words: mostly everyday filler, sometimes a call-center topic."""
    parts = rng.choices(VOCABULARY, cum_weights=_CUM_WEIGHTS, k=rng.randint(4, 16))
    if rng.random() < 0.04:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(PHRASES))
    for _ in range(rng.choices((0, 1, 2), weights=(80, 17, 3))[0]):
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(WORDS))
    if rng.random() < 0.01:
        parts.append(f"this is {rng.choice(NAMES)}")
    return " ".join(parts)
