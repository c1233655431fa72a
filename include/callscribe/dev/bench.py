"""`callscribe bench`: an engine over a labelled sample, for speed and accuracy.

The same path as the worker (decode, chunk, length-sorted batches through the engine,
stitch), timed in phases: RTFx end to end (decode to stitched text, model load excluded)
and model only (audio seconds per second inside the engine), WER after Whisper-style
normalisation, batch statistics and peak memory. Benchmark on your own audio before
committing to an engine or a GPU size.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from callscribe import engines
from callscribe.audio import at_16k, decode
from callscribe.chunking import chunking_for
from callscribe.dev.evaluation import corpus_wer
from callscribe.transcription import DEFAULT_BATCH_AUDIO_S, as_channels, chunk_all, recognize_chunks


@dataclass
class BenchResult:
    engine: str
    device: str
    files: int
    recording_audio_s: float
    speech_audio_s: float
    chunks: int
    load_s: float
    prep_s: float  # decode + resample + chunk
    model_s: float
    e2e_s: float
    rtfx_e2e: float
    rtfx_model: float
    wer: float | None
    batches: int
    chunks_per_batch_median: float
    batch_fill: float  # real audio / padded audio
    oom_splits: int
    peak_mem_bytes: int | None
    per_file: list[dict] = field(default_factory=list)
    machine: dict = field(default_factory=dict)


def load_labelled(folder: Path) -> tuple[list[Path], dict]:
    labels_path = folder / "labels.json"
    labels = json.loads(labels_path.read_text()) if labels_path.exists() else {}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".mp3", ".flac", ".ogg"))
    if not files:
        raise FileNotFoundError(f"no audio files in {folder}")
    return files, labels


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    import os

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "device": device}
    if device.startswith("cuda"):
        import torch

        info.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, cuda=torch.version.cuda)
    return info


def run_bench(engine_name: str, folder: Path, repeat: int = 1, batch_audio_s: float = DEFAULT_BATCH_AUDIO_S,
              engine: engines.Engine | None = None) -> BenchResult:
    files, labels = load_labelled(folder)
    t = time.perf_counter()
    eng = engine or engines.create(engine_name)
    load_s = time.perf_counter() - t

    t0 = time.perf_counter()
    decoded = [(f, decode(f.read_bytes(), f.name)) for _ in range(repeat) for f in files]
    items, audios = chunk_all([d for _, d in decoded], chunking_for(eng.name))
    prep_s = time.perf_counter() - t0

    placed, metrics = recognize_chunks(eng, len(decoded), items, audios, batch_audio_s)
    per_file, pairs = [], []
    for i, (f, d) in enumerate(decoded):
        channels = as_channels(placed[i], d.n_channels)
        refs = labels.get(f.name, {}).get("channels")
        file_pairs = [(r["text"], c["text"]) for r, c in zip(refs, channels, strict=True)] if refs else []
        pairs.extend(file_pairs)
        if i < len(files):  # one row per distinct file
            per_file.append({"file": f.name, "duration_s": round(d.duration_s, 3),
                             "wer": round(corpus_wer(file_pairs), 4) if file_pairs else None})
    e2e_s = time.perf_counter() - t0

    model_s = sum(m.model_s for m in metrics)
    speech_s = sum(len(a) for a in audios) / 16_000
    recording_s = sum(d.duration_s for _, d in decoded)
    return BenchResult(
        engine=eng.name, device=eng.device, files=len(decoded), recording_audio_s=round(recording_s, 3),
        speech_audio_s=round(speech_s, 3), chunks=len(audios), load_s=round(load_s, 3), prep_s=round(prep_s, 3),
        model_s=round(model_s, 3), e2e_s=round(e2e_s, 3),
        rtfx_e2e=round(recording_s / e2e_s, 2) if e2e_s else 0.0,
        rtfx_model=round(speech_s / model_s, 2) if model_s else 0.0,
        wer=round(corpus_wer(pairs), 4) if pairs else None,
        batches=len(metrics),
        chunks_per_batch_median=statistics.median(m.n_chunks for m in metrics) if metrics else 0,
        batch_fill=round(sum(m.audio_s for m in metrics) / (sum(m.padded_audio_s for m in metrics) or 1), 4),
        oom_splits=sum(m.oom_splits for m in metrics),
        peak_mem_bytes=max((m.peak_mem_bytes or 0 for m in metrics), default=None),
        per_file=per_file, machine=machine_info(eng.device),
    )


def as_table(r: BenchResult) -> str:
    rows = [
        ("engine / device", f"{r.engine} / {r.device}"),
        ("files (recording audio)", f"{r.files} ({r.recording_audio_s:.1f} s)"),
        ("speech chunks (audio)", f"{r.chunks} ({r.speech_audio_s:.1f} s)"),
        ("model load", f"{r.load_s:.2f} s"),
        ("decode + chunk", f"{r.prep_s:.2f} s"),
        ("inside the engine", f"{r.model_s:.2f} s"),
        ("end to end", f"{r.e2e_s:.2f} s"),
        ("RTFx end to end", f"{r.rtfx_e2e:.1f}"),
        ("RTFx model only", f"{r.rtfx_model:.1f}"),
        ("WER (Whisper normaliser)", "n/a" if r.wer is None else f"{100 * r.wer:.1f} %"),
        ("batches (median chunks)", f"{r.batches} ({r.chunks_per_batch_median})"),
        ("batch fill", f"{100 * r.batch_fill:.1f} %"),
        ("OOM splits", str(r.oom_splits)),
        ("peak memory", "n/a" if not r.peak_mem_bytes else f"{r.peak_mem_bytes / 2**20:.0f} MiB"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def as_json(r: BenchResult) -> str:
    return json.dumps(asdict(r))


# ---------------------------------------------------------------- fixed-shape throughput


@dataclass
class ThroughputResult:
    engine: str
    source: str
    device: str
    batch: int
    chunk_s: float
    batches_timed: int
    warmup: int
    seconds_per_batch: list[float]
    median_s: float
    rtfx: float  # audio seconds per second of the median batch
    peak_mem_bytes: int | None
    machine: dict = field(default_factory=dict)


def speech_chunks(n: int, chunk_s: float, sr: int = 16_000) -> list:
    """n chunks of chunk_s seconds cut from the shipped sample calls' speech, looped."""
    import numpy as np

    from callscribe.samples import sample_files

    pieces = []
    for f in sample_files():
        pieces.extend(at_16k(decode(f.read_bytes(), f.name)))
    speech = np.concatenate(pieces)
    size = int(chunk_s * sr)
    reps = -(-size * n // len(speech)) + 1
    looped = np.tile(speech, reps)
    return [looped[i * size : (i + 1) * size] for i in range(n)]


def run_throughput(engine: engines.Engine, batch: int = 128, chunk_s: float = 30.0, batches: int = 3,
                   warmup: int = 1) -> ThroughputResult:
    """The leaderboard's way: fixed batches of equal chunks, audio already in memory, timer
    around features + model + decoding, warm-up batches first; RTFx from the median batch."""
    chunks = speech_chunks(batch, chunk_s)
    times = []
    for i in range(warmup + batches):
        t = time.perf_counter()
        engine.run(engine.prepare(chunks))
        if engine.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    median = statistics.median(times)
    return ThroughputResult(
        engine=engine.name, source=getattr(engine, "source", ""), device=engine.device, batch=batch, chunk_s=chunk_s,
        batches_timed=batches, warmup=warmup, seconds_per_batch=[round(x, 3) for x in times],
        median_s=round(median, 3), rtfx=round(batch * chunk_s / median, 2),
        peak_mem_bytes=engine.peak_memory_bytes(), machine=machine_info(engine.device),
    )


def throughput_table(r: ThroughputResult) -> str:
    rows = [
        ("engine / device", f"{r.engine} / {r.device}"),
        ("weights", r.source or "as loaded"),
        ("batch", f"{r.batch} chunks of {r.chunk_s:g} s"),
        ("seconds per batch", ", ".join(f"{x:.2f}" for x in r.seconds_per_batch) + f" (median {r.median_s:.2f})"),
        ("RTFx", f"{r.rtfx:.2f}"),
        ("peak memory", "n/a" if not r.peak_mem_bytes else f"{r.peak_mem_bytes / 2**20:.0f} MiB"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
