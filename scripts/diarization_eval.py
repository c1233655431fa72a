"""Diarization of mono calls: error per file and cost against chunking, measured in one run.

    .venv/bin/python scripts/diarization_eval.py [--hours 1] [--no-festival]

Material: the stereo sample mixed down and rearranged (callscribe.dev.diarization_eval),
and, when Festival is installed (apt-get install festival festvox-kallpc16k festvox-kdlpc16k
festvox-us-slt-hts), new calls spoken by pairs of its voices (two American English male
diphone voices, kal and ked, and the female HTS voice slt), some band-passed to 300-3400 Hz
as a telephone line is, plus one-voice calls, which must come out as one speaker.

Cost: CPU seconds (process time, one core) per hour of audio of ``chunk_recording`` on a
mono 8 kHz call of ``--hours``, without and with diarization, in the same process,
alternating, median of 5; the difference is the diarizer's cost.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the chunk task's figures are
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

from callscribe.audio import decode, encode_flac  # noqa: E402
from callscribe.chunking import DEFAULT_CHUNKING, chunk_recording  # noqa: E402
from callscribe.dev import diarization_eval as E  # noqa: E402

RATE = 8000
VOICES = {"kal": "voice_kal_diphone", "ked": "voice_ked_diphone", "slt": "voice_cmu_us_slt_arctic_hts"}
LINES = [
    "Thank you for calling, this is the help desk. How can I help you today?",
    "Hi, my card was charged twice for the same order last week.",
    "I am sorry about that. Can you read me the order number please?",
    "Yes, it is seven seven two nine one.",
    "Thank you. I see both payments. I will refund the second one now.",
    "Great. How long does the refund take?",
    "It should be back on your card within five working days.",
    "Okay, that is fine.",
    "Is there anything else I can do for you?",
    "No, that was all, thanks a lot.",
    "You are welcome. Have a good day.",
    "Bye.",
]


def speak(text: str, voice: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["text2wave", "-eval", f"({voice})", "-o", tmp.name], input=text.encode(), check=True,
                       capture_output=True)
        x, rate = sf.read(tmp.name, dtype="float32")
    x = soxr.resample(x, rate, RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.02)
    return x[loud[0] : loud[-1] + 1] if loud.size else x


def band_pass(x: np.ndarray, lo: float = 300.0, hi: float = 3400.0) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def festival_call(pair: tuple[str, str], seed: int, telephone: bool) -> E.Material:
    rng = np.random.default_rng(seed)
    parts, ref, pos = [np.zeros(int(0.5 * RATE), np.float32)], [], int(0.5 * RATE)
    gains = {v: 0.5 * 10 ** (rng.uniform(-4, 4) / 20) for v in pair}
    for i, line in enumerate(LINES):
        who = pair[i % 2] if len(set(pair)) > 1 else pair[0]
        x = speak(line, VOICES[who])
        x = x * gains[who] / max(1e-6, float(np.abs(x).max()))
        ref.append((pos / RATE, (pos + len(x)) / RATE, who if len(set(pair)) > 1 else pair[0]))
        gap = np.zeros(int(rng.uniform(0.15, 1.2) * RATE), np.float32)
        parts += [x, gap]
        pos += len(x) + len(gap)
    y = np.concatenate(parts + [np.zeros(int(0.5 * RATE), np.float32)])
    if telephone:
        y = band_pass(y)
    y = y + rng.normal(0, 0.002, len(y)).astype(np.float32)
    audio = (np.clip(y, -1, 1) * 32767).astype(np.int16)
    who = '+'.join(pair) if len(set(pair)) > 1 else pair[0] + ' alone'
    name = f"festival {who}{', 300-3400 Hz' if telephone else ''}"
    return E.Material(name, audio, RATE, ref)


def festival_set() -> list[E.Material]:
    if not shutil.which("text2wave"):
        return []
    out = []
    for k, (pair, tel) in enumerate([(("slt", "kal"), False), (("ked", "slt"), False), (("kal", "ked"), False),
                                     (("slt", "ked"), True), (("kal", "ked"), True)]):
        out.append(festival_call(pair, 100 + k, tel))
    for k, voice in enumerate(("kal", "slt")):
        out.append(festival_call((voice, voice), 200 + k, False))
    return out


def cost(hours: float, repeats: int = 5) -> dict[str, float]:
    """CPU s per hour of audio (one core): the chunk stage as ``chunk_one`` runs it without its
    object store and database calls (decode an 8 kHz mu-law mono WAV, chunk, FLAC-encode the
    speech pack), ``chunk_recording`` alone, and what diarization adds to it. Plain and
    diarized runs alternate in one process; medians of ``repeats``."""
    m = E.mixdown()
    reps = int(np.ceil(hours * 3600 / m.duration_s))
    x = np.tile(m.audio, reps)[: int(hours * 3600 * m.rate)]
    buf = io.BytesIO()
    sf.write(buf, x, m.rate, format="WAV", subtype="ULAW")
    data = buf.getvalue()
    on = dataclasses.replace(DEFAULT_CHUNKING, diarize=True)
    times: dict[str, list[float]] = {"stage": [], "chunk": [], "chunk_diarized": []}
    for _ in range(repeats):
        t0 = time.process_time()
        decoded = decode(data, "hour.wav")
        t1 = time.process_time()
        chunks = chunk_recording(decoded, DEFAULT_CHUNKING, at_16k=False)
        t2 = time.process_time()
        encode_flac(np.concatenate([a for _, a in chunks]), m.rate)
        t3 = time.process_time()
        chunk_recording(decoded, on, at_16k=False)
        t4 = time.process_time()
        times["stage"].append(t3 - t0)
        times["chunk"].append(t2 - t1)
        times["chunk_diarized"].append(t4 - t3)
    per_hour = 3600 / decoded.duration_s
    out = {k: float(np.median(v)) * per_hour for k, v in times.items()}
    out["diarization"] = out["chunk_diarized"] - out["chunk"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--no-festival", action="store_true")
    args = ap.parse_args()
    two, one = E.two_speaker_set(), E.one_speaker_set()
    fest = [] if args.no_festival else festival_set()
    print(f"machine: {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}")
    print("\n| file | length s | speakers found | DER | miss | false alarm | confusion |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ders = []
    for m in two + one + fest:
        s = E.score(m)
        if s.n_ref > 1:
            ders.append((s.der, s.speech_s))
        print(f"| {m.name} | {m.duration_s:.1f} | {s.n_hyp} (of {s.n_ref}) | {s.der:.1%} | {s.miss:.1%} | "
              f"{s.false_alarm:.1%} | {s.confusion:.1%} |")
    total = sum(d * w for d, w in ders) / sum(w for _, w in ders)
    print(f"\ntwo-speaker files, DER weighted by speech: {total:.1%}")
    c = cost(args.hours)
    print(f"\nCPU s per hour of 8 kHz mono audio ({args.hours} h, one core, medians of 5): "
          f"chunk stage (decode, chunk, FLAC) {c['stage']:.3f} (RTFx {3600 / c['stage']:.0f}); "
          f"chunk_recording {c['chunk']:.3f}; with diarization {c['chunk_diarized']:.3f}; "
          f"diarization {c['diarization']:.3f} = {c['diarization'] / c['stage']:.1%} of the chunk stage, "
          f"{c['diarization'] / c['chunk']:.1%} of chunk_recording")


if __name__ == "__main__":
    main()
