"""Granite NAR throughput, every available engine in one run on one device.

    python -m benchmarks.granite [--model DIR] [--batch 128] [--chunk-s 30] [--batches 5] [--config full]

Always measures the native architecture with random weights (drafts held at a realistic
token rate); with ``--model`` also the native engine and the reference engine (remote
code) on the real weights. Same chunks, same batch, same process, so the ratios compare.
Writes benchmarks/granite-results.json and prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch

from callscribe import engines
from callscribe.dev.bench import run_throughput

OUT = Path(__file__).resolve().parent / "granite-results.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="checkpoint folder (pinned revision); without it, random weights only")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--chunk-s", type=float, default=30.0)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--config", choices=["tiny", "full"], default="full")
    ap.add_argument("--compile", action="store_true", help="torch.compile the native engine")
    args = ap.parse_args(argv)

    plans = [("granite-nar-native", {"random_weights": True, "size": args.config, "compile": args.compile})]
    if args.model:
        plans += [("granite-nar-native", {"path": args.model, "compile": args.compile}),
                  ("granite-nar", {"path": args.model})]
    results = []
    for name, options in plans:
        engine = engines.create(name, **options)
        results.append(run_throughput(engine, batch=args.batch, chunk_s=args.chunk_s, batches=args.batches,
                                      warmup=args.warmup))
        del engine
        gc.collect()
        if torch.cuda.is_available():  # the next engine gets the whole GPU
            torch.cuda.empty_cache()
    OUT.write_text(json.dumps({"measured": datetime.now(UTC).isoformat(timespec="minutes"),
                               "results": [asdict(r) for r in results]}, indent=1))
    m = results[0].machine
    print(f"Measured on {m.get('gpu') or m['cpu']} ({m['device']}), torch {m.get('torch', '')}, "
          f"batch {args.batch} x {args.chunk_s:g} s, median of {args.batches} after {args.warmup} warm-up.\n")
    print("| engine | weights | s per batch (median) | RTFx | peak memory |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        mem = f"{r.peak_mem_bytes / 2**30:.1f} GiB" if r.peak_mem_bytes else "n/a"
        print(f"| {r.engine} | {r.source or 'checkpoint'} | {r.median_s:.2f} | {r.rtfx:.0f} | {mem} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
