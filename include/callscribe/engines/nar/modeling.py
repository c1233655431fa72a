"""Granite Speech NAR in plain PyTorch, written from the published description.

audio -> log-mel (50 Hz) -> Conformer encoder --(BPE CTC on 12.5 Hz pooled frames)--> draft
                                     \\--(layers 4, 8, 12, last)--> windowed Q-Former -> audio embeddings (10 Hz)
[audio embeddings ; blank, t1, blank, t2, ..., blank] -> bidirectional Granite editor (one pass)
-> argmax on the text slots -> CTC collapse -> token ids

Every stage is computed per item as if the item were alone (padding is masked or zeroed),
so an item's output never depends on the rest of its batch. Module names are our own;
checkpoint.py maps them to the published checkpoint's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from callscribe.engines.nar.config import EditorConfig, EncoderConfig, NarConfig, ProjectorConfig
from callscribe.engines.nar.features import LogMelFeatures
from callscribe.engines.nar.host import Download, upload
from callscribe.engines.nar.packed import cu_seqlens_for, varlen_attention

MASKED = -1e30  # a finite "minus infinity": fully padded rows stay finite instead of NaN
# The encoder's attention blocks over a tight stream (Slots.blocks, on the device): rows, keys_valid, places.
Blocks = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
ENCODER_STREAMS = ("tight", "blocks")


def collapse_with_slots(ids: list[int], blank: int) -> tuple[list[int], list[int]]:
    """Greedy CTC on a host list (no device syncs): kept tokens and the slot each run starts at."""
    tokens, slots = [], []
    prev = None
    for i, t in enumerate(ids):
        if t != prev and t != blank:
            tokens.append(t)
            slots.append(i)
        prev = t
    return tokens, slots


# A token ends where the next one starts, but at most this long after its own start: the word
# before a pause would otherwise stretch over the pause (a chunk packs several speech regions,
# and a word's midpoint decides which region it goes back to).
MAX_TOKEN_S = 0.5


def slot_times(slots: list[int], draft_times: list[float]) -> list[float]:
    """Start time of each final token from the editor slot its run starts at.

    The editor's slots are [blank, d0, blank, d1, ..., d(n-1), blank] + blank padding: slot 2k+1
    holds draft token k and takes its time; slot 2k (an insertion before draft token k) takes the
    midpoint between draft tokens k-1 and k (draft token 0's time for k = 0); slot 2n (after the
    last draft token) and the padding take the last draft token's time. Without a draft: 0.0.
    Monotone in the slot, so the times of a collapsed sequence never decrease.
    """
    n = len(draft_times)
    if n == 0:
        return [0.0] * len(slots)
    out = []
    for s in slots:
        k, odd = divmod(s, 2)
        if s >= 2 * n:
            t = draft_times[-1]
        elif odd:
            t = draft_times[k]
        elif k == 0:
            t = draft_times[0]
        else:
            t = (draft_times[k - 1] + draft_times[k]) / 2
        out.append(round(t, 6))
    return out


def token_spans(starts: list[float], step_s: float, duration: float,
                max_token_s: float = MAX_TOKEN_S) -> list[tuple[float, float]]:
    """(start, end) per token: each ends at the next one's start (at most ``max_token_s`` after its
    own), the last one step after its start, never past ``duration`` nor before its start."""
    ends = [min(b, a + max_token_s) for a, b in pairwise(starts)]
    if starts:
        ends.append(min(starts[-1] + step_s, duration))
    return [(a, round(max(a, e), 6)) for a, e in zip(starts, ends, strict=True)]


def top_probability(logits: torch.Tensor, best: torch.Tensor, scale: float, rows: int = 512) -> torch.Tensor:
    """softmax(logits / scale) at each row's argmax ``best``: the row's largest probability, in
    float32, ``rows`` rows at a time (a float copy of every row's logits would double what the
    head's output already holds). One float32 softmax and a gather: by counting passes over the
    slice, about half the memory traffic of a log-sum-exp of a divided float copy beside a
    separate maximum. Dividing by a power of two is exact in any float dtype, so only another
    scale divides in float32."""
    exact_in_dtype = scale > 0 and math.frexp(scale)[0] == 0.5
    out = []
    for x, b in zip(logits.split(rows), best.split(rows), strict=True):
        y = (x if scale == 1.0 else x / scale) if exact_in_dtype else x.float() / scale
        out.append(torch.softmax(y, -1, dtype=torch.float32).gather(-1, b[:, None]).squeeze(-1))
    return torch.cat(out)


STAGE_PREFIX = "granite-nar: "


def stage(name: str) -> record_function:
    """A profiler range around one stage of a batch (nothing is recorded unless a profiler runs): the
    GPU check sums each stage's kernels from it."""
    return record_function(STAGE_PREFIX + name)


def best_and_top(logits: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's argmax and its softmax(logits / scale) probability, 1 / sum(exp((x - max) / scale)),
    in float32: the same values as argmax and top_probability. Written for torch.compile, which reads
    the logits once or twice in one or two kernels; run eagerly it would make float copies of them
    all, so the eager path keeps top_probability's slices."""
    best = logits.argmax(-1)
    top = logits.amax(-1, keepdim=True).float()
    return best, 1.0 / torch.exp((logits.float() - top) / scale).sum(-1)


def bucketed(frames: int, block: int) -> int:
    """Frames rounded up to whole attention blocks, at least one (an item under 20 ms has none)."""
    return max(1, -(-frames // block)) * block


def ragged_arange(counts: list[int]) -> np.ndarray:
    """[2, 0, 3] -> [0, 1, 0, 1, 2]: arange(n) for each n, end to end."""
    if not counts:
        return np.zeros(0, np.int64)
    return np.arange(sum(counts), dtype=np.int64) - np.repeat(np.cumsum([0] + counts[:-1]), counts)


@dataclass(frozen=True)
class Slots:
    """Items laid end to end in one stream, each in a slot of whole ``unit``s (attention blocks or
    pooling windows in the encoder, projector windows), so no unit ever holds two items, and with
    at least ``slack`` padding frames after each item (what a convolution reads past the item's end).

    A padded batch computes every item at its longest neighbour's length; the stream computes
    each at its own, rounded up to the next unit (chunks of mixed lengths cost what they hold).
    """

    lengths: tuple[int, ...]  # real frames per item
    starts: tuple[int, ...]  # where each item's slot begins
    total: int  # frames in the stream
    unit: int

    def subset(self, items: list[int]) -> Slots:
        """The same stream seen through some of its items (their rows, in the order given)."""
        return Slots(tuple(self.lengths[i] for i in items), tuple(self.starts[i] for i in items),
                     self.total, self.unit)

    @classmethod
    def of(cls, lengths: list[int], unit: int, slack: int = 0) -> Slots:
        sizes = [bucketed(n + slack, unit) for n in lengths]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes else np.zeros(0, np.int64)
        return cls(tuple(lengths), tuple(int(x) for x in starts), int(sum(sizes)), unit)

    def rows(self, per: int = 1, counts: list[int] | None = None) -> np.ndarray:
        """Stream rows of each item's first ``counts`` (default: its real frames), item after item,
        on a grid ``per`` times coarser (a pooling window, a projector query)."""
        counts = list(self.lengths) if counts is None else counts
        return np.repeat(np.asarray(self.starts, np.int64) // per, counts) + ragged_arange(counts)

    def mask(self, device: torch.device | str) -> torch.Tensor:
        valid = torch.zeros(self.total, dtype=torch.bool)
        valid[torch.from_numpy(self.rows())] = True
        return upload(valid, device)

    def blocks(self, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The encoder's attention blocks over a stream whose slots are not whole blocks: each item's
        frames cut into blocks of ``context``, its last block short. Returns the stream row of every
        block position (a position past its item's end repeats the item's first row; it is masked),
        which positions hold a real frame, and every stream row's place among the block positions
        (a slack row takes its item's last place: nothing reads a slack row before it is zeroed)."""
        lengths, starts = np.asarray(self.lengths, np.int64), np.asarray(self.starts, np.int64)
        span = np.maximum(1, -(-lengths // context)) * context  # block positions per item
        pos = ragged_arange(span.tolist())
        real = pos < np.repeat(lengths, span)
        rows = np.where(real, np.repeat(starts, span) + pos, np.repeat(starts, span))
        sizes = np.diff(np.append(starts, self.total))  # stream rows per slot
        first = np.repeat(np.cumsum(span) - span, sizes)
        places = first + np.minimum(ragged_arange(sizes.tolist()), np.repeat(span, sizes) - 1)
        return rows, real.reshape(-1, context), places


def _index(rows: np.ndarray, device: torch.device | str) -> torch.Tensor:
    return upload(rows, device)


# ------------------------------------------------------------------------------- encoder


def relative_distances(context: int, max_rel: int) -> torch.Tensor:
    """(context, context) indices into the relative-position table: i - j, shifted to be >= 0."""
    pos = torch.arange(context)
    return (pos[:, None] - pos[None, :]).clamp(-context, context) + max_rel


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, dim * mult)
        self.down = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.up(self.norm(x))))


def in_blocks(h: torch.Tensor, valid: torch.Tensor, blocks: Blocks | None, context: int,
              attend: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Block-local attention over a stream or a padded batch ``h`` (B, T, hidden): ``attend`` maps
    (blocks, context, hidden) frames and which keys are real to (blocks, context, out) outputs.
    Without ``blocks`` each item fills whole blocks of ``h``; with them (a tight stream, B = 1) each
    item's blocks are gathered from it, and their outputs gathered back. Returns (B, T, out)."""
    if blocks is not None:
        rows, keys_valid, places = blocks
        y = attend(h[0, rows].view(*keys_valid.shape, -1), keys_valid)
        return y.flatten(0, 1)[places][None]
    b, t, _ = h.shape
    pad = -t % context
    if pad:  # frames are bucketed to whole blocks, so usually nothing to pad (and no copy)
        h, valid = F.pad(h, (0, 0, 0, pad)), F.pad(valid, (0, pad))
    y = attend(h.view(-1, context, h.shape[-1]), valid.view(-1, context))
    return y.reshape(b, -1, y.shape[-1])[:, :t]


class BlockAttention(nn.Module):
    """Self-attention inside fixed blocks of ``context`` frames, with Shaw relative positions."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        inner = cfg.heads * cfg.head_dim
        self.heads, self.head_dim, self.context = cfg.heads, cfg.head_dim, cfg.context
        self.scale = cfg.head_dim ** -0.5
        self.norm = nn.LayerNorm(cfg.hidden)
        self.q = nn.Linear(cfg.hidden, inner, bias=False)
        self.kv = nn.Linear(cfg.hidden, 2 * inner, bias=False)
        self.out = nn.Linear(inner, cfg.hidden)
        self.rel_pos = nn.Embedding(2 * cfg.max_rel + 1, cfg.head_dim)
        self.register_buffer("dists", relative_distances(cfg.context, cfg.max_rel), persistent=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, blocks: Blocks | None = None) -> torch.Tensor:
        return self.out(in_blocks(self.norm(x), valid, blocks, self.context, self._attend))

    def _attend(self, h: torch.Tensor, keys_valid: torch.Tensor) -> torch.Tensor:
        """(blocks, context, hidden) normalised frames -> (blocks, context, heads * head_dim)."""
        n, c, _ = h.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(n, c, self.heads, self.head_dim).transpose(1, 2)

        k, v = self.kv(h).chunk(2, dim=-1)
        q, k, v = split(self.q(h)), split(k), split(v)
        bias = torch.einsum("bhqd,qkd->bhqk", q, self.rel_pos(self.dists)) * self.scale
        bias = bias.masked_fill(~keys_valid[:, None, None, :], MASKED)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return y.transpose(1, 2).reshape(n, c, -1)


class ConvModule(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        inner = cfg.hidden * cfg.conv_expansion
        self.norm = nn.LayerNorm(cfg.hidden)
        self.pointwise_in = nn.Conv1d(cfg.hidden, 2 * inner, 1)
        self.depthwise = nn.Conv1d(inner, inner, cfg.conv_kernel, groups=inner, bias=False)
        self.batch_norm = nn.BatchNorm1d(inner)
        self.pointwise_out = nn.Conv1d(inner, cfg.hidden, 1)
        k = cfg.conv_kernel
        self.padding = (k // 2, k // 2 - (k + 1) % 2)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        # Frames past an item's end are zeros, as the convolution's own padding would be.
        y = y.masked_fill(~valid[:, None, :], 0.0)
        y = self.depthwise(F.pad(y, self.padding))
        return self.pointwise_out(F.silu(self.batch_norm(y))).transpose(1, 2)


class ConformerBlock(nn.Module):
    """Macaron Conformer: half feed-forward, attention, convolution, half feed-forward, norm.

    Frames past an item's end leave a block as zeros: in a stream of items laid end to end, the
    convolution over them reads the next item's first frames, and the next block's attention gives
    them zero weight, which would pass a NaN or inf in that item on to this one (0 x NaN is NaN)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.ffn1 = FeedForward(cfg.hidden, cfg.ff_mult)
        self.attn = BlockAttention(cfg)
        self.conv = ConvModule(cfg)
        self.ffn2 = FeedForward(cfg.hidden, cfg.ff_mult)
        self.norm_out = nn.LayerNorm(cfg.hidden)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, blocks: Blocks | None = None) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn(x, valid, blocks)
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ffn2(x)
        return self.norm_out(x).masked_fill(~valid[..., None], 0.0)


@dataclass
class EncoderOutput:
    exported: torch.Tensor  # (B, T, len(export_layers) * hidden): the projector's input
    pooled: torch.Tensor  # (B, ceil(T / pool_window), hidden): the BPE CTC head's input (``Encoder.bpe_ctc``)


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.input_proj = nn.Linear(cfg.input_dim, cfg.hidden)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.layers))
        self.char_ctc = nn.Linear(cfg.hidden, cfg.char_vocab)
        self.char_feedback = nn.Linear(cfg.char_vocab, cfg.hidden)
        self.bpe_ctc = nn.Linear(cfg.hidden, cfg.bpe_vocab)

    def forward(self, feats: torch.Tensor, valid: torch.Tensor, blocks: Blocks | None = None) -> EncoderOutput:
        """feats (B, T, input_dim) and which frames are real (B, T): a padded batch, or one stream of
        items laid end to end (see Slots) with at least conv_kernel // 2 padding frames after each
        item. Without ``blocks`` no attention block may hold two items (each item in whole blocks);
        with them (Slots.blocks, on the device), the attention gathers its blocks from a stream of
        any slots (one item, B = 1)."""
        cfg = self.cfg
        x = self.input_proj(feats.to(self.input_proj.weight.dtype))
        wanted = {(i if i >= 0 else cfg.layers + 1 + i) for i in cfg.export_layers}
        exported = {0: x} if 0 in wanted else {}
        blank_prob = None
        for i, block in enumerate(self.blocks, start=1):
            x = block(x, valid, blocks)
            if i == cfg.self_cond_layer:
                # Self-conditioning: the character CTC posteriors are fed back into the stream,
                # and their blank probability later weights the pooling.
                probs = self.char_ctc(x).float().softmax(-1)
                blank_prob = probs[..., 0]
                x = x + self.char_feedback(probs.to(x.dtype))
            # Exported after the feedback, as the original does (the state later blocks see).
            if i in wanted:
                exported[i] = x
        exported[cfg.layers] = x
        order = sorted(wanted)
        pooled = self._pool(x.float(), (1.0 - blank_prob) * valid).to(x.dtype)
        return EncoderOutput(exported=torch.cat([exported[i] for i in order], dim=-1), pooled=pooled)

    def _pool(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Average each window of frames, weighted by how likely each frame carries a symbol."""
        w = self.cfg.pool_window
        pad = -x.shape[1] % w
        x = F.pad(x, (0, 0, 0, pad)).unflatten(1, (-1, w))
        weight = F.pad(weight, (0, pad)).unflatten(1, (-1, w))
        weight = weight / (weight.sum(-1, keepdim=True) + 1e-8)  # the original's guard, added not clamped
        return (weight[..., None] * x).sum(-2)


# ------------------------------------------------------------------------------- projector


class QFormerLayer(nn.Module):
    """Learned queries cross-attend to one window of frames (no self-attention), then an MLP."""

    def __init__(self, cfg: ProjectorConfig):
        super().__init__()
        d = cfg.hidden
        self.heads = cfg.heads
        self.attn_norm = nn.LayerNorm(d, eps=cfg.eps)
        self.q = nn.Linear(d, d, bias=cfg.attn_bias)
        self.k = nn.Linear(d, d, bias=cfg.attn_bias)
        self.v = nn.Linear(d, d, bias=cfg.attn_bias)
        self.o = nn.Linear(d, d, bias=cfg.attn_bias)
        self.mlp_norm = nn.LayerNorm(d, eps=cfg.eps)
        self.fc1 = nn.Linear(d, cfg.intermediate, bias=cfg.mlp_bias)
        self.fc2 = nn.Linear(cfg.intermediate, d, bias=cfg.mlp_bias)
        self.act = {"silu": F.silu, "gelu": F.gelu}[cfg.mlp_act]

    def forward(self, h: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        n, nq, d = h.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2)

        a = self.attn_norm(h)
        y = F.scaled_dot_product_attention(heads(self.q(a)), heads(self.k(window)), heads(self.v(window)))
        h = h + self.o(y.transpose(1, 2).reshape(n, nq, d))
        return h + self.fc2(self.act(self.fc1(self.mlp_norm(h))))


class Projector(nn.Module):
    def __init__(self, enc: EncoderConfig, cfg: ProjectorConfig, out_dim: int):
        super().__init__()
        self.cfg, self.enc_hidden = cfg, enc.hidden
        n_layers = len(enc.export_layers)
        self.queries_per_window = cfg.window // cfg.downsample
        self.layer_norms = nn.ModuleList(nn.LayerNorm(enc.hidden, eps=cfg.eps) for _ in range(n_layers))
        self.fuse = nn.Linear(n_layers * enc.hidden, cfg.hidden)
        self.queries = nn.Parameter(torch.zeros(1, self.queries_per_window, cfg.hidden))
        self.window_pos = nn.Parameter(torch.zeros(1, cfg.window, cfg.hidden))
        self.layers = nn.ModuleList(QFormerLayer(cfg) for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.out = nn.Linear(cfg.hidden, out_dim)

    def forward(self, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Exported encoder frames cut into windows (W, window, export width) and which frames are real
        (W, window) -> audio embeddings (W * queries_per_window, out_dim); a window never holds two items."""
        parts = windows.split(self.enc_hidden, dim=-1)
        x = torch.cat([norm(p) for norm, p in zip(self.layer_norms, parts, strict=True)], dim=-1)
        x = F.gelu(self.fuse(x))
        # Past an item's end the window holds zeros, exactly as when the item is alone.
        x = x.masked_fill(~valid[..., None], 0.0)
        # Each query starts as the mean of its own stretch of frames.
        h = self.queries + x.unflatten(1, (self.queries_per_window, -1)).mean(2)
        kv = x + self.window_pos
        for layer in self.layers:
            h = layer(h, kv)
        return self.out(self.out_norm(h)).flatten(0, 1)


# ------------------------------------------------------------------------------- editor


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.square().mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.float()[:, None] * inv[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype)[:, None, :], angles.sin().to(dtype)[:, None, :]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class EditorLayer(nn.Module):
    def __init__(self, cfg: EditorConfig):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.hidden, cfg.head_dim
        self.attn_norm = RMSNorm(d, cfg.rms_eps)
        self.q = nn.Linear(d, cfg.heads * hd, bias=False)
        self.k = nn.Linear(d, cfg.kv_heads * hd, bias=False)
        self.v = nn.Linear(d, cfg.kv_heads * hd, bias=False)
        self.o = nn.Linear(cfg.heads * hd, d, bias=False)
        self.mlp_norm = RMSNorm(d, cfg.rms_eps)
        self.gate = nn.Linear(d, cfg.intermediate, bias=False)
        self.up = nn.Linear(d, cfg.intermediate, bias=False)
        self.down = nn.Linear(cfg.intermediate, d, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cu_seqlens: torch.Tensor,
                max_len: int) -> torch.Tensor:
        cfg = self.cfg
        a = self.attn_norm(x)
        q = apply_rope(self.q(a).unflatten(-1, (cfg.heads, cfg.head_dim)), *rope)
        k = apply_rope(self.k(a).unflatten(-1, (cfg.kv_heads, cfg.head_dim)), *rope)
        v = self.v(a).unflatten(-1, (cfg.kv_heads, cfg.head_dim))
        y = varlen_attention(q, k, v, cu_seqlens, max_len, cfg.attention_multiplier)
        x = x + cfg.residual_multiplier * self.o(y.flatten(1))
        m = self.mlp_norm(x)
        return x + cfg.residual_multiplier * self.down(F.silu(self.gate(m)) * self.up(m))


class Editor(nn.Module):
    """The bidirectional Granite language model, over one packed sequence of items."""

    def __init__(self, cfg: EditorConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList(EditorLayer(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.rms_eps)

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, cu_seqlens: torch.Tensor,
                max_len: int) -> torch.Tensor:
        """(N, hidden) packed inputs -> (N, hidden) hidden states (before the final norm)."""
        x = embeds * self.cfg.embedding_multiplier
        rope = rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        for layer in self.layers:
            x = layer(x, rope, cu_seqlens, max_len)
        return x

    def text_products(self, hidden: torch.Tensor) -> torch.Tensor:
        """The tied LM head before its logits scaling, on the rows it is given (the text slots)."""
        return self.norm(hidden) @ self.embed.weight.T

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.text_products(hidden) / self.cfg.logits_scaling


# ------------------------------------------------------------------------------- the model


# One item's draft: its token ids, and the BPE CTC step each token's run starts at.
Draft = tuple[list[int], list[int]]


@dataclass
class NarOutput:
    tokens: list[list[int]]  # final transcript ids per item
    drafts: list[list[int]]  # the encoder's CTC draft per item
    draft_steps: list[list[int]]  # per draft token, the BPE CTC step its run starts at
    step_s: float  # seconds per BPE CTC step: frames per pooling window x 20 ms (80 ms)
    logits: list[torch.Tensor] | None = None  # editor logits on each item's text slots (when asked)
    # Per final token, (start, end) in seconds from the item's start (see slot_times): a chunk
    # packs several speech regions, and word times say where its text is split back into them.
    token_times: list[list[tuple[float, float]]] = field(default_factory=list)
    # Per final token, the editor's probability of it at the slot its run starts at (its softmax
    # maximum): the engine's confidence in the token. Empty lists unless asked for.
    token_probs: list[list[float]] = field(default_factory=list)
    # With confidence routing (transcribe's ``route_confidence``): per item, the CTC draft's
    # confidence (the lowest top probability over its steps) and whether the item skipped the
    # editor (its tokens are then its draft). Empty lists without routing.
    draft_confidence: list[float] = field(default_factory=list)
    routed: list[bool] = field(default_factory=list)

    def draft_times(self, item: int) -> list[float]:
        """Start time in seconds, from the item's start, of each draft token (a step's start)."""
        return [round(step * self.step_s, 6) for step in self.draft_steps[item]]


@dataclass
class PendingBatch:
    """A batch :meth:`GraniteNar.start` has queued: the drafts are known, the editor may still be
    running. ``finish()`` waits for it and maps its slots back to tokens and times on the host."""

    cfg: NarConfig
    found: list[tuple[list[int], list[int]]]  # per item: draft tokens, the step each starts at
    durations: list[float]  # seconds per item
    edit: list[int]  # the items that went through the editor, in batch order
    confidence: list[float]  # routing only: each item's draft confidence
    routed: list[bool]
    draft_probs: list[list[float]] | None  # token_probs asked: per item (routed ones: the draft's)
    flat: Download | None = None  # every edited item's slot argmax, end to end
    probs: Download | None = None
    parts: list[torch.Tensor] = field(default_factory=list)  # the kept logits (return_logits)
    n_text: list[int] = field(default_factory=list)  # slots per edited item

    def finish(self) -> NarOutput:
        cfg, step = self.cfg, self.cfg.draft_step_s
        tokens = [d for d, _ in self.found]
        starts = [[round(s * step, 6) for s in first] for _, first in self.found]
        kept_probs = self.draft_probs if self.draft_probs is not None else []
        if self.edit:
            flat = self.flat.tolist()
            probs = self.probs.tolist() if self.probs is not None else []
            # The collapse and the slot -> time mapping are small list work on the host.
            offset = 0
            for i, n in zip(self.edit, self.n_text, strict=True):
                kept, slots = collapse_with_slots(flat[offset : offset + n], cfg.blank_id)
                if probs:
                    kept_probs[i] = [probs[offset + k] for k in slots]
                offset += n
                tokens[i], starts[i] = kept, slot_times(slots, starts[i])
        token_times = [token_spans(t, step, d) for t, d in zip(starts, self.durations, strict=True)]
        per_item = None
        if self.parts:
            per_item = list((torch.cat(self.parts).float() / cfg.editor.logits_scaling).split(self.n_text))
        return NarOutput(tokens=tokens, drafts=[d for d, _ in self.found], draft_steps=[s for _, s in self.found],
                         step_s=step, logits=per_item, token_times=token_times, token_probs=kept_probs,
                         draft_confidence=self.confidence, routed=self.routed)


class GraniteNar(nn.Module):
    def __init__(self, cfg: NarConfig):
        super().__init__()
        if cfg.encoder.context % cfg.encoder.pool_window or cfg.projector.window % cfg.projector.downsample:
            # transcribe lays items end to end in whole blocks and windows: an item must start on a
            # pooling window and a projector window must hold whole queries.
            raise ValueError(f"encoder block {cfg.encoder.context} must be a multiple of pool window "
                             f"{cfg.encoder.pool_window}, projector window {cfg.projector.window} of its "
                             f"downsampling {cfg.projector.downsample}")
        self.cfg = cfg
        self.features = LogMelFeatures(cfg.features)
        self.encoder = Encoder(cfg.encoder)
        self.projector = Projector(cfg.encoder, cfg.projector, cfg.editor.hidden)
        self.editor = Editor(cfg.editor)
        # Argmax and top probability of a head's logits in one function (best_and_top, compiled by
        # compile_model); None: argmax, then top_probability's slices.
        self.head_reduce: Callable | None = None
        # "tight": each item takes its own frames and the convolution's slack in the encoder's stream,
        # and the attention gathers its blocks; "blocks": each item in whole attention blocks, so the
        # per-frame work (feed-forwards, convolution, norms) also runs on the padding of its last block.
        self.encoder_stream = "tight"

    def slot_list(self, draft: list[int]) -> list[int]:
        """[a, b] -> [blank, a, blank, b, blank], padded with blanks to at least min_slots.

        min_slots is the config's min_edit_sequence_length (8): the original pads, transformers' port does not.
        """
        out = [self.cfg.blank_id] * max(2 * len(draft) + 1, self.cfg.min_slots)
        out[1 : 2 * len(draft) : 2] = draft
        return out

    def _hold(self, draft: list[int], steps: list[int], n: int, n_steps: int) -> tuple[list[int], list[int]]:
        """Exactly n draft tokens: cut, or filled with arbitrary non-blank ids (placed at the last step)."""
        if len(draft) >= n:
            return draft[:n], steps[:n]
        vocab, blank = self.cfg.editor.vocab, self.cfg.blank_id
        fill = [(i * 7919 + 1) % vocab for i in range(n - len(draft))]
        fill = [(f + 1) % vocab if f == blank else f for f in fill]
        return draft + fill, steps + [max(n_steps - 1, 0)] * len(fill)

    def _argmax_rows(self, hidden: torch.Tensor, head, rows: int, keep: bool = False,
                     prob_scale: float | None = None) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """Argmax of a vocabulary-wide head over ``hidden``, ``rows`` at a time (the logits of a whole
        batch would take gigabytes); the head's outputs when ``keep``; and with ``prob_scale`` (the
        head's logits scaling) each row's softmax maximum, through the compiled ``best_and_top`` when
        the model was compiled (``head_reduce``). Device tensors, queued: nothing waits."""
        best, kept, probs = [], [], []
        for part in hidden.split(rows):
            lg = head(part)
            # One or no row: dynamo gives sizes 0 and 1 graphs of their own, compiled mid-job; eager then.
            if prob_scale is not None and self.head_reduce is not None and part.shape[0] >= 2:
                b, p = self.head_reduce(lg, prob_scale)
                best.append(b)
                probs.append(p)
            else:
                best.append(lg.argmax(-1))
                if prob_scale is not None:
                    probs.append(top_probability(lg, best[-1], prob_scale))
            if keep:
                kept.append(lg)
        return torch.cat(best), kept, (torch.cat(probs) if probs else None)  # split gives at least one part

    def transcribe(self, waves: list[torch.Tensor], draft_tokens_per_s: float | None = None,
                   return_logits: bool = False, lm_head_rows: int = 8192, token_probs: bool = False,
                   route_confidence: float | None = None, drafts: list[Draft] | None = None) -> NarOutput:
        """Waveforms (16 kHz mono) -> token ids: :meth:`start` and then its ``finish()``."""
        return self.start(waves, draft_tokens_per_s, return_logits, lm_head_rows, token_probs,
                          route_confidence, drafts).finish()

    @torch.inference_mode()
    def start(self, waves: list[torch.Tensor], draft_tokens_per_s: float | None = None,
              return_logits: bool = False, lm_head_rows: int = 8192, token_probs: bool = False,
              route_confidence: float | None = None, drafts: list[Draft] | None = None) -> PendingBatch:
        """Waveforms (16 kHz mono) -> token ids, in one editor pass over the packed batch; this queues
        the work (waiting for the GPU only to read the draft back) and its ``finish()`` waits for the
        editor and does the host work. A caller may start the next batch before finishing this one,
        so the GPU computes it while the host finishes this one.

        Every stage runs on items laid end to end (Slots), not on a batch padded to its longest
        item. ``draft_tokens_per_s`` holds each draft at that many tokens per second of audio:
        random weights draft nonsense lengths, and the editor's cost depends on the draft length.
        ``token_probs`` also gives each final token's probability (NarOutput.token_probs).

        ``route_confidence`` (off when None): an item whose CTC draft is at least this confident
        at every step (each step's top probability) skips the projector and the editor, and its
        draft is its transcript. The other items are edited exactly as without routing.

        ``drafts`` (per item: draft token ids and the BPE CTC step each starts at, as NarOutput's
        ``drafts`` and ``draft_steps``) are edited instead of the CTC head's own: a parity check gives
        two builds of the model the same drafts, so one flipped draft argmax cannot change every slot
        after it and the editors are compared slot for slot.
        """
        if route_confidence is not None and return_logits:
            raise ValueError("an item routed past the editor has no editor logits: route or return logits")
        if drafts is not None and (route_confidence is not None or len(drafts) != len(waves)):
            raise ValueError("drafts: one (tokens, steps) pair per wave, and no routing (it judges the CTC head's)")
        cfg, enc_cfg = self.cfg, self.cfg.encoder
        # Frame counts come from the lengths on the host: reading them back would wait for the GPU.
        with stage("features"):
            feats, _ = self.features(waves)  # (B, longest, input_dim); n // 320 frames per item
        device = feats.device
        frames = [self.features.frame_count(w.numel()) for w in waves]
        sr = cfg.features.sample_rate

        # Encoder: each item with room after it for the convolution to read zeros, starting on a
        # pooling window; in whole attention blocks unless the attention gathers them (tight).
        if self.encoder_stream not in ENCODER_STREAMS:
            raise ValueError(f"encoder_stream {self.encoder_stream!r}: one of {', '.join(ENCODER_STREAMS)}")
        tight = self.encoder_stream == "tight"
        enc_slots = Slots.of(frames, enc_cfg.pool_window if tight else enc_cfg.context, slack=enc_cfg.conv_kernel // 2)
        in_rows = _index(np.repeat(np.arange(len(frames)) * feats.shape[1], frames) + ragged_arange(frames), device)
        enc_rows = _index(enc_slots.rows(), device)
        blocks = tuple(_index(a, device) for a in enc_slots.blocks(enc_cfg.context)) if tight else None
        with stage("encoder"):
            stream = feats.new_zeros(enc_slots.total, feats.shape[-1])
            stream[enc_rows] = feats.flatten(0, 1)[in_rows]
            enc = self.encoder(stream[None], enc_slots.mask(device)[None], blocks)

        # Draft: greedy BPE CTC over each item's pooling windows, collapsed on the host.
        w = enc_cfg.pool_window
        steps = [(n + w - 1) // w for n in frames]
        routing = route_confidence is not None
        if drafts is None:
            step_rows = _index(enc_slots.rows(per=w, counts=steps), device)
            with stage("draft head"):
                best_dev, _, probs_dev = self._argmax_rows(enc.pooled[0, step_rows], self.encoder.bpe_ctc,
                                                           lm_head_rows, prob_scale=1.0 if routing else None)
            best_dl, probs_dl = Download(best_dev), (Download(probs_dev) if probs_dev is not None else None)
        # Without routing every item is projected: queue the projector behind the draft's copy, so
        # the GPU runs it while the host collapses the drafts (routing waits for the draft to choose).
        audio = None if routing else self._project(enc, enc_slots, enc_rows, frames, list(range(len(frames))))
        found, confidence, draft_probs = [], [], []
        if drafts is not None:
            found = [(list(tokens), list(first)) for tokens, first in drafts]
        else:
            best = best_dl.tolist()
            step_probs = probs_dl.tolist() if probs_dl is not None else []
            offset = 0
            for n, wave in zip(steps, waves, strict=True):
                draft, first = collapse_with_slots(best[offset : offset + n], cfg.blank_id)
                if draft_tokens_per_s is not None:
                    held = max(1, round(wave.numel() / sr * draft_tokens_per_s))
                    draft, first = self._hold(draft, first, held, n)
                if routing:
                    confidence.append(min(step_probs[offset : offset + n], default=0.0))
                    # An item with no step (under 20 ms) holds fillers at step 0: none of its own.
                    draft_probs.append([step_probs[offset + i] if i < n else 0.0 for i in first])
                offset += n
                found.append((draft, first))
        routed = [c >= route_confidence for c in confidence] if routing else []
        edit = [i for i in range(len(waves)) if not (routed and routed[i])]

        pending = PendingBatch(cfg=cfg, found=found, durations=[wave.numel() / sr for wave in waves],
                               edit=edit, confidence=confidence, routed=routed,
                               draft_probs=(draft_probs if routing else [[] for _ in waves]) if token_probs else None)
        if edit:
            if audio is None:
                audio = self._project(enc, enc_slots, enc_rows, [frames[i] for i in edit], edit)
            flat, pending.parts, probs, pending.n_text = self._edit(
                audio, [frames[i] for i in edit], [found[i][0] for i in edit], lm_head_rows, return_logits,
                token_probs)
            pending.flat, pending.probs = Download(flat), (Download(probs) if probs is not None else None)
        return pending

    def _project(self, enc: EncoderOutput, enc_slots: Slots, enc_rows: torch.Tensor, frames: list[int],
                 items: list[int]) -> torch.Tensor:
        """The projector over ``items`` of the encoded batch (their ``frames``): their audio embeddings,
        item after item (queued, not waited for)."""
        cfg, proj_cfg = self.cfg, self.cfg.projector
        device = enc.exported.device
        # Each item in whole windows; an item's first n // downsample queries are its own.
        src = enc_rows if len(items) == len(enc_slots.lengths) else _index(enc_slots.subset(items).rows(), device)
        win_slots = Slots.of(frames, proj_cfg.window)
        with stage("projector"):
            windows = enc.exported.new_zeros(win_slots.total, enc.exported.shape[-1])
            windows[_index(win_slots.rows(), device)] = enc.exported[0, src]
            audio = self.projector(windows.view(-1, proj_cfg.window, windows.shape[-1]),
                                   win_slots.mask(device).view(-1, proj_cfg.window))
        n_audio = [n // proj_cfg.downsample for n in frames]
        audio = audio[_index(win_slots.rows(per=proj_cfg.downsample, counts=n_audio), device)]
        if cfg.scale_projected_embeddings:
            audio = audio / cfg.editor.embedding_multiplier
        return audio

    def _edit(self, audio: torch.Tensor, frames: list[int], drafts: list[list[int]], lm_head_rows: int,
              return_logits: bool, token_probs: bool
              ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None, list[int]]:
        """The editor over items with these ``frames``, projected ``audio`` and ``drafts``: the argmax of
        every text slot, the kept logits, the slots' probabilities when asked (device tensors, still
        being computed), and each item's slot count."""
        cfg, device = self.cfg, audio.device
        n_audio = [n // cfg.projector.downsample for n in frames]
        # [audio embeddings ; slots] per item, laid end to end.
        slot_ids = [self.slot_list(d) for d in drafts]
        n_text = [len(s) for s in slot_ids]
        text = self.editor.embed(upload(np.fromiter((t for s in slot_ids for t in s), np.int64), device))
        seq_lens = [a + t for a, t in zip(n_audio, n_text, strict=True)]
        order = editor_order(n_audio, n_text)
        packed = torch.cat([audio.to(text.dtype), text])[_index(order, device)]
        positions = _index(ragged_arange(seq_lens), device)
        with stage("editor"):
            hidden = self.editor(packed, positions, cu_seqlens_for(seq_lens, device), max(seq_lens))
        text_rows = _index(np.flatnonzero(order >= sum(n_audio)), device)
        # Argmax of the raw products: dividing by logits_scaling (a power of two) changes no argmax.
        with stage("editor head"):
            flat, parts, probs = self._argmax_rows(hidden[text_rows], self.editor.text_products, lm_head_rows,
                                                   keep=return_logits,
                                                   prob_scale=cfg.editor.logits_scaling if token_probs else None)
        return flat, parts, probs, n_text


def editor_order(n_audio: list[int], n_text: list[int]) -> np.ndarray:
    """Rows of [all audio embeddings ; all slot embeddings] in the editor's packed order: each item's
    audio rows, then its slots, item after item."""
    audio_at = np.cumsum([0] + n_audio[:-1])
    text_at = sum(n_audio) + np.cumsum([0] + n_text[:-1])
    return np.concatenate([np.r_[np.arange(a, a + na), np.arange(t, t + nt)]
                           for a, na, t, nt in zip(audio_at, n_audio, text_at, n_text, strict=True)])


def random_model(cfg: NarConfig, seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: str = "cpu") -> GraniteNar:
    """A model with random weights (for tests and throughput benchmarks without the checkpoint)."""
    torch.manual_seed(seed)
    model = GraniteNar(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 or name.endswith(("queries", "window_pos")):
                nn.init.normal_(p, std=0.02)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):  # realistic running statistics, not identity
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.to(device=device, dtype=dtype).eval()
