"""Diarization error of the mono diarizer, on two-speaker mono calls made from the stereo sample.

Material (no download, no synthesiser): the stereo sample call mixed down to mono, with
its measured turns as the reference; and "rearranged" calls, where the sample's turns,
cut from their own channel, are laid end to end in a new order with new gaps (some short
enough that the two voices fall in one speech region), and a gain per voice. One-speaker
calls are made the same way from one channel's turns. ``scripts/diarization_eval.py`` adds
calls spoken by Festival voices when Festival is installed, and measures the cost.

The error is the diarization error rate (DER): missed speech, false alarm and speaker
confusion over the reference speech time, with the best mapping of hypothesis speakers
to reference speakers and a collar (0.25 s, NIST's usual) around each reference turn's
edges where nothing is scored.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from callscribe.audio import decode
from callscribe.chunking import FRAME_MS, diarize_channel
from callscribe.diarization import DEFAULT_DIARIZATION, DiarizationParams
from callscribe.samples import labels, sample_dir

Turn = tuple[float, float, str]  # start s, end s, speaker
STEP = 0.01  # scoring resolution, seconds


@dataclass(frozen=True)
class Material:
    name: str
    audio: np.ndarray  # int16 mono
    rate: int
    reference: list[Turn]

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.rate


@dataclass(frozen=True)
class Score:
    name: str
    speech_s: float
    miss: float
    false_alarm: float
    confusion: float
    n_ref: int
    n_hyp: int

    @property
    def der(self) -> float:
        return self.miss + self.false_alarm + self.confusion


def _grid(turns: list[Turn], n: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for a, b, s in turns:
        m = out.setdefault(s, np.zeros(n, dtype=bool))
        m[int(round(a / STEP)) : int(round(b / STEP))] = True
    return out


def der(reference: list[Turn], hypothesis: list[Turn], duration_s: float, collar_s: float = 0.25,
        name: str = "") -> Score:
    """Missed speech, false alarm and confusion, each a fraction of the scored reference speech."""
    n = int(np.ceil(duration_s / STEP)) + 1
    ref, hyp = _grid(reference, n), _grid(hypothesis, n)
    scored = np.ones(n, dtype=bool)
    c = int(round(collar_s / STEP))
    for a, b, _ in reference:
        for t in (int(round(a / STEP)), int(round(b / STEP))):
            scored[max(0, t - c) : t + c] = False
    ref_any = np.any(list(ref.values()), axis=0) if ref else np.zeros(n, bool)
    hyp_any = np.any(list(hyp.values()), axis=0) if hyp else np.zeros(n, bool)
    total = max(int((ref_any & scored).sum()), 1)
    miss = int((ref_any & ~hyp_any & scored).sum())
    fa = int((hyp_any & ~ref_any & scored).sum())
    # Best one-to-one mapping of hypothesis speakers onto reference speakers.
    rnames, hnames = list(ref), list(hyp)
    both = ref_any & hyp_any & scored
    best_agree = 0
    for perm in itertools.permutations(hnames, min(len(hnames), len(rnames))):
        agree = sum(int((ref[r] & hyp[h] & both).sum()) for r, h in zip(rnames, perm, strict=False))
        best_agree = max(best_agree, agree)
    confusion = int(both.sum()) - best_agree
    return Score(name, total * STEP, miss / total, fa / total, confusion / total, len(ref), len(hyp))


def hypothesis(audio: np.ndarray, rate: int, params: DiarizationParams = DEFAULT_DIARIZATION,
               bridge_s: float = 1.0) -> list[Turn]:
    """The diarizer's turns in seconds, a speaker's pauses up to ``bridge_s`` bridged (as chunking
    keeps them) unless another speaker talks in between."""
    d = diarize_channel(audio, rate, settings=params)
    fs = FRAME_MS / 1000
    out: list[list] = []
    for a, b, s in d.turns:
        if out and out[-1][2] == s and a * fs - out[-1][1] <= bridge_s:
            out[-1][1] = b * fs
        else:
            out.append([a * fs, b * fs, s])
    return [(a, b, f"speaker_{s + 1}") for a, b, s in out]


def score(m: Material, params: DiarizationParams = DEFAULT_DIARIZATION) -> Score:
    return der(m.reference, hypothesis(m.audio, m.rate, params), m.duration_s, name=m.name)


# ---------------------------------------------------------------- material from the stereo sample


STEREO = "call-0001.wav"


def _stereo():
    d = decode((sample_dir() / STEREO).read_bytes(), STEREO)
    turns = labels()[STEREO]["turns"]
    return d, turns


def mixdown() -> Material:
    """The stereo sample as a mono recorder would have written it; reference: its channel turns."""
    d, turns = _stereo()
    mono = ((d.channels[0].astype(np.int32) + d.channels[1]) // 2).astype(np.int16)
    ref = [(t["start_s"], t["end_s"], t["speaker"]) for t in turns]
    return Material(f"{STEREO} mixed down", mono, d.source_rate, ref)


def _pieces(margin_s: float = 0.15):
    d, turns = _stereo()
    r = d.source_rate
    out = []
    for t in turns:
        a, b = int((t["start_s"] - margin_s) * r), int((t["end_s"] + margin_s) * r)
        out.append((t["speaker"], d.channels[t["channel"]][max(a, 0) : b], margin_s))
    return out, r


def rearranged(seed: int, n_turns: int = 14, speakers: tuple[str, ...] = ("agent", "customer"),
               gaps_s: tuple[float, float] = (0.1, 1.2)) -> Material:
    """The sample's turns of ``speakers`` in a new random order (a speaker may keep the floor
    for two turns), random gaps, a random gain per speaker."""
    rng = np.random.default_rng(seed)
    pieces, r = _pieces()
    by = {s: [p for p in pieces if p[0] == s] for s in speakers}
    gain = {s: 10 ** (rng.uniform(-6, 6) / 20) for s in speakers}
    audio = [np.zeros(int(0.5 * r), np.float32)]
    ref: list[Turn] = []
    pos = len(audio[0])
    who = speakers[int(rng.integers(len(speakers)))]
    for _ in range(n_turns):
        _, x, margin = by[who][int(rng.integers(len(by[who])))]
        y = x.astype(np.float32) * gain[who]
        ref.append(((pos / r) + margin, (pos + len(x)) / r - margin, who))
        gap = np.zeros(int(rng.uniform(*gaps_s) * r), np.float32)
        audio += [y, gap]
        pos += len(x) + len(gap)
        if len(speakers) > 1 and rng.random() < 0.8:
            who = next(s for s in rng.permutation(speakers) if s != who)
    audio.append(np.zeros(int(0.5 * r), np.float32))
    noise = rng.normal(0, 30, size=pos + int(0.5 * r)).astype(np.float32)
    y = np.clip(np.concatenate(audio) + noise, -32768, 32767).astype(np.int16)
    kind = "two voices" if len(speakers) > 1 else f"one voice ({speakers[0]})"
    return Material(f"rearranged {kind}, seed {seed}", y, r, ref)


def two_speaker_set(n_rearranged: int = 6) -> list[Material]:
    return [mixdown(), *(rearranged(seed) for seed in range(1, n_rearranged + 1))]


def one_speaker_set() -> list[Material]:
    return [rearranged(11, 8, ("agent",)), rearranged(12, 8, ("customer",))]
