"""The Conformer's depthwise convolution, its folded bias and the SiLU after it, as one Triton kernel.

Compiled, the convolution is otherwise a sum of 15 shifted multiply-adds that inductor fuses into
one element-wise pass over the flattened (time x channels) stream: each output reads 15 inputs
that only L2 shares between neighbouring blocks of threads. On the session-11 H100 that pass moved
its 1.7 GB (2,048 channels x 204,800 frames, in and out) at about 0.9 TB/s, a third of the card's
bandwidth. Here each program owns a tile of frames x channels and reads the taps' rows as 2-D
tiles that overlap from one tap to the next, so an input row comes from DRAM about once per tile.

``depthwise_silu(y, taps, bias, left)`` is a torch custom operator (``callscribe::depthwise_silu``)
with a shape-only fake implementation, so a compiled Conformer block holds it without a graph break
and its input, the GLU's output, is realised once before it. It runs wherever Triton runs: CUDA,
or the CPU under ``TRITON_INTERPRET=1`` (how the tests run it). Accumulation is in float32, as
inductor's fused pass and cuDNN do; the output has the input's dtype.

Chosen by ``CALLSCRIBE_NAR_DEPTHWISE_COMPILED=triton`` and checked once on its device against the
convolution before use (:func:`probe`): a kernel that fails or differs falls back to the fused
shifted sum, with a warning.
"""

from __future__ import annotations

import contextlib
import logging

import torch
import torch.nn.functional as F

try:  # imported only where the engine asks for this kernel: the CPU engine never pays for Triton
    import triton
    import triton.language as tl
except ImportError:
    triton = None

log = logging.getLogger(__name__)

# A tile: 32 frames x 128 channels (a row of 128 bf16 is 256 contiguous bytes: whole cache lines),
# 4 warps, the taps' loop unrolled 3 at a time. Each tap's load overlaps the previous one's but for
# one row, so the 15 loads of a tile cost about (32 + 14) rows of DRAM reads. Every tile here
# compiles for an H100 without register spills (tests/unit/test_granite_depthwise.py asks ptxas).
BLOCK_T = 32
BLOCK_C = 128
NUM_WARPS = 4
UNROLL = 3
# The tiles the GPU check times (benchmarks/gpu.py, "depthwise"): frames, channels, warps, unroll.
TILES = ((32, 128, 4, 3), (64, 128, 4, 1), (64, 64, 4, 3), (16, 128, 4, 5), (32, 256, 8, 3))


def available() -> bool:
    return triton is not None


if triton is not None:

    # Not specialised on the stream's length: Triton would otherwise compile a second variant mid-job
    # the first time a batch's frame count is (or is not) a multiple of 16, where the probe at load
    # compiles the one every batch then uses. The strides stay specialised (multiples of 16 with 2,048
    # channels, and in the probe's 160): unspecialised, every load would be two bytes wide.
    @triton.jit(do_not_specialize=["T"])
    def depthwise_silu_kernel(y_ptr, taps_ptr, bias_ptr, out_ptr, T, C, stride_yb, stride_yt, stride_ob, stride_ot,
                              LEFT: tl.constexpr, K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
                              UNROLL: tl.constexpr):
        # Program (i, j): frames [t0, t0 + BLOCK_T) of item i // tiles_per_item, channels of tile j.
        tiles = tl.cdiv(T, BLOCK_T)
        item = tl.program_id(0) // tiles
        t = (tl.program_id(0) % tiles) * BLOCK_T + tl.arange(0, BLOCK_T)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < C
        acc = tl.zeros((BLOCK_T, BLOCK_C), dtype=tl.float32)
        acc += tl.load(bias_ptr + c, mask=c_ok, other=0.0).to(tl.float32)[None, :]
        row = y_ptr + item.to(tl.int64) * stride_yb
        # A loop unrolled UNROLL taps at a time, not all 15: fully unrolled, the compiler starts every
        # tap's load before the first add and spills most of them (ptxas: 8 KB of spill stores per
        # thread at 64 x 128), where this keeps each thread within its registers.
        for k in tl.range(0, K, loop_unroll_factor=UNROLL):
            src = t + (k - LEFT)
            ok = (src >= 0) & (src < T)
            x = tl.load(row + src.to(tl.int64)[:, None] * stride_yt + c[None, :], mask=ok[:, None] & c_ok[None, :],
                        other=0.0)
            w = tl.load(taps_ptr + k * C + c, mask=c_ok, other=0.0)
            acc += x.to(tl.float32) * w.to(tl.float32)[None, :]
        z = acc * tl.sigmoid(acc)
        dst = out_ptr + item.to(tl.int64) * stride_ob + t.to(tl.int64)[:, None] * stride_ot + c[None, :]
        tl.store(dst, z.to(out_ptr.dtype.element_ty), mask=(t < T)[:, None] & c_ok[None, :])


def compiled_variants() -> int | None:
    """How many variants of the kernel Triton has compiled in this process (None where Triton keeps
    them elsewhere): after the probe at load one serves every batch, so more means a compile mid-job."""
    caches = getattr(depthwise_silu_kernel, "device_caches", None) if triton is not None else None
    if caches is None:
        return None
    return sum(len(entry[0]) for entry in caches.values())


def launch(y: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, left: int, out: torch.Tensor,
           block_t: int = BLOCK_T, block_c: int = BLOCK_C, num_warps: int = NUM_WARPS,
           unroll: int = UNROLL) -> torch.Tensor:
    """Run the kernel into ``out`` (the same shape as ``y``). y: (B, T, C) with unit channel stride;
    taps: (K, C); bias: (C,); all on one device."""
    if triton is None:
        raise RuntimeError("the Triton depthwise kernel needs the triton package")
    b, t, c = y.shape
    if y.stride(2) != 1 or out.stride(2) != 1:
        raise ValueError("depthwise_silu needs the channels contiguous (unit stride)")
    if taps.shape[1] != c or bias.shape != (c,) or out.shape != y.shape:
        raise ValueError(f"depthwise_silu: taps {tuple(taps.shape)}, bias {tuple(bias.shape)} and out "
                         f"{tuple(out.shape)} for y {tuple(y.shape)}")
    if len({y.device, taps.device, bias.device, out.device}) != 1:
        raise ValueError("depthwise_silu: all tensors on one device")
    if b == 0 or t == 0:
        return out
    grid = (b * triton.cdiv(t, block_t), triton.cdiv(c, block_c))
    # Triton launches on the current device, not the tensors': make them the same.
    with torch.cuda.device(y.device) if y.is_cuda else contextlib.nullcontext():
        depthwise_silu_kernel[grid](y, taps.contiguous(), bias.contiguous(), out, t, c, y.stride(0), y.stride(1),
                                    out.stride(0), out.stride(1), LEFT=left, K=taps.shape[0], BLOCK_T=block_t,
                                    BLOCK_C=block_c, UNROLL=unroll, num_warps=num_warps)
    return out


@torch.library.custom_op("callscribe::depthwise_silu", mutates_args=())
def depthwise_silu(y: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, left: int) -> torch.Tensor:
    """silu(bias[c] + sum_k taps[k, c] * y[b, t + k - left, c]), frames outside [0, T) read as zeros."""
    return launch(y, taps, bias, left, torch.empty_like(y, memory_format=torch.contiguous_format))


@depthwise_silu.register_fake
def _(y: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, left: int) -> torch.Tensor:
    return torch.empty_like(y, memory_format=torch.contiguous_format)


def reference(y: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, left: int) -> torch.Tensor:
    """The same function through torch's convolution, in float32."""
    k, c = taps.shape
    right = k - 1 - left
    x = F.pad(y.float().transpose(1, 2), (left, right))
    return F.silu(F.conv1d(x, taps.float().t()[:, None, :], bias.float(), groups=c)).transpose(1, 2)


# The probe: a few frames past a tile, channels past a tile, two items; bf16 rounding of outputs of
# order one stays far inside the bound (a wrong tap or a shifted frame is off by about one).
PROBE_SHAPE = (2, 83, 160)
PROBE_TOLERANCE = 0.05


def probe(device: torch.device, dtype: torch.dtype, kernel: int, left: int) -> bool:
    """Whether the kernel runs on this device and agrees with the convolution (logged if not)."""
    g = torch.Generator().manual_seed(0)
    b, t, c = PROBE_SHAPE
    y = torch.randn(b, t, c, generator=g).to(device, dtype)
    taps = (torch.randn(kernel, c, generator=g) / kernel ** 0.5).to(device, dtype)
    bias = (torch.randn(c, generator=g) * 0.1).to(device, dtype)
    try:
        got = depthwise_silu(y, taps, bias, left).float()
        err = float((got - reference(y, taps, bias, left)).abs().max())  # reads the result back
    except Exception as exc:  # no Triton, no compiler for this card, a launch failure
        log.warning("the Triton depthwise kernel failed its probe on %s %s (%s: %s); using the fused shifted sum",
                    device.type, dtype, type(exc).__name__, exc)
        return False
    if not err <= PROBE_TOLERANCE:  # NaN fails too
        log.warning("the Triton depthwise kernel is off the convolution by %.3g on %s %s; using the fused shifted sum",
                    err, device.type, dtype)
        return False
    return True
