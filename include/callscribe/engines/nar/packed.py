"""Attention over a packed batch: items laid end to end, each attending only to itself.

The editor sees every item as one flat sequence with cumulative lengths (``cu_seqlens``).
On CUDA with flash-attn installed this is flash-attn's variable-length kernel; elsewhere
each item runs through SDPA on its own slice: exact, and never a dense (sum of lengths)^2
mask, which is what makes the reference implementation collapse at large batches.
"""

from __future__ import annotations

import importlib.util
from functools import cache

import torch
import torch.nn.functional as F


@cache
def flash_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def cu_seqlens_for(lengths: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """[3, 5] -> tensor([0, 3, 8], int32)."""
    out = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    out[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    return out.to(device)


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_len: int,
                     scale: float) -> torch.Tensor:
    """Bidirectional attention within each packed item.

    q: (N, heads, d); k, v: (N, kv_heads, d) with heads a multiple of kv_heads (grouped
    queries); returns (N, heads, d).
    """
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and flash_available():
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len,
                                      softmax_scale=scale, causal=False)
    return per_item_attention(q, k, v, cu_seqlens, scale)


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
