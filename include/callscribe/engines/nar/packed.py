"""Attention over a packed batch: items laid end to end, each attending only to itself.

The editor sees every item as one flat sequence with cumulative lengths (``cu_seqlens``).
Which kernel runs is picked from a small registry, once per (device type, dtype), and logged
once, in order of preference:

- ``flash-attn``: flash-attn's variable-length kernel (CUDA, fp16/bf16, when installed);
- ``torch-flash``: the flash kernel inside torch (``aten._flash_attention_forward``, the one
  ``varlen_attn`` calls), given the grouped key/value heads as they are: no repeated copy of
  them per layer. A private operator, so before it is chosen it is run once on a small packed
  batch and compared with the per-item reference; if it raises or differs, the next one is used;
- ``torch-varlen``: torch's own ``torch.nn.attention.varlen.varlen_attn`` (CUDA, fp16/bf16,
  torch >= 2.10), with grouped queries served by repeating the key/value heads, because
  torch 2.11 has no GQA argument;
- ``per-item-sdpa``: SDPA on each item's slice in turn: exact on any device, and never a
  dense (sum of lengths)^2 mask, which is what makes the reference implementation collapse
  at large batches; on a GPU it is launch-bound, so CUDA uses it only when neither kernel can run.

``CALLSCRIBE_NAR_ATTENTION=<name>`` forces one (for A/B measurements); a forced backend that
cannot run on the tensors raises instead of silently running something else.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F

from callscribe.engines.nar.host import upload

log = logging.getLogger(__name__)

ENV_FORCE = "CALLSCRIBE_NAR_ATTENTION"
HALF = (torch.float16, torch.bfloat16)


@cache
def flash_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


_varlen_attn: Callable | None = None


def torch_varlen_kernel() -> Callable | None:
    """torch's varlen_attn where this build has it (torch >= 2.10), else None.

    Imported at first need (it imports torch._dynamo: a second), then read from a global, which
    a compiled editor layer traces without a graph break.
    """
    global _varlen_attn
    if _varlen_attn is None:
        try:
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:
            return None
        _varlen_attn = varlen_attn
    return _varlen_attn


def torch_flash_op() -> Callable | None:
    """torch's own flash-attention operator where this build has one, else None."""
    return getattr(torch.ops.aten, "_flash_attention_forward", None)


def cu_seqlens_for(lengths: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """[3, 5] -> tensor([0, 3, 8], int32)."""
    out = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    out[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    return upload(out, device)


def per_item_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                       scale: float) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    bounds = cu_seqlens.tolist()
    out = torch.empty_like(q)
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end == start:
            continue
        qi = q[start:end].transpose(0, 1)[None]  # (1, heads, L, d)
        ki = k[start:end].transpose(0, 1).repeat_interleave(groups, dim=0)[None]
        vi = v[start:end].transpose(0, 1).repeat_interleave(groups, dim=0)[None]
        out[start:end] = F.scaled_dot_product_attention(qi, ki, vi, scale=scale)[0].transpose(0, 1)
    return out


def repeat_kv(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, kv_heads, d) -> (N, heads, d): query head h reads key/value head h // (heads // kv_heads),
    the grouping per_item_attention's repeat_interleave uses."""
    n, kv_heads, d = x.shape
    if kv_heads == heads:
        return x
    return x[:, :, None, :].expand(n, kv_heads, heads // kv_heads, d).reshape(n, heads, d)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Facts:
    """What decides the backend: the tensors' device and dtype, and what this install has."""

    device_type: str
    dtype: torch.dtype
    capability: tuple[int, int] | None  # CUDA compute capability; None off CUDA
    flash_attn: bool
    torch_varlen: bool
    head_dim: int = 128
    torch_flash: bool = False  # torch has aten._flash_attention_forward (every CUDA build since 2.0 does)

    @property
    def fast_gpu(self) -> bool:
        # Both flash kernels need Ampere (sm80) or newer, a 16-bit dtype and a head size that is
        # a multiple of 8 (tiny test configs have 12).
        return (self.device_type == "cuda" and self.dtype in HALF and (self.capability or (0, 0)) >= (8, 0)
                and self.head_dim % 8 == 0)


Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, float], torch.Tensor]


def _flash_attn(q, k, v, cu_seqlens, max_len, scale):
    from flash_attn import flash_attn_varlen_func

    # flash-attn takes grouped key/value heads as they are.
    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, softmax_scale=scale, causal=False)


def _torch_flash(q, k, v, cu_seqlens, max_len, scale):
    # Positional arguments up to return_debug_mask: the same in every torch since 2.1.
    out = torch_flash_op()(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, 0.0, False, False, scale=scale)
    return out[0]


def _torch_varlen(q, k, v, cu_seqlens, max_len, scale):
    kernel = torch_varlen_kernel()
    heads = q.shape[1]
    return kernel(q, repeat_kv(k, heads), repeat_kv(v, heads), cu_seqlens, cu_seqlens, max_len, max_len, scale=scale)


def _per_item(q, k, v, cu_seqlens, max_len, scale):
    return per_item_attention(q, k, v, cu_seqlens, scale)


@dataclass(frozen=True)
class Backend:
    run: Kernel
    usable: Callable[[Facts], bool]
    # Tried against the reference before it is chosen: a private operator, or a compiled extension
    # (flash-attn is built against one torch; on another it may fail to load or compute garbage).
    probed: bool = False


# In order of preference: the first usable one (whose probe passes) is chosen.
BACKENDS: dict[str, Backend] = {
    "flash-attn": Backend(_flash_attn, lambda f: f.fast_gpu and f.flash_attn, probed=True),
    "torch-flash": Backend(_torch_flash, lambda f: f.fast_gpu and f.torch_flash, probed=True),
    "torch-varlen": Backend(_torch_varlen, lambda f: f.fast_gpu and f.torch_varlen),
    "per-item-sdpa": Backend(_per_item, lambda f: True),
}


def choose(facts: Facts, forced: str | None = None, passes: Callable[[str], bool] = lambda name: True) -> str:
    """The first usable backend whose probe ``passes`` (only probed backends are asked), or the forced one."""
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{ENV_FORCE}={forced!r}: unknown attention backend; one of {', '.join(BACKENDS)}")
        if not BACKENDS[forced].usable(facts):
            raise ValueError(f"{ENV_FORCE}={forced!r} cannot run on {facts.device_type} {facts.dtype}")
        if BACKENDS[forced].probed and not passes(forced):
            raise ValueError(f"{ENV_FORCE}={forced!r} failed its check against the per-item reference (logged above)")
        return forced
    return next(name for name, b in BACKENDS.items() if b.usable(facts) and (not b.probed or passes(name)))


# The probe: an editor-like packed batch (grouped heads, an item of one position, one longer than a
# kernel tile), compared in float32 with the per-item loop, at a bound bf16 rounding stays far inside
# (a wrong head grouping is off by about 4).
PROBE_LENGTHS = (37, 1, 130, 9)
PROBE_TOLERANCE = 0.05


def grouped_views(n: int, heads: int, kv_heads: int, head_dim: int, device: torch.device | str,
                  dtype: torch.dtype, generator: torch.Generator, scale: float = 1.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random q, k, v laid out as the fused editor layer hands them over: views into one row of
    (heads + 2 kv_heads) x head_dim per position, so each has a row stride wider than itself.
    ``scale`` multiplies q (logits of order one under the editor's 1/head_dim softmax scale)."""
    fused = torch.randn(n, heads + 2 * kv_heads, head_dim, generator=generator)
    fused[:, :heads] *= scale
    fused = fused.to(device, dtype)
    return fused[:, :heads], fused[:, heads : heads + kv_heads], fused[:, heads + kv_heads :]


def probe(name: str, device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int) -> bool:
    """Whether backend ``name`` runs and agrees with the per-item reference on this device (logged if
    not), with the editor's softmax scale (1 / head_dim, not the kernels' default 1 / sqrt(head_dim))
    and its strided q, k, v."""
    g = torch.Generator().manual_seed(0)
    q, k, v = grouped_views(sum(PROBE_LENGTHS), heads, kv_heads, head_dim, device, dtype, g, head_dim ** 0.5)
    cu = cu_seqlens_for(list(PROBE_LENGTHS), device)
    scale = 1 / head_dim
    try:
        got = BACKENDS[name].run(q, k, v, cu, max(PROBE_LENGTHS), scale).float()
        want = per_item_attention(q.float(), k.float(), v.float(), cu, scale)
        err = float((got - want).abs().max())  # reads the result back: a kernel's fault shows here
    except Exception as exc:  # a private operator may have moved or changed: the next backend will do
        log.warning("attention backend %s failed its probe on %s %s (%s: %s); trying the next one",
                    name, device.type, dtype, type(exc).__name__, exc)
        return False
    if not err <= PROBE_TOLERANCE:  # NaN fails too
        log.warning("attention backend %s is off the per-item reference by %.3g on %s %s; trying the next one",
                    name, err, device.type, dtype)
        return False
    return True


def facts_for(device: torch.device, dtype: torch.dtype, head_dim: int = 128) -> Facts:
    cuda = device.type == "cuda"  # the kernels are looked for only where they could run
    capability = torch.cuda.get_device_capability(device) if cuda else None
    return Facts(device.type, dtype, capability, cuda and flash_available(), cuda and torch_varlen_kernel() is not None,
                 head_dim, cuda and torch_flash_op() is not None)


_CHOSEN: dict[tuple[str, torch.dtype, int], str] = {}


def _resolve(device: torch.device, dtype: torch.dtype, head_dim: int, heads: int, kv_heads: int) -> str:
    facts = facts_for(device, dtype, head_dim)
    name = choose(facts, os.environ.get(ENV_FORCE) or None,
                  lambda candidate: probe(candidate, device, dtype, heads, kv_heads, head_dim))
    _CHOSEN[(device.type, dtype, head_dim)] = name
    if facts.device_type == "cuda" and name == "per-item-sdpa":
        log.warning("Granite NAR attention on cuda %s: per-item SDPA loop (slow; flash-attn %s, torch varlen_attn %s, "
                    "compute capability %s)", dtype, facts.flash_attn, facts.torch_varlen, facts.capability)
    else:
        log.info("Granite NAR attention on %s %s: %s", device.type, dtype, name)
    return name


# Reached first inside a layer torch.compile is tracing, the choice runs eagerly, outside the graph
# (one graph break, once); torch's lazy wrapper imports dynamo only then, not with this module.
_resolve_outside_graph = getattr(torch, "_disable_dynamo", lambda fn: fn)(_resolve)


def attention_backend(q: torch.Tensor, kv_heads: int | None = None) -> str:
    """The backend's name for tensors like ``q`` (and ``kv_heads`` key/value heads, the probe's
    grouping; default as many as q's heads): chosen at first use, the same afterwards."""
    name = _CHOSEN.get((q.device.type, q.dtype, q.shape[-1]))
    if name is None:
        resolve = _resolve_outside_graph if torch.compiler.is_compiling() else _resolve
        heads = q.shape[-2] if q.dim() >= 2 else 1
        name = resolve(q.device, q.dtype, q.shape[-1], heads, kv_heads or heads)
    return name


def reset_choice() -> None:
    """Forget the choices (tests; after changing CALLSCRIBE_NAR_ATTENTION)."""
    _CHOSEN.clear()


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_len: int,
                     scale: float) -> torch.Tensor:
    """Bidirectional attention within each packed item.

    q: (N, heads, d); k, v: (N, kv_heads, d) with heads a multiple of kv_heads (grouped
    queries); returns (N, heads, d).
    """
    return BACKENDS[attention_backend(q, k.shape[1])].run(q, k, v, cu_seqlens, max_len, scale)
