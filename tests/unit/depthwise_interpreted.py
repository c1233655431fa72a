"""Runs the Triton depthwise kernel under Triton's interpreter (CPU) and prints what it computed, as JSON.

    TRITON_INTERPRET=1 python -m tests.unit.depthwise_interpreted

The interpreter must be chosen before Triton is imported, so this runs in a process of its own
(tests/unit/test_granite_depthwise.py starts it once and checks the figures).
"""

from __future__ import annotations

import json
import os

import torch

from callscribe.engines.nar import depthwise as dw
from callscribe.engines.nar import fuse
from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.modeling import random_model
from tests.unit.conformer_parts import conv_module

# (items, frames, channels, kernel, left): odd and even kernels, frames and channels past a tile, a
# stream shorter than the kernel, one frame.
SHAPES = ((2, 83, 160, 15, 7), (1, 5, 7, 15, 7), (3, 64, 128, 4, 2), (1, 130, 300, 15, 7), (2, 1, 33, 3, 1))


def errors(y: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, left: int, **tile) -> dict:
    out = torch.empty(y.shape, dtype=y.dtype)
    got = dw.launch(y, taps, bias, left, out, **tile).float()
    want = dw.reference(y, taps, bias, left)
    # The interpreter truncates float32 to bfloat16 (a GPU rounds to nearest): one unit in the last
    # place of the result is its rounding, whichever way.
    ulp = want.abs() * 2.0 ** -7 if y.dtype == torch.bfloat16 else torch.zeros_like(want)
    return {"max_abs_err": float((got - want).abs().max()), "beyond_rounding": float((got - want).abs().sub(ulp).max())}


def cases() -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for b, t, c, k, left in SHAPES:
            g = torch.Generator().manual_seed(b * 1000 + t + c)
            y = torch.randn(b, t, c, generator=g).to(dtype)
            taps = (torch.randn(k, c, generator=g) / k ** 0.5).to(dtype)
            bias = (torch.randn(c, generator=g) * 0.3).to(dtype)
            for bt, bc, warps, unroll in dw.TILES[:2]:
                rows.append({"dtype": str(dtype), "shape": [b, t, c, k, left], "tile": [bt, bc, warps, unroll],
                             **errors(y, taps, bias, left, block_t=bt, block_c=bc, num_warps=warps, unroll=unroll)})
    # Strided input: each frame's channels are the first C of a wider row, and the items are every
    # other one of a larger batch (the kernel reads the strides it is given).
    g = torch.Generator().manual_seed(7)
    wide = torch.randn(4, 50, 96, generator=g)
    y = wide[::2, :, :80]
    taps, bias = torch.randn(15, 80, generator=g) / 4, torch.randn(80, generator=g)
    rows.append({"dtype": "torch.float32", "shape": "strided", "tile": list(dw.TILES[0]),
                 **errors(y, taps, bias, 7)})
    return rows


def graphs_and_difference(path: str, kernel: int = 15) -> dict:
    """A fused Conformer convolution module compiled with ``path`` against the uncompiled module:
    how many graphs dynamo made of it, and the largest difference (tiny config, float32)."""
    conv, cfg = conv_module(kernel, seed=3)
    with torch.no_grad():
        fused = fuse.FusedConvModule(conv)
        fused.compiled_path = path
        x = torch.randn(2, 41, cfg.hidden)
        valid = torch.arange(41)[None] < torch.tensor([41, 9])[:, None]
        want = fused(x, valid)
        graphs = []

        def counting(gm, example_inputs):
            graphs.append(gm)
            return gm.forward

        got = torch.compile(fused, dynamic=True, backend=counting)(x, valid)
        torch._dynamo.reset()
        inductor = torch.compile(fused, dynamic=True)(x, valid)  # the engine's backend: the operator's fake shapes
        return {"graphs": len(graphs), "max_abs_diff": float((got - want).abs().max()),
                "inductor_max_abs_diff": float((inductor - want).abs().max()),
                "unfused_max_abs_diff": float((got - conv(x, valid)).abs().max())}


def broken_probe() -> bool:
    """The probe of a kernel that reads its taps one frame late (must fail)."""
    right = dw.launch
    dw.launch = lambda y, taps, bias, left, out, **tile: right(y, taps, bias, left - 1, out, **tile)
    try:
        return dw.probe(torch.device("cpu"), torch.bfloat16, 15, 7)
    finally:
        dw.launch = right


def main() -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("run with TRITON_INTERPRET=1")
    torch.set_num_threads(1)
    model = fuse.optimize_for_inference(random_model(NarConfig.tiny()))
    for conv in model.modules():
        if isinstance(conv, fuse.FusedConvModule):
            conv.compiled_path = "triton"
    result = {
        "cases": cases(),
        "probe": dw.probe(torch.device("cpu"), torch.bfloat16, 15, 7),
        "settled": fuse.settle_compiled_depthwise(model),
        "probe_of_a_shifted_kernel": broken_probe(),
        "modules": {path: graphs_and_difference(path) for path in ("triton", "shifted")},
        "even_kernel": graphs_and_difference("triton", kernel=4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
