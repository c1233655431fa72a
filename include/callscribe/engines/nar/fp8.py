"""Float8 matrix products for the Conformer blocks and editor layers (opt-in, not exact).

``quantize_fp8(model, parts)`` replaces every ``nn.Linear`` inside the chosen layer stacks with
:class:`Fp8Linear`: its weight stored as float8 (e4m3) with one scale per output row, chosen
once at load, and its input scaled per row to float8 at run time; the product runs on the
card's float8 tensor cores (``torch._scaled_mm``) and comes back in the model's dtype. Half the
bytes and about twice the peak rate of bf16 on an H100, for a rounding error of a few per cent
of each row's largest value on each operand.

The heads that end in an argmax over the vocabulary (the BPE CTC head, the tied LM head), the
input projection, the self-conditioning pair and the Q-Former stay in the model's dtype.

Off by default (``CALLSCRIBE_NAR_FP8``): what it costs in word error rate needs the real
weights to measure (docs/granite.md). A quantized model refuses ``state_dict``: its tensors are
no checkpoint's.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

log = logging.getLogger(__name__)

ENV_FP8 = "CALLSCRIBE_NAR_FP8"
# "editor": the editor layers' products (about half the batch's matrix work); "all": the
# Conformer blocks' too.
FP8_PARTS = {"off": (), "editor": ("editor",), "all": ("encoder", "editor")}
FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
TINY = 1e-12  # the scale of an all-zero row: any positive value gives zeros


def fp8_wanted(requested: str | None = None) -> str:
    """Which parts compute in float8: ``requested``, else CALLSCRIBE_NAR_FP8, else "off"."""
    name = (requested or os.environ.get(ENV_FP8, "")).strip().lower() or "off"
    if name not in FP8_PARTS:
        raise ValueError(f"{ENV_FP8}={name!r}: one of {', '.join(FP8_PARTS)}")
    return name


def to_fp8_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, k) -> float8 rows and each row's float32 scale (rows, 1): x ~ q * scale, the row's
    largest magnitude mapped to the format's largest value."""
    scale = x.abs().amax(-1, keepdim=True).float().clamp(min=TINY) / FP8_MAX
    # Clamped: a quotient rounded just past the largest value must not overflow the format.
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


class Fp8Linear(nn.Module):
    """``src`` (an nn.Linear) with its weight in float8, one scale per output row, and its input
    quantized per row on the fly."""

    def __init__(self, src: nn.Linear):
        super().__init__()
        n, k = src.weight.shape
        if n % 16 or k % 16:
            raise ValueError(f"float8 products need both sizes in multiples of 16, not {n} x {k}")
        self.in_features, self.out_features = k, n
        with torch.no_grad():
            q, scale = to_fp8_rows(src.weight.detach())
        self.register_buffer("weight_fp8", q)  # (n, k): its transpose is the column-major operand
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, n)
        self.bias = None if src.bias is None else nn.Parameter(src.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Row-major, as the float8 kernels require of the first operand (a transposed input, such as
        # the depthwise convolution's output in its "ncw" layout, would reshape to a column-major view).
        rows = x.reshape(-1, self.in_features).contiguous()
        q, scale = to_fp8_rows(rows)
        # Fast accumulation (the tensor cores' own, without periodic promotion to float32): the
        # inference setting; its error is small beside the float8 rounding of the operands.
        y = torch._scaled_mm(q, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale, bias=self.bias,
                             out_dtype=x.dtype, use_fast_accum=x.is_cuda)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _refuse_state_dict(module: nn.Module, prefix: str, keep_vars: bool) -> None:
    raise RuntimeError(f"{prefix or 'the model'} computes in float8 (quantize_fp8): its tensors are no "
                       "checkpoint's; save from a model loaded without CALLSCRIBE_NAR_FP8")


def _layer_stacks(model: nn.Module, parts: tuple[str, ...]) -> list[nn.ModuleList]:
    stacks = {"encoder": model.encoder.blocks, "editor": model.editor.layers}
    return [stacks[p] for p in parts]


@torch.no_grad()
def quantize_fp8(model: nn.Module, setting: str) -> int:
    """Replace the linears of the layer stacks ``setting`` names (FP8_PARTS) in place; returns how many.
    A linear whose sizes the float8 kernels cannot take (not multiples of 16) stays as it is.
    Idempotent (a replaced linear is no longer an nn.Linear)."""
    parts = FP8_PARTS[setting]
    device = next(model.parameters()).device
    if parts and device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        raise ValueError(f"{ENV_FP8}={setting}: float8 products need a card of compute capability 8.9 or later "
                         f"(Ada, Hopper); this one is {'.'.join(map(str, torch.cuda.get_device_capability(device)))}")
    replaced = kept = 0
    for stack in _layer_stacks(model, parts):
        for parent in [m for layer in stack for m in layer.modules()]:
            for attr, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    if child.in_features % 16 or child.out_features % 16:
                        kept += 1
                        continue
                    setattr(parent, attr, Fp8Linear(child))
                    replaced += 1
    if replaced:
        model.register_state_dict_pre_hook(_refuse_state_dict)
        log.info("Granite NAR: %d matrix products in float8 (%s)%s", replaced, setting,
                 f"; {kept} kept in {next(model.parameters()).dtype} (sizes not multiples of 16)" if kept else "")
    return replaced
