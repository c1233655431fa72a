"""`make heldout` (issue #17): does chunking cost accuracy against the model decoding whole channels?

For every held-out recording (see benchmarks/heldout_data.py) and every channel, whisper-tiny
transcribes it twice:

  pipeline     decode, chunk at pauses, recognise the chunks in batches, stitch (the worker's path)
  model alone  the same model on each whole channel in one call (faster-whisper walks it in
               30 s windows itself), with the engine's decode options

and both are scored against the reference with Whisper's normaliser. The target is
pipeline WER <= model-alone WER + 0.01 on every file. Also reported: the chunk-length
distribution, the 30 s window slots each path runs, and wall time per file.

`--compare` runs the pipeline twice in one process, "before" with the chunker's settings
from before packing (BEFORE_PACKING) and "after" with the engine's own (chunking_for), so both
come from the same machine and the same model-alone figures.
`--param key=value` overrides a ChunkingParams field (repeatable), to sweep pad_s and the like.

    python -m benchmarks.heldout --compare --json out.json --md out.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.heldout_data import CACHE, HeldoutFile, build
from callscribe.audio import TARGET_SR, as_float, at_16k, decode
from callscribe.chunking import ChunkingParams, chunking_for
from callscribe.dev.evaluation import word_errors
from callscribe.transcription import as_channels, chunk_all, recognize_chunks

ENGINE = "whisper-tiny"  # the engine that runs offline on a CPU
TOLERANCE = 0.01  # pipeline may be worse than the model alone by at most this much WER
WINDOW_S = 30.0


# --- chunking parameters ------------------------------------------------------------------

def _convert(value: str, like: object, key: str):
    if isinstance(like, bool):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--param {key}={value}: expected true or false")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    return value


def make_params(overrides: dict[str, str] | None = None, base: ChunkingParams | None = None) -> ChunkingParams:
    """ChunkingParams with fields replaced from strings; an unknown field is an error naming the known ones."""
    base = base or ChunkingParams()
    known = {f.name: getattr(base, f.name) for f in dataclasses.fields(ChunkingParams)}
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise ValueError(f"ChunkingParams has no field {key!r}; it has: {', '.join(known)}")
        changes[key] = _convert(value, known[key], key) if isinstance(value, str) else value
    return dataclasses.replace(base, **changes)


def parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


# --- figures --------------------------------------------------------------------------------

def chunk_stats(lengths_s: list[float]) -> dict:
    """Distribution of chunk lengths (seconds) and the Whisper 30 s window slots they take."""
    if not lengths_s:
        return {"count": 0, "p10": 0.0, "p50": 0.0, "p90": 0.0, "max": 0.0, "total_s": 0.0, "window_slots": 0}
    a = np.asarray(lengths_s, dtype=float)
    p10, p50, p90 = np.percentile(a, [10, 50, 90])
    return {"count": len(a), "p10": round(float(p10), 2), "p50": round(float(p50), 2), "p90": round(float(p90), 2),
            "max": round(float(a.max()), 2), "total_s": round(float(a.sum()), 2),
            "window_slots": window_slots(lengths_s)}


def window_slots(lengths_s: list[float]) -> int:
    """How many 30 s windows Whisper runs: one per piece of audio up to 30 s, ceil(L / 30) for longer."""
    return sum(max(1, math.ceil(round(length, 6) / WINDOW_S)) for length in lengths_s)


def score(references: list[str], pipeline: list[str], model: list[str], tolerance: float = TOLERANCE) -> dict:
    """Per-channel and per-file WER of both paths, the difference and pass/fail against the tolerance.

    A file's WER is its errors summed over channels divided by its reference words.
    """
    if not len(references) == len(pipeline) == len(model):
        raise ValueError(f"{len(references)} references, {len(pipeline)} pipeline and {len(model)} model texts")
    channels, totals = [], {"pipeline": 0, "model": 0, "words": 0}
    for ref, hyp_p, hyp_m in zip(references, pipeline, model, strict=True):
        ep, n = word_errors(ref, hyp_p)
        em, _ = word_errors(ref, hyp_m)
        totals["pipeline"] += ep
        totals["model"] += em
        totals["words"] += n
        channels.append(_verdict(ep, em, n, tolerance))
    file = _verdict(totals["pipeline"], totals["model"], totals["words"], tolerance)
    return {**file, "channels": channels}


def _verdict(errors_pipeline: int, errors_model: int, words: int, tolerance: float) -> dict:
    wp = errors_pipeline / words if words else float(errors_pipeline > 0)
    wm = errors_model / words if words else float(errors_model > 0)
    delta = wp - wm
    return {"words": words, "pipeline_errors": errors_pipeline, "model_errors": errors_model,
            "pipeline_wer": round(wp, 4), "model_wer": round(wm, 4), "delta": round(delta, 4),
            "pass": bool(delta <= tolerance + 1e-9)}


# --- the two paths -----------------------------------------------------------------------------

@dataclass
class ModelAlone:
    texts: list[str]
    seconds: float
    channel_s: list[float]


@dataclass
class PipelineRun:
    texts: list[str]
    seconds: float
    chunk_s: list[float] = field(default_factory=list)


# The engine's decode options (engines/whisper.py) for the whole-channel decode, less those only
# about timestamps (word_timestamps): the text of each channel is what is compared.
DECODE_OPTIONS = dict(language="en", beam_size=1, temperature=0.0, vad_filter=False, condition_on_previous_text=False)


def model_alone(eng, f: HeldoutFile) -> ModelAlone:
    t = time.perf_counter()
    decoded = decode(f.data, f.name)
    texts, lengths = [], []
    for audio in at_16k(decoded):
        audio = as_float(audio)
        segments, _info = eng.model.transcribe(audio, **DECODE_OPTIONS)
        texts.append(" ".join(s.text.strip() for s in segments if s.text.strip()))
        lengths.append(len(audio) / TARGET_SR)
    return ModelAlone(texts, time.perf_counter() - t, lengths)


def pipeline(eng, f: HeldoutFile, params: ChunkingParams) -> PipelineRun:
    t = time.perf_counter()
    decoded = decode(f.data, f.name)
    items, audios = chunk_all([decoded], params)
    placed, _metrics = recognize_chunks(eng, 1, items, audios)
    texts = [c["text"] for c in as_channels(placed[0], decoded.n_channels)]
    return PipelineRun(texts, time.perf_counter() - t, [len(a) / TARGET_SR for a in audios])


def file_row(f: HeldoutFile, alone: ModelAlone, run: PipelineRun, tolerance: float = TOLERANCE) -> dict:
    scored = score(f.references, run.texts, alone.texts, tolerance)
    duration = max(alone.channel_s) if alone.channel_s else 0.0
    for ch, (ref, hp, hm) in enumerate(zip(f.references, run.texts, alone.texts, strict=True)):
        scored["channels"][ch].update(channel=ch, reference=ref, pipeline_text=hp, model_text=hm)
    return {"file": f.name, "source": f.source, "duration_s": round(duration, 2), "n_channels": len(f.references),
            **scored, "chunks": chunk_stats(run.chunk_s),
            "model_window_slots": window_slots(alone.channel_s),
            "pipeline_s": round(run.seconds, 2), "model_s": round(alone.seconds, 2)}


# --- report ----------------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(result: dict) -> str:
    lines = []
    m = result["machine"]
    lines.append(f"Held-out WER, whisper-tiny on {m.get('cpu')} ({m.get('cpus')} CPUs, "
                 f"{result.get('threads') or 'all'} threads); target: pipeline <= model alone + "
                 f"{result['tolerance']:.2f} on every file.")
    if result.get("missing"):
        lines.append(f"\nMissing (source not fetched): {', '.join(result['missing'])}.")
    for label, run in result["runs"].items():
        params = ", ".join(f"{k}={v}" for k, v in run["params"].items())
        lines += ["", f"**{label}** ({params}): {run['passed']}/{len(run['files'])} files pass", "",
                  "| file | s | ch | words | pipeline WER | model WER | delta | pass | chunks "
                  "| p10 / p50 / p90 / max s | 30 s slots pipeline / model | pipeline s | model s |",
                  "|---|--:|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|"]
        for r in run["files"]:
            c = r["chunks"]
            lines.append(
                f"| {r['file']} | {r['duration_s']:.1f} | {r['n_channels']} | {r['words']} | "
                f"{_pct(r['pipeline_wer'])} | {_pct(r['model_wer'])} | {100 * r['delta']:+.1f} | "
                f"{'yes' if r['pass'] else '**no**'} | {c['count']} | "
                f"{c['p10']:.1f} / {c['p50']:.1f} / {c['p90']:.1f} / {c['max']:.1f} | "
                f"{c['window_slots']} / {r['model_window_slots']} | {r['pipeline_s']:.1f} | {r['model_s']:.1f} |")
        t = run["total"]
        lines.append(f"| **all** | {t['duration_s']:.1f} | | {t['words']} | {_pct(t['pipeline_wer'])} | "
                     f"{_pct(t['model_wer'])} | {100 * t['delta']:+.1f} | | {t['chunks']['count']} | "
                     f"{t['chunks']['p10']:.1f} / {t['chunks']['p50']:.1f} / {t['chunks']['p90']:.1f} / "
                     f"{t['chunks']['max']:.1f} | {t['chunks']['window_slots']} / {t['model_window_slots']} | "
                     f"{t['pipeline_s']:.1f} | {t['model_s']:.1f} |")
        multi = [r for r in run["files"] if r["n_channels"] > 1]
        if multi:
            lines += ["", "| file | channel | pipeline WER | model WER | delta | pass |", "|---|--:|--:|--:|--:|:-:|"]
            for r in multi:
                for c in r["channels"]:
                    lines.append(f"| {r['file']} | {c['channel']} | {_pct(c['pipeline_wer'])} | "
                                 f"{_pct(c['model_wer'])} | {100 * c['delta']:+.1f} | "
                                 f"{'yes' if c['pass'] else '**no**'} |")
    if len(result["runs"]) > 1:
        lines += ["", "Chunk lengths, all files (s):", "",
                  "| run | chunks | p10 | p50 | p90 | max | speech s | 30 s slots | pipeline WER | pipeline s |",
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for label, run in result["runs"].items():
            c, t = run["total"]["chunks"], run["total"]
            lines.append(f"| {label} | {c['count']} | {c['p10']:.1f} | {c['p50']:.1f} | {c['p90']:.1f} | "
                         f"{c['max']:.1f} | {c['total_s']:.1f} | {c['window_slots']} | {_pct(t['pipeline_wer'])} | "
                         f"{t['pipeline_s']:.1f} |")
    return "\n".join(lines) + "\n"


def summarise(rows: list[dict], all_chunk_s: list[float], tolerance: float = TOLERANCE) -> dict:
    errors_p = sum(r["pipeline_errors"] for r in rows)
    errors_m = sum(r["model_errors"] for r in rows)
    words = sum(r["words"] for r in rows)
    total = _verdict(errors_p, errors_m, words, tolerance)
    total.update(duration_s=round(sum(r["duration_s"] for r in rows), 2), chunks=chunk_stats(all_chunk_s),
                 model_window_slots=sum(r["model_window_slots"] for r in rows),
                 pipeline_s=round(sum(r["pipeline_s"] for r in rows), 2),
                 model_s=round(sum(r["model_s"] for r in rows), 2))
    return total


def run(files: list[HeldoutFile], settings: dict[str, ChunkingParams], eng, tolerance: float = TOLERANCE,
        log=print) -> dict:
    """Model alone once per file, then the pipeline once per setting; figures per setting."""
    alone = {}
    for f in files:
        alone[f.name] = model_alone(eng, f)
        log(f"  model alone  {f.name}: {alone[f.name].seconds:.1f} s")
    runs = {}
    for label, params in settings.items():
        rows, all_chunks = [], []
        for f in files:
            p = pipeline(eng, f, params)
            row = file_row(f, alone[f.name], p, tolerance)
            rows.append(row)
            all_chunks.extend(p.chunk_s)
            log(f"  {label:<12} {f.name}: {p.seconds:.1f} s, WER {_pct(row['pipeline_wer'])} "
                f"vs {_pct(row['model_wer'])} alone, {'pass' if row['pass'] else 'FAIL'}")
        runs[label] = {"params": dataclasses.asdict(params), "files": rows,
                       "passed": sum(r["pass"] for r in rows), "all_pass": all(r["pass"] for r in rows),
                       "total": summarise(rows, all_chunks, tolerance)}
    return runs


# The chunker as it was before packing (one chunk per region, 0.2 s of context), for --compare.
BEFORE_PACKING = ChunkingParams(max_chunk_s=30.0, max_merge_gap_s=1.0, pad_s=0.2, pack=False)


def settings_for(compare: bool, overrides: dict[str, str]) -> tuple[dict[str, ChunkingParams], str | None]:
    """The engine's own chunking (chunking_for), with --param overrides; --compare adds BEFORE_PACKING."""
    after = make_params(overrides, base=chunking_for(ENGINE))
    if not compare:
        return {"defaults": after}, None
    return {"before": BEFORE_PACKING, "after": after}, None


def code_state() -> dict:
    """The commit measured and the uncommitted files under include/ (the code measured may be a work in progress)."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return proc.stdout.rstrip() if proc.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted": [line[3:] for line in git("status", "--porcelain", "--", "include").splitlines()]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", action="store_true", help="pipeline with pack=False (before) and defaults (after)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override a ChunkingParams field (repeatable)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--md", type=Path, help="write the Markdown tables here")
    ap.add_argument("--files", nargs="*", help="only these held-out files (by name)")
    ap.add_argument("--threads", type=int, help="CPU threads for whisper-tiny (default CALLSCRIBE_CPU_THREADS or all)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where heldout_data --fetch put the sources")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    ap.add_argument("--strict", action="store_true", help="exit 1 when any file misses the target")
    args = ap.parse_args(argv)
    try:
        settings, note = settings_for(args.compare, parse_params(args.param))
    except ValueError as exc:
        ap.error(str(exc))

    from callscribe import engines
    from callscribe.dev.bench import machine_info

    files, missing = build(args.cache)
    if args.files:
        unknown = set(args.files) - {f.name for f in files} - set(missing)
        if unknown:
            ap.error(f"no held-out file named {', '.join(sorted(unknown))}")
        files = [f for f in files if f.name in args.files]
        missing = [m for m in missing if m in args.files]
    if missing:
        print(f"heldout: missing (run `python -m benchmarks.heldout_data --fetch`): {', '.join(missing)}",
              file=sys.stderr)
    if note:
        print(f"heldout: {note}", file=sys.stderr)

    code = code_state()
    t0 = time.perf_counter()
    eng = engines.create(ENGINE, **({"threads": args.threads} if args.threads else {}))
    load_s = time.perf_counter() - t0
    eng.model.transcribe(np.zeros(TARGET_SR, np.float32), **DECODE_OPTIONS)  # warm-up, not timed
    runs = run(files, settings, eng, args.tolerance, log=lambda s: print(s, file=sys.stderr, flush=True))
    threads = args.threads or int(os.environ.get("CALLSCRIBE_CPU_THREADS", "0")) or os.cpu_count()
    result = {"engine": eng.name, "machine": machine_info(eng.device), "threads": threads,
              "tolerance": args.tolerance, "decode_options": DECODE_OPTIONS, "load_s": round(load_s, 2),
              "wall_s": round(time.perf_counter() - t0, 1), "code": code, "missing": missing, "note": note,
              "runs": runs}
    if code_state() != code:
        result["code_changed_during_run"] = True
        print("heldout: the code changed while the benchmark ran; rerun for figures of one version", file=sys.stderr)
    md = markdown(result)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md)
    ok = all(r["all_pass"] for r in runs.values())
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
