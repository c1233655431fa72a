"""The Triton depthwise kernel (engines/nar/depthwise.py): its numbers, its place in a compiled
Conformer block, and the fallback when it cannot run.

Triton kernels need a GPU; Triton's interpreter runs them on the CPU with numpy, and has to be
chosen before Triton is imported, so the kernel runs in a process of its own
(tests/unit/depthwise_interpreted.py) and the figures it prints are checked here. A GPU runs the
same kernel compiled: the GPU check (benchmarks/gpu.py, "depthwise") times it and compares it with
the float32 convolution there.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from callscribe.engines.nar import depthwise as dw
from callscribe.engines.nar import fuse
from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.modeling import random_model
from tests.unit.depthwise_interpreted import SHAPES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def interpreted() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), str(REPO / "include"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "tests.unit.depthwise_interpreted"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_kernel_computes_the_convolution_bias_and_silu(interpreted):
    """Float32 to rounding; bfloat16 within the one unit of its output's last place (the interpreter
    truncates, a GPU rounds); odd and even kernels, items and channels past a tile, one frame, strided input."""
    cases = interpreted["cases"]
    assert len(cases) == 2 * len(SHAPES) * 2 + 1  # two dtypes, two tiles, and the strided input
    for case in cases:
        if case["dtype"] == "torch.float32":
            assert case["max_abs_err"] < 5e-6, case
        else:
            assert case["beyond_rounding"] <= 1e-6 and case["max_abs_err"] < 0.05, case


def test_the_probe_passes_the_kernel_and_fails_one_that_reads_a_frame_late(interpreted):
    assert interpreted["probe"] is True
    assert interpreted["probe_of_a_shifted_kernel"] is False
    assert interpreted["settled"] == "triton"  # where the kernel runs, the blocks keep it


def test_compiled_the_kernel_is_one_graph_with_the_modules_numbers(interpreted):
    """The operator takes the shifted sum's graph break away: one graph instead of two, and the same
    numbers as the module run eagerly and as the unfused module, through inductor too."""
    triton, shifted = interpreted["modules"]["triton"], interpreted["modules"]["shifted"]
    assert triton["graphs"] == 1 and shifted["graphs"] == 2
    for figures in (triton, shifted, interpreted["even_kernel"]):
        assert figures["max_abs_diff"] < 1e-5 and figures["inductor_max_abs_diff"] < 1e-5
        assert figures["unfused_max_abs_diff"] < 1e-5


def test_where_the_kernel_cannot_run_the_blocks_fall_back_to_the_shifted_sum(monkeypatch, caplog):
    """Here (no interpreter, no GPU) the kernel cannot launch on CPU tensors: asked for, it is probed,
    refused with a warning, and every block takes the fused shifted sum."""
    monkeypatch.setenv(fuse.ENV_DEPTHWISE_COMPILED, "triton")
    model = fuse.optimize_for_inference(random_model(NarConfig.tiny()))
    convs = [m for m in model.modules() if isinstance(m, fuse.FusedConvModule)]
    assert {c.compiled_path for c in convs} == {"triton"}
    with caplog.at_level(logging.WARNING):
        assert fuse.settle_compiled_depthwise(model) == "shifted"
    assert {c.compiled_path for c in convs} == {"shifted"}
    assert "Triton depthwise kernel failed its probe" in caplog.text


def test_the_default_and_the_other_paths_are_not_probed(monkeypatch):
    monkeypatch.delenv(fuse.ENV_DEPTHWISE_COMPILED, raising=False)
    model = fuse.optimize_for_inference(random_model(NarConfig.tiny()))
    monkeypatch.setattr(dw, "probe", lambda *a: pytest.fail("probed"))
    assert fuse.settle_compiled_depthwise(model) == "shifted"
    monkeypatch.setenv(fuse.ENV_DEPTHWISE_COMPILED, "cudnn")
    with pytest.raises(ValueError, match="one of shifted, conv, triton"):
        fuse.compiled_depthwise()
    assert fuse.settle_compiled_depthwise(random_model(NarConfig.tiny())) is None  # nothing fused


def test_the_operator_has_shapes_without_running(monkeypatch):
    """Compiled graphs see the operator through its fake implementation: the input's shape and dtype,
    contiguous, and no kernel launched."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    monkeypatch.setattr(dw, "launch", lambda *a, **k: pytest.fail("launched"))
    with FakeTensorMode():
        y = torch.empty(2, 37, 64, dtype=torch.bfloat16)
        out = torch.ops.callscribe.depthwise_silu(y, torch.empty(15, 64, dtype=torch.bfloat16),
                                                  torch.empty(64, dtype=torch.bfloat16), 7)
    assert out.shape == (2, 37, 64) and out.dtype == torch.bfloat16 and out.is_contiguous()


def test_the_launcher_refuses_what_the_kernel_cannot_read():
    y = torch.empty(1, 10, 8)
    with pytest.raises(ValueError, match="channels contiguous"):
        dw.launch(y.transpose(1, 2), torch.empty(3, 10), torch.empty(10), 1, torch.empty(1, 8, 10))
    with pytest.raises(ValueError, match="taps"):
        dw.launch(y, torch.empty(3, 9), torch.empty(8), 1, torch.empty_like(y))


def test_the_kernel_is_not_specialised_on_the_stream_length():
    """Triton compiles a variant per specialisation of its integer arguments (a multiple of 16 or not):
    the stream's length changes with every batch, so it is left alone and the variant the probe compiles
    at load serves every batch. The strides stay specialised: they are multiples of 16 (the channels,
    2,048), and without that hint every load would be a 2-byte one (next test). Nothing compiled here."""
    names = {p.name for p in dw.depthwise_silu_kernel.params if p.do_not_specialize}
    assert names == {"T"}
    assert dw.compiled_variants() == 0


def _hopper_build(tile: tuple[int, int, int, int]) -> tuple[str, str]:
    """The kernel compiled for an H100 (sm_90a) here, without a GPU: Triton's compiler down to PTX, then
    the ptxas Triton ships, verbose. The specialisation a production launch gets: 16-byte-aligned
    pointers, and channels and strides that are multiples of 16 (2,048 channels). Returns (ptx, ptxas's
    report)."""
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    kernel = dw.depthwise_silu_kernel
    ints = ("T", "C", "stride_yb", "stride_yt", "stride_ob", "stride_ot")
    signature = {**{p: "*bf16" for p in ("y_ptr", "taps_ptr", "bias_ptr", "out_ptr")}, **{i: "i32" for i in ints},
                 **{c: "constexpr" for c in ("LEFT", "K", "BLOCK_T", "BLOCK_C", "UNROLL")}}
    # What a launch would tell the compiler: the arguments it may specialise that are multiples of 16.
    aligned = [n for n in ("y_ptr", "taps_ptr", "bias_ptr", "out_ptr", "C", "stride_yb", "stride_yt", "stride_ob",
                           "stride_ot") if not kernel.params[kernel.arg_names.index(n)].do_not_specialize]
    attrs = {(kernel.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    bt, bc, warps, unroll = tile
    constants = {"LEFT": 7, "K": 15, "BLOCK_T": bt, "BLOCK_C": bc, "UNROLL": unroll}
    compiled = triton.compile(ASTSource(kernel, signature, constants, attrs), target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": warps})
    ptx = compiled.asm["ptx"]
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        done = subprocess.run([str(ptxas), "-v", "--gpu-name", "sm_90a", f.name, "-o", os.devnull],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
    return ptx, done.stderr


@pytest.mark.parametrize("tile", dw.TILES, ids=lambda t: "x".join(map(str, t)))
def test_every_tile_compiles_for_an_h100_without_spills_and_with_wide_loads(tile, tmp_path, monkeypatch):
    """What a CPU can say of the kernel's speed: compiled for sm_90a, no tile spills registers to local
    memory (fully unrolled, the 15 taps spilled 8 KB per thread at 64 x 128), and the frames' rows are
    read 16 bytes at a time, not one bf16 at a time (as they were with the strides unspecialised)."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    ptx, report = _hopper_build(tile)
    spills = [line for line in report.splitlines() if "spill" in line]
    assert spills and all(" 0 bytes spill stores, 0 bytes spill loads" in line for line in spills), report
    assert ptx.count("ld.global.v4") > 0 and ptx.count("st.global.v4") > 0
    assert ptx.count("ld.global.b16") <= 2 * tile[3]  # the taps' and the bias's rows, one channel a thread
