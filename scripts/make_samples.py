"""Regenerate the labelled sample calls in include/callscribe/samples/.

Needs Festival with two Debian voices: apt-get install festival festvox-us-slt-hts
festvox-kallpc16k (espeak-ng was tried first: at 8 kHz Whisper tiny.en misheard a third
of its words, which made accuracy checks meaningless).

The samples are synthetic dialogues spoken by Festival, stored the way call centers
store calls: 8 kHz stereo mu-law WAV (agent left, customer right), 8 kHz mono A-law WAV
and mono MP3. labels.json keeps what was said, per channel, to measure accuracy, and when each turn
starts and ends (measured on the stored audio), to check segment times.
Run: .venv/bin/python scripts/make_samples.py   (or with --turns to only re-measure the
turn times of the stored files, without Festival)
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

OUT = Path(__file__).resolve().parents[1] / "include" / "callscribe" / "samples"
RATE = 8000
VOICES = {"agent": "voice_kal_diphone", "customer": "voice_cmu_us_slt_arctic_hts"}

CALLS = {
    "call-0001.wav": {
        "format": ("WAV", "ULAW"),
        "stereo": True,
        "turns": [
            ("agent", "Thank you for calling Acme support, my name is Sarah. How can I help you today?"),
            ("customer", "Hi, I would like to cancel my account because the bill was too high this month."),
            ("agent", "I am sorry to hear that. Can you give me your account number please?"),
            ("customer", "Sure, it is four five six seven eight."),
            ("agent", "Thank you. I can offer you a discount of twenty percent instead of cancelling."),
            ("customer", "That sounds good, please apply the discount to my account."),
            ("agent", "Done. Is there anything else I can help you with today?"),
            ("customer", "No, that is all. Thank you very much for your help."),
        ],
    },
    "call-0002.mp3": {
        "format": ("MP3", "MPEG_LAYER_III"),
        "stereo": False,
        "turns": [
            ("agent", "Good morning, this is the billing department, David speaking."),
            ("customer", "Hello, my internet connection has been very slow since Monday."),
            ("agent", "Let me check the line for you. I will restart your router remotely."),
            ("customer", "Great, the connection is working again. Thanks a lot."),
        ],
    },
    "call-0003.wav": {
        "format": ("WAV", "ALAW"),
        "stereo": False,
        "turns": [
            ("customer", "I want to change the delivery address for my order."),
            ("agent", "No problem. What is the new address?"),
            ("customer", "The new address is twelve Green Street in Springfield."),
        ],
    },
}


def speak(text: str, voice: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["text2wave", "-eval", f"({voice})", "-o", tmp.name], input=text.encode(), check=True)
        x, rate = sf.read(tmp.name, dtype="float32")
    return soxr.resample(x, rate, RATE).astype(np.float32)


def render(call: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    gap = int(0.7 * RATE)
    agent, customer = [np.zeros(int(0.5 * RATE), np.float32)], [np.zeros(int(0.5 * RATE), np.float32)]
    said: dict[str, list[str]] = {"agent": [], "customer": []}
    for who, text in call["turns"]:
        x = speak(text, VOICES[who]) * 0.8
        silence = np.zeros(len(x), np.float32)
        agent.append(x if who == "agent" else silence)
        customer.append(x if who == "customer" else silence)
        for ch in (agent, customer):
            ch.append(np.zeros(gap, np.float32))
        said[who].append(text)
    a, c = np.concatenate(agent), np.concatenate(customer)
    noise = rng.normal(0, 0.002, size=(len(a), 2)).astype(np.float32)  # line hiss
    if call["stereo"]:
        audio = np.stack([a, c], axis=1) + noise
        labels = {"channels": [{"speaker": "agent", "text": " ".join(said["agent"])},
                               {"speaker": "customer", "text": " ".join(said["customer"])}]}
    else:
        audio = (a + c + noise[:, 0])[:, None]
        labels = {"channels": [{"speaker": "mixed", "text": " ".join(t for _, t in call["turns"])}]}
    labels["duration_s"] = round(len(a) / RATE, 3)
    return np.clip(audio, -1, 1), labels


def active_runs(x: np.ndarray, rate: int, min_gap_s: float, level: float = 0.03) -> list[tuple[float, float]]:
    """Stretches of sound above ``level`` (the line hiss is far below), split at quiet gaps of min_gap_s."""
    hop = rate // 100
    n = len(x) // hop
    loud = np.flatnonzero(np.abs(x[: n * hop]).reshape(n, hop).max(axis=1) > level)
    if loud.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(loud) > min_gap_s * 100)
    firsts = np.concatenate(([loud[0]], loud[breaks + 1]))
    lasts = np.concatenate((loud[breaks], [loud[-1]]))
    return [(round(float(a) / 100, 2), round(float(b + 1) / 100, 2)) for a, b in zip(firsts, lasts, strict=True)]


def measure_turns(audio: np.ndarray, call: dict) -> list[dict]:
    """A stereo call's turns (channel, speaker, start, end), measured on the audio as stored.

    A channel is silent while the other party talks, so its turns are its runs of sound:
    pauses inside a turn are short. (On a mono call Festival's pauses between sentences
    are as long as the gaps between turns, so mono calls get no turn times.)
    """
    out = []
    for ch, who in enumerate(("agent", "customer")):
        runs = active_runs(audio[:, ch], RATE, min_gap_s=1.5)
        expected = sum(1 for w, _ in call["turns"] if w == who)
        if len(runs) != expected:
            raise ValueError(f"found {len(runs)} turns of the {who}, expected {expected}")
        out += [{"channel": ch, "speaker": who, "start_s": a, "end_s": b} for a, b in runs]
    return sorted(out, key=lambda t: t["start_s"])


def turns_only() -> None:
    path = OUT / "labels.json"
    all_labels = json.loads(path.read_text())
    for name, call in CALLS.items():
        if call["stereo"]:
            audio, _ = sf.read(OUT / name, dtype="float32", always_2d=True)
            all_labels[name]["turns"] = measure_turns(audio, call)
    path.write_text(json.dumps(all_labels, indent=2) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    all_labels = {}
    for name, call in CALLS.items():
        audio, labels = render(call, rng)
        fmt, subtype = call["format"]
        buf = io.BytesIO()
        sf.write(buf, audio, RATE, format=fmt, subtype=subtype)
        (OUT / name).write_bytes(buf.getvalue())
        if call["stereo"]:
            stored, _ = sf.read(io.BytesIO(buf.getvalue()), dtype="float32", always_2d=True)
            labels["turns"] = measure_turns(stored, call)
        all_labels[name] = labels
        print(f"{name}: {labels['duration_s']} s, {len(buf.getvalue()) // 1024} KiB")
    (OUT / "labels.json").write_text(json.dumps(all_labels, indent=2) + "\n")


if __name__ == "__main__":
    turns_only() if "--turns" in sys.argv[1:] else main()
