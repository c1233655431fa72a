"""Inference-time fusions of the native Granite NAR: the same function, fewer kernels per batch.

``optimize_for_inference(model)`` rewrites a loaded model in place, once, for inference only:

- Conformer convolution: the BatchNorm (eval statistics) that follows the depthwise convolution
  is folded into that convolution's weight and a new bias; the two 1x1 convolutions are the
  matrix products they are (no cuDNN convolution, no NCHW/NHWC transposes), and the module
  stays in the stream's (batch, time, channels) layout. The depthwise convolution reads that
  layout directly as a channels-last (B, C, 1, T) image, which on CUDA sends it to cuDNN
  instead of PyTorch's generic depthwise kernel (``CALLSCRIBE_NAR_DEPTHWISE=ncw`` restores the
  contiguous (B, C, T) ``conv1d`` for A/B measurements).
- Encoder attention: q and kv in one matrix product; the relative-position table is pre-scaled
  by the softmax scale (a (2 max_rel + 1, head_dim) table instead of a pass over every score).
- Editor: q/k/v in one product, gate/up in one, rotary embedding applied to q and k together,
  RMSNorm through ``F.rms_norm``, the residual multiplier folded into the o and down projections.
- Q-Former: k and v (same input, same bias rule) in one product.
- Macaron half-steps: the 0.5 folded into the feed-forward's down projection (bitwise the same).

Every rewrite is exact in real arithmetic; in floating point only rounding order changes.
The fused modules have their own tensor names, which no checkpoint layout knows, so a fused
model refuses ``state_dict`` (and with it ``save_checkpoint``): save from an unfused model.
``CALLSCRIBE_NAR_FUSE=0`` makes the engine skip all of this (A/B measurements).
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from callscribe.engines.nar.modeling import (
    MASKED,
    BlockAttention,
    Blocks,
    ConformerBlock,
    ConvModule,
    EditorLayer,
    FeedForward,
    GraniteNar,
    QFormerLayer,
    apply_rope,
    in_blocks,
)
from callscribe.engines.nar.packed import varlen_attention

log = logging.getLogger(__name__)

ENV_FUSE = "CALLSCRIBE_NAR_FUSE"
ENV_DEPTHWISE = "CALLSCRIBE_NAR_DEPTHWISE"
DEPTHWISE_LAYOUTS = ("nhwc", "ncw")
# Compiled, the depthwise convolution is a fused shifted sum ("shifted"), the library kernel ("conv"),
# or our Triton kernel with the bias and SiLU (``depthwise.py``; checked on the device first).
ENV_DEPTHWISE_COMPILED = "CALLSCRIBE_NAR_DEPTHWISE_COMPILED"
COMPILED_DEPTHWISE = ("shifted", "conv", "triton")


class FusedModelError(RuntimeError):
    """A fused model was asked for its checkpoint tensors."""


def fusion_enabled() -> bool:
    return os.environ.get(ENV_FUSE, "1") != "0"


def _refuse_state_dict(module: nn.Module, prefix: str, keep_vars: bool) -> None:
    raise FusedModelError(
        f"{prefix or 'the model'} was fused for inference (optimize_for_inference): its tensors no longer have "
        "checkpoint names; save from a model loaded without fusion")


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear holding these tensors (no initialisation of throwaway weights)."""
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    out.weight = nn.Parameter(weight.detach(), requires_grad=False)
    if bias is not None:
        out.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return out


def _cat_linears(*layers: nn.Linear) -> nn.Linear:
    """One linear computing every layer's output side by side (same input); biases all or none."""
    biases = [lin.bias for lin in layers]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        raise ValueError("cannot fuse linears where only some have a bias")
    bias = None if biases[0] is None else torch.cat(biases)
    return _linear(torch.cat([lin.weight for lin in layers]), bias)


def _scaled_linear(src: nn.Linear, factor: float) -> nn.Linear:
    """factor * src(x) as one linear: weight and bias scaled (in float64, then the model's dtype)."""
    with torch.no_grad():
        weight = (src.weight.double() * factor).to(src.weight.dtype)
        bias = None if src.bias is None else (src.bias.double() * factor).to(src.bias.dtype)
    return _linear(weight, bias)


def _rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """modeling.RMSNorm in one fused op: normalised in float32, cast back, then scaled."""
    return norm.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=norm.eps).to(x.dtype)


# ------------------------------------------------------------------------------- encoder


class FusedBlockAttention(nn.Module):
    def __init__(self, src: BlockAttention):
        super().__init__()
        self.heads, self.head_dim, self.context, self.scale = src.heads, src.head_dim, src.context, src.scale
        self.norm = src.norm
        self.qkv = _cat_linears(src.q, src.kv)  # kv's rows are k then v (modeling's chunk(2))
        self.out = src.out
        with torch.no_grad():
            # (q . r) * s == q . (r * s): scale the small table, not every score.
            table = (src.rel_pos.weight.double() * src.scale).to(src.rel_pos.weight.dtype)
        self.register_buffer("rel_table", table)
        self.register_buffer("dists", src.dists, persistent=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, blocks: Blocks | None = None) -> torch.Tensor:
        return self.out(in_blocks(self.norm(x), valid, blocks, self.context, self._attend))

    def _attend(self, h: torch.Tensor, keys_valid: torch.Tensor) -> torch.Tensor:
        """(blocks, context, hidden) normalised frames -> (blocks, context, heads * head_dim)."""
        n, c, _ = h.shape
        qkv = self.qkv(h).view(n, c, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (blocks, heads, c, head_dim), views
        bias = torch.einsum("bhqd,qkd->bhqk", q, F.embedding(self.dists, self.rel_table))
        bias.masked_fill_(~keys_valid[:, None, None, :], MASKED)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return y.transpose(1, 2).reshape(n, c, -1)


def compiled_depthwise() -> str:
    how = os.environ.get(ENV_DEPTHWISE_COMPILED, "shifted")
    if how not in COMPILED_DEPTHWISE:
        raise ValueError(f"{ENV_DEPTHWISE_COMPILED}={how!r}: one of {', '.join(COMPILED_DEPTHWISE)}")
    return how


def depthwise_layout() -> str:
    layout = os.environ.get(ENV_DEPTHWISE, "nhwc")
    if layout not in DEPTHWISE_LAYOUTS:
        raise ValueError(f"{ENV_DEPTHWISE}={layout!r}: one of {', '.join(DEPTHWISE_LAYOUTS)}")
    return layout


class FusedConvModule(nn.Module):
    """LayerNorm -> pointwise (matmul) -> GLU -> mask -> depthwise (+ folded BatchNorm) -> SiLU -> pointwise."""

    def __init__(self, src: ConvModule, layout: str = "nhwc"):
        super().__init__()
        self.norm = src.norm
        self.pointwise_in = _linear(src.pointwise_in.weight.squeeze(-1), src.pointwise_in.bias)
        self.pointwise_out = _linear(src.pointwise_out.weight.squeeze(-1), src.pointwise_out.bias)
        self.padding, self.layout = src.padding, layout
        self.compiled_path = compiled_depthwise()
        bn = src.batch_norm
        if src.depthwise.bias is not None:
            raise ValueError("the depthwise convolution was expected without a bias")
        with torch.no_grad():
            # BN(conv(y)) = g * (conv(y) - mean) / sqrt(var + eps) + beta: per output channel an affine
            # map of the convolution's output, so it is the convolution with its weight scaled by
            # g / sqrt(var + eps) and the bias beta - mean * g / sqrt(var + eps). Done in float64.
            scale = bn.weight.double() * torch.rsqrt(bn.running_var.double() + bn.eps)
            weight = src.depthwise.weight.double() * scale[:, None, None]
            bias = bn.bias.double() - bn.running_mean.double() * scale
        dtype = src.depthwise.weight.dtype
        self.channels, self.kernel = weight.shape[0], weight.shape[-1]
        if layout == "nhwc":
            weight = weight[:, :, None, :].to(dtype).contiguous(memory_format=torch.channels_last)  # (C, 1, 1, K)
        else:
            weight = weight.to(dtype)  # (C, 1, K)
        self.dw_weight = nn.Parameter(weight, requires_grad=False)
        self.dw_bias = nn.Parameter(bias.to(dtype), requires_grad=False)
        # The same taps as (kernel, channels), for the compiled path's shifted sum.
        self.register_buffer("dw_taps", weight.reshape(self.channels, self.kernel).t().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1)  # (B, T, C), contiguous
        # Frames past an item's end are zeros, as the convolution's own padding would be.
        y = y.masked_fill_(~valid[:, :, None], 0.0)
        left, right = self.padding
        if self.compiled_path == "triton" and torch.compiler.is_compiling():
            # An opaque operator: the GLU's output is realised once as its input, no graph break.
            return self.pointwise_out(torch.ops.callscribe.depthwise_silu(y, self.dw_taps, self.dw_bias, left))
        if self.compiled_path == "shifted" and torch.compiler.is_compiling():
            # Compiled, the convolution is written out as a sum of shifted copies, which inductor fuses
            # with the SiLU into one memory-bound pass. The graph break makes the GLU's output a real
            # tensor first: fused into the sum, the GLU would be recomputed for every tap (measured on
            # an H100: 6.2 ms per layer, against 2.7 ms for cuDNN's depthwise kernel alone).
            torch._dynamo.graph_break()
            return self.pointwise_out(F.silu(self._shifted_sum(y, left, right)))
        if self.layout == "nhwc":
            if left != right:  # odd kernels pad symmetrically inside the convolution: no padded copy
                y = F.pad(y, (0, 0, left, right))
            # (B, T, C) memory is a channels-last (B, C, 1, T) image: no transpose either way.
            img = y.transpose(1, 2).unsqueeze(2)
            z = F.conv2d(img, self.dw_weight, self.dw_bias, padding=(0, left if left == right else 0),
                         groups=self.channels)
            z = z.squeeze(2).transpose(1, 2)
        else:
            z = F.conv1d(F.pad(y.transpose(1, 2), (left, right)), self.dw_weight, self.dw_bias,
                         groups=self.channels).transpose(1, 2)
        return self.pointwise_out(F.silu(z))


    def _shifted_sum(self, y: torch.Tensor, left: int, right: int) -> torch.Tensor:
        t = y.shape[1]
        y = F.pad(y, (0, 0, left, right))
        z = self.dw_bias + y[:, :t] * self.dw_taps[0]
        for k in range(1, self.kernel):
            z = z + y[:, k : k + t] * self.dw_taps[k]
        return z


def settle_compiled_depthwise(model: nn.Module) -> str | None:
    """Before compiling: a Triton depthwise kernel asked for is run once on the model's device and
    compared with the convolution (depthwise.probe); if it fails or differs, every block falls back
    to the fused shifted sum, with a warning. Returns the path the blocks take (None: no fused blocks)."""
    convs = [m for m in model.modules() if isinstance(m, FusedConvModule)]
    if not convs:
        return None
    if convs[0].compiled_path == "triton":
        from callscribe.engines.nar import depthwise  # registers callscribe::depthwise_silu

        first = convs[0]
        if not depthwise.probe(first.dw_taps.device, first.dw_taps.dtype, first.kernel, first.padding[0]):
            for conv in convs:
                conv.compiled_path = "shifted"
    log.info("compiled depthwise convolution: %s", convs[0].compiled_path)
    return convs[0].compiled_path


class HalfFeedForward(nn.Module):
    """0.5 * FeedForward(x), the half step folded into the down projection: bitwise the same (a power of two)."""

    def __init__(self, src: FeedForward):
        super().__init__()
        self.norm, self.up = src.norm, src.up
        self.down = _scaled_linear(src.down, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.up(self.norm(x))))


class FusedConformerBlock(nn.Module):
    def __init__(self, src: ConformerBlock, layout: str = "nhwc"):
        super().__init__()
        self.ffn1, self.ffn2, self.norm_out = HalfFeedForward(src.ffn1), HalfFeedForward(src.ffn2), src.norm_out
        self.attn = FusedBlockAttention(src.attn)
        self.conv = FusedConvModule(src.conv, layout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, blocks: Blocks | None = None) -> torch.Tensor:
        # Never in place: the encoder keeps some blocks' inputs as exported layers.
        x = x + self.ffn1(x)
        x = x + self.attn(x, valid, blocks)
        x = x + self.conv(x, valid)
        x = x + self.ffn2(x)
        return self.norm_out(x).masked_fill(~valid[..., None], 0.0)  # as modeling.ConformerBlock: why there


# ------------------------------------------------------------------------------- projector


class FusedQFormerLayer(nn.Module):
    def __init__(self, src: QFormerLayer):
        super().__init__()
        self.heads, self.act = src.heads, src.act
        self.attn_norm, self.q, self.o = src.attn_norm, src.q, src.o
        self.kv = _cat_linears(src.k, src.v)  # both read the window
        self.mlp_norm, self.fc1, self.fc2 = src.mlp_norm, src.fc1, src.fc2

    def forward(self, h: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        n, nq, d = h.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2)

        k, v = self.kv(window).chunk(2, dim=-1)
        y = F.scaled_dot_product_attention(heads(self.q(self.attn_norm(h))), heads(k), heads(v))
        h = h + self.o(y.transpose(1, 2).reshape(n, nq, d))
        return h + self.fc2(self.act(self.fc1(self.mlp_norm(h))))


# ------------------------------------------------------------------------------- editor


class FusedEditorLayer(nn.Module):
    def __init__(self, src: EditorLayer):
        super().__init__()
        self.cfg = src.cfg
        self.attn_norm, self.mlp_norm = src.attn_norm, src.mlp_norm
        # The residual multiplier folded into the two projections that feed the stream (no biases).
        # (Not torch.add(alpha=...): compiled with dynamic shapes on a CPU, that gave logits 4e-3 off.)
        self.o = _scaled_linear(src.o, src.cfg.residual_multiplier)
        self.down = _scaled_linear(src.down, src.cfg.residual_multiplier)
        self.qkv = _cat_linears(src.q, src.k, src.v)
        self.gate_up = _cat_linears(src.gate, src.up)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cu_seqlens: torch.Tensor,
                max_len: int) -> torch.Tensor:
        cfg = self.cfg
        heads, kv_heads, hd = cfg.heads, cfg.kv_heads, cfg.head_dim
        qkv = self.qkv(_rms_norm(x, self.attn_norm))
        # q and k rotate with the same per-position tables: one rotation over both.
        qk = apply_rope(qkv[:, : (heads + kv_heads) * hd].unflatten(-1, (heads + kv_heads, hd)), *rope)
        v = qkv[:, (heads + kv_heads) * hd :].unflatten(-1, (kv_heads, hd))
        y = varlen_attention(qk[:, :heads], qk[:, heads:], v, cu_seqlens, max_len, cfg.attention_multiplier)
        x = x + self.o(y.flatten(1))
        gate, up = self.gate_up(_rms_norm(x, self.mlp_norm)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


# ------------------------------------------------------------------------------- entry point


def is_fused(model: GraniteNar) -> bool:
    return getattr(model, "inference_fused", False)


@torch.no_grad()
def optimize_for_inference(model: GraniteNar, depthwise: str | None = None) -> GraniteNar:
    """Fuse the loaded model in place for inference (eval mode only); returns it. Idempotent."""
    if is_fused(model):
        return model
    if model.training:
        raise ValueError("optimize_for_inference folds BatchNorm's running statistics: call model.eval() first")
    layout = depthwise or depthwise_layout()
    if layout not in DEPTHWISE_LAYOUTS:
        raise ValueError(f"depthwise layout {layout!r}: one of {', '.join(DEPTHWISE_LAYOUTS)}")
    # One layer at a time, so the unfused tensors are freed as we go (peak: one layer's worth extra).
    for i, block in enumerate(model.encoder.blocks):
        model.encoder.blocks[i] = FusedConformerBlock(block, layout)
    for i, layer in enumerate(model.projector.layers):
        model.projector.layers[i] = FusedQFormerLayer(layer)
    for i, layer in enumerate(model.editor.layers):
        model.editor.layers[i] = FusedEditorLayer(layer)
    model.register_state_dict_pre_hook(_refuse_state_dict)
    for part in (model.encoder, model.projector, model.editor):
        part.register_state_dict_pre_hook(_refuse_state_dict)
    model.inference_fused = True
    log.info("Granite NAR fused for inference (depthwise convolution: %s)", layout)
    return model.eval()
