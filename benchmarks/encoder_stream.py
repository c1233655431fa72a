"""The native encoder in its two layouts, on this machine's CPU: ``python -m benchmarks.encoder_stream``.

"tight" (the default) gives each item its own frames in the encoder's stream and gathers the
attention's blocks; "blocks" gives each item whole 200-frame attention blocks, so every
per-frame layer also runs on its last block's padding. Fused Conformer blocks at full width
(random weights, float32), ``--layers`` of them, on items of ``--seconds``; the layouts run in
turn, and the report gives the median of each, the ratio, the rows of each stream and the
largest difference between their outputs (they compute the same function). The GPU's figure is
the GPU check's ``encoder_stream`` section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from callscribe.dev.bench import machine_info
from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.fuse import FusedConformerBlock
from callscribe.engines.nar.modeling import ENCODER_STREAMS, Encoder, Slots

FRAMES_PER_S = 50


def encoder(size: str, layers: int) -> Encoder:
    cfg = NarConfig.named(size).encoder
    cfg = dataclasses.replace(cfg, layers=layers, self_cond_layer=1, export_layers=(-1,))
    torch.manual_seed(0)
    enc = Encoder(cfg).eval()
    for i, block in enumerate(enc.blocks):
        enc.blocks[i] = FusedConformerBlock(block)
    return enc


def run_once(enc: Encoder, frames: list[int], stream: str) -> tuple[float, torch.Tensor, int]:
    """One pass of the encoder over ``frames`` laid out as ``stream``: seconds, each item's real rows, rows."""
    cfg = enc.cfg
    tight = stream == "tight"
    slots = Slots.of(frames, cfg.pool_window if tight else cfg.context, slack=cfg.conv_kernel // 2)
    rows = torch.from_numpy(slots.rows())
    feats = torch.zeros(1, slots.total, cfg.input_dim)
    feats[0, rows] = torch.randn(sum(frames), cfg.input_dim, generator=torch.Generator().manual_seed(1))
    blocks = tuple(torch.from_numpy(a) for a in slots.blocks(cfg.context)) if tight else None
    with torch.inference_mode():
        t = time.perf_counter()
        out = enc(feats, slots.mask("cpu")[None], blocks)
        seconds = time.perf_counter() - t
    return seconds, out.exported[0, rows], slots.total


def measure(size: str = "full", layers: int = 3, seconds: tuple[float, ...] = (28.1, 26.4, 28.9, 29.5),
            repeats: int = 3) -> dict:
    enc = encoder(size, layers)
    frames = [round(s * FRAMES_PER_S) for s in seconds]
    times: dict[str, list[float]] = {s: [] for s in ENCODER_STREAMS}
    outputs, rows = {}, {}
    for r in range(repeats + 1):  # the first pass of each is a warm-up
        for stream in ENCODER_STREAMS:
            t, out, n = run_once(enc, frames, stream)
            if r:
                times[stream].append(t)
            outputs[stream], rows[stream] = out, n
    median = {s: statistics.median(ts) for s, ts in times.items()}
    return {"size": size, "layers": layers, "seconds": list(seconds), "threads": torch.get_num_threads(),
            "rows": rows, "passes_s": {s: [round(t, 4) for t in ts] for s, ts in times.items()},
            "median_s": {s: round(m, 4) for s, m in median.items()},
            "tight_speedup": round(median["blocks"] / median["tight"], 3),
            "max_abs_diff": float((outputs["tight"] - outputs["blocks"]).abs().max()),
            "machine": machine_info("cpu")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="full", choices=("full", "tiny"))
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--seconds", default="28.1,26.4,28.9,29.5", help="item lengths, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    res = measure(args.size, args.layers, tuple(float(s) for s in args.seconds.split(",")), args.repeats)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
