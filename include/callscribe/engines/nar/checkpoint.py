"""Load a Granite Speech NAR checkpoint into the native model: two layouts, each one name table.

The same weights are published in two layouts (see docs/granite.md):

- ``remote``: the single-file remote code of the pinned revision (``encoder.layers.{i}.attn.to_kv``,
  ``projector.qformer.layers.{i}.cross_attention.q_proj``, ``language_model.model.*``);
- ``transformers``: what transformers' conversion to its native ``GraniteSpeechNarForCTC`` writes
  (everything under ``model.``, the BPE head at ``model.out_bpe``, the Q-Former's queries, window
  positions and output linear moved under ``qformer``, and no projector LayerNorm tensors: that
  code's projector norms are affine-free, the original's are stored as weight 1 / bias 0).

Each table pairs our module paths (left) with the layout's (right); ``{i}`` is a layer index and
a module's own tensors (weight, bias, BatchNorm statistics) keep their names. ``None`` on the
right: the layout stores nothing, the module is an identity LayerNorm (weight 1, bias 0). Loading
is strict both ways: every checkpoint tensor must map (or be a declared tied copy or computed
table), every parameter must be filled, every shape must agree; the error names what does not fit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from callscribe.engines.nar.config_json import read_config, write_config
from callscribe.engines.nar.features import LogMelFeatures
from callscribe.engines.nar.modeling import GraniteNar, relative_distances

REMOTE_NAMES: tuple[tuple[str, str | None], ...] = (
    # encoder: input projection, CTC heads
    ("encoder.input_proj", "encoder.input_linear"),
    ("encoder.char_ctc", "encoder.out"),  # character CTC head (self-conditioning), 348 classes
    ("encoder.char_feedback", "encoder.out_mid"),  # its posteriors projected back into the stream
    ("encoder.bpe_ctc", "encoder.out_bpe"),  # BPE CTC head on pooled frames: the draft
    # encoder: Conformer blocks
    ("encoder.blocks.{i}.ffn1.norm", "encoder.layers.{i}.ff1.pre_norm"),
    ("encoder.blocks.{i}.ffn1.up", "encoder.layers.{i}.ff1.up_proj"),
    ("encoder.blocks.{i}.ffn1.down", "encoder.layers.{i}.ff1.down_proj"),
    ("encoder.blocks.{i}.attn.norm", "encoder.layers.{i}.attn.pre_norm"),
    ("encoder.blocks.{i}.attn.q", "encoder.layers.{i}.attn.to_q"),
    ("encoder.blocks.{i}.attn.kv", "encoder.layers.{i}.attn.to_kv"),
    ("encoder.blocks.{i}.attn.out", "encoder.layers.{i}.attn.to_out"),
    ("encoder.blocks.{i}.attn.rel_pos", "encoder.layers.{i}.attn.rel_pos_emb"),
    ("encoder.blocks.{i}.conv.norm", "encoder.layers.{i}.conv.norm"),
    ("encoder.blocks.{i}.conv.pointwise_in", "encoder.layers.{i}.conv.up_conv"),
    ("encoder.blocks.{i}.conv.depthwise", "encoder.layers.{i}.conv.depth_conv.conv"),
    ("encoder.blocks.{i}.conv.batch_norm", "encoder.layers.{i}.conv.batch_norm"),
    ("encoder.blocks.{i}.conv.pointwise_out", "encoder.layers.{i}.conv.down_conv"),
    ("encoder.blocks.{i}.ffn2.norm", "encoder.layers.{i}.ff2.pre_norm"),
    ("encoder.blocks.{i}.ffn2.up", "encoder.layers.{i}.ff2.up_proj"),
    ("encoder.blocks.{i}.ffn2.down", "encoder.layers.{i}.ff2.down_proj"),
    ("encoder.blocks.{i}.norm_out", "encoder.layers.{i}.post_norm"),
    # projector: per-layer norms, fusion, windowed Q-Former
    ("projector.layer_norms.{i}", "projector.layer_norms.{i}"),
    ("projector.fuse", "projector.layer_projector"),
    ("projector.queries", "projector.query"),
    ("projector.window_pos", "projector.window_positions"),
    ("projector.layers.{i}.attn_norm", "projector.qformer.layers.{i}.attn_norm"),
    ("projector.layers.{i}.q", "projector.qformer.layers.{i}.cross_attention.q_proj"),
    ("projector.layers.{i}.k", "projector.qformer.layers.{i}.cross_attention.k_proj"),
    ("projector.layers.{i}.v", "projector.qformer.layers.{i}.cross_attention.v_proj"),
    ("projector.layers.{i}.o", "projector.qformer.layers.{i}.cross_attention.o_proj"),
    ("projector.layers.{i}.mlp_norm", "projector.qformer.layers.{i}.mlp_norm"),
    ("projector.layers.{i}.fc1", "projector.qformer.layers.{i}.mlp.fc1"),
    ("projector.layers.{i}.fc2", "projector.qformer.layers.{i}.mlp.fc2"),
    ("projector.out_norm", "projector.out_norm"),
    ("projector.out", "projector.out_linear"),
    # editor: Granite decoder layers, run bidirectionally; the LM head is the tied embedding
    ("editor.embed", "language_model.model.embed_tokens"),
    ("editor.norm", "language_model.model.norm"),
    ("editor.layers.{i}.attn_norm", "language_model.model.layers.{i}.input_layernorm"),
    ("editor.layers.{i}.q", "language_model.model.layers.{i}.self_attn.q_proj"),
    ("editor.layers.{i}.k", "language_model.model.layers.{i}.self_attn.k_proj"),
    ("editor.layers.{i}.v", "language_model.model.layers.{i}.self_attn.v_proj"),
    ("editor.layers.{i}.o", "language_model.model.layers.{i}.self_attn.o_proj"),
    ("editor.layers.{i}.mlp_norm", "language_model.model.layers.{i}.post_attention_layernorm"),
    ("editor.layers.{i}.gate", "language_model.model.layers.{i}.mlp.gate_proj"),
    ("editor.layers.{i}.up", "language_model.model.layers.{i}.mlp.up_proj"),
    ("editor.layers.{i}.down", "language_model.model.layers.{i}.mlp.down_proj"),
)

TRANSFORMERS_NAMES: tuple[tuple[str, str | None], ...] = (
    # encoder: the remote code's Conformer names under model.encoder; the BPE head at the model level
    ("encoder.input_proj", "model.encoder.input_linear"),
    ("encoder.char_ctc", "model.encoder.out"),
    ("encoder.char_feedback", "model.encoder.out_mid"),
    ("encoder.bpe_ctc", "model.out_bpe"),
    ("encoder.blocks.{i}.ffn1.norm", "model.encoder.layers.{i}.ff1.pre_norm"),
    ("encoder.blocks.{i}.ffn1.up", "model.encoder.layers.{i}.ff1.up_proj"),
    ("encoder.blocks.{i}.ffn1.down", "model.encoder.layers.{i}.ff1.down_proj"),
    ("encoder.blocks.{i}.attn.norm", "model.encoder.layers.{i}.attn.pre_norm"),
    ("encoder.blocks.{i}.attn.q", "model.encoder.layers.{i}.attn.to_q"),
    ("encoder.blocks.{i}.attn.kv", "model.encoder.layers.{i}.attn.to_kv"),
    ("encoder.blocks.{i}.attn.out", "model.encoder.layers.{i}.attn.to_out"),
    ("encoder.blocks.{i}.attn.rel_pos", "model.encoder.layers.{i}.attn.rel_pos_emb"),
    ("encoder.blocks.{i}.conv.norm", "model.encoder.layers.{i}.conv.norm"),
    ("encoder.blocks.{i}.conv.pointwise_in", "model.encoder.layers.{i}.conv.up_conv"),
    ("encoder.blocks.{i}.conv.depthwise", "model.encoder.layers.{i}.conv.depth_conv.conv"),
    ("encoder.blocks.{i}.conv.batch_norm", "model.encoder.layers.{i}.conv.batch_norm"),
    ("encoder.blocks.{i}.conv.pointwise_out", "model.encoder.layers.{i}.conv.down_conv"),
    ("encoder.blocks.{i}.ffn2.norm", "model.encoder.layers.{i}.ff2.pre_norm"),
    ("encoder.blocks.{i}.ffn2.up", "model.encoder.layers.{i}.ff2.up_proj"),
    ("encoder.blocks.{i}.ffn2.down", "model.encoder.layers.{i}.ff2.down_proj"),
    ("encoder.blocks.{i}.norm_out", "model.encoder.layers.{i}.post_norm"),
    # projector: affine-free norms (not stored), fusion `proj`, the Q-Former holds queries, positions, output
    ("projector.layer_norms.{i}", None),
    ("projector.fuse", "model.projector.proj"),
    ("projector.queries", "model.projector.qformer.queries"),
    ("projector.window_pos", "model.projector.qformer.pos_emb"),
    ("projector.layers.{i}.attn_norm", None),
    ("projector.layers.{i}.q", "model.projector.qformer.layers.{i}.cross_attn.q_proj"),
    ("projector.layers.{i}.k", "model.projector.qformer.layers.{i}.cross_attn.k_proj"),
    ("projector.layers.{i}.v", "model.projector.qformer.layers.{i}.cross_attn.v_proj"),
    ("projector.layers.{i}.o", "model.projector.qformer.layers.{i}.cross_attn.o_proj"),
    ("projector.layers.{i}.mlp_norm", None),
    ("projector.layers.{i}.fc1", "model.projector.qformer.layers.{i}.mlp.fc1"),
    ("projector.layers.{i}.fc2", "model.projector.qformer.layers.{i}.mlp.fc2"),
    ("projector.out_norm", None),
    ("projector.out", "model.projector.qformer.linear"),
    # editor: the Granite model under model.language_model; the LM head is the tied embedding
    ("editor.embed", "model.language_model.embed_tokens"),
    ("editor.norm", "model.language_model.norm"),
    ("editor.layers.{i}.attn_norm", "model.language_model.layers.{i}.input_layernorm"),
    ("editor.layers.{i}.q", "model.language_model.layers.{i}.self_attn.q_proj"),
    ("editor.layers.{i}.k", "model.language_model.layers.{i}.self_attn.k_proj"),
    ("editor.layers.{i}.v", "model.language_model.layers.{i}.self_attn.v_proj"),
    ("editor.layers.{i}.o", "model.language_model.layers.{i}.self_attn.o_proj"),
    ("editor.layers.{i}.mlp_norm", "model.language_model.layers.{i}.post_attention_layernorm"),
    ("editor.layers.{i}.gate", "model.language_model.layers.{i}.mlp.gate_proj"),
    ("editor.layers.{i}.up", "model.language_model.layers.{i}.mlp.up_proj"),
    ("editor.layers.{i}.down", "model.language_model.layers.{i}.mlp.down_proj"),
)


@dataclass(frozen=True)
class Layout:
    name: str
    names: tuple[tuple[str, str | None], ...]
    dialect: str  # the config.json dialect that goes with it
    tied: dict[str, str]  # a stored copy of the LM head -> the embedding it must equal (the editor ties them)
    computed: str  # regex: tables the model computes itself (rotary frequencies), skipped


LAYOUTS: dict[str, Layout] = {
    "remote": Layout("remote", REMOTE_NAMES, "remote",
                     tied={"language_model.lm_head.weight": "language_model.model.embed_tokens.weight"},
                     computed=r".*rotary_emb\.inv_freq"),
    "transformers": Layout("transformers", TRANSFORMERS_NAMES, "transformers",
                           tied={"lm_head.weight": "model.language_model.embed_tokens.weight"},
                           computed=r".*rotary_emb\.inv_freq|.*attention_dists"),
}
NAME_MAP = REMOTE_NAMES  # the published checkpoint's layout
IDENTITY_NORM = {"weight": 1.0, "bias": 0.0}  # what a module stored as None holds
LEAVES = r"(?:\.(?P<leaf>weight|bias|running_mean|running_var|num_batches_tracked))?"
COUNTER = "num_batches_tracked"  # BatchNorm's training counter: no part in inference, optional in a checkpoint


class CheckpointMismatch(ValueError):
    """The checkpoint's tensors do not fit the model; the message lists what differs."""


@cache
def _compiled(layout: str, direction: int) -> list[tuple[re.Pattern, str | None]]:
    out = []
    for pair in LAYOUTS[layout].names:
        src, dst = pair[direction], pair[1 - direction]
        if src is None:
            continue
        pattern = re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)")
        out.append((re.compile(f"^{pattern}{LEAVES}$"), dst))
    return out


def _translate(name: str, layout: str, direction: int) -> tuple[bool, str | None]:
    """(found, translated name); found with None: the layout stores nothing for this native tensor."""
    for pattern, dst in _compiled(layout, direction):
        m = pattern.match(name)
        if m:
            if dst is None:
                return True, None
            out = dst.replace("{i}", m.group("i")) if "{i}" in dst else dst
            return True, f"{out}.{m.group('leaf')}" if m.group("leaf") else out
    return False, None


def to_checkpoint_name(native: str, layout: str = "remote") -> str | None:
    """The layout's name of a native tensor; None where the layout stores nothing (an identity norm)."""
    found, out = _translate(native, layout, 0)
    if not found:
        raise KeyError(f"no {layout} checkpoint name for {native!r}")
    return out


def to_native_name(checkpoint: str, layout: str = "remote") -> str | None:
    """The native name of a checkpoint tensor; None for a tied LM head copy or a computed table."""
    lay = LAYOUTS[layout]
    if checkpoint in lay.tied or re.fullmatch(lay.computed, checkpoint):
        return None
    found, out = _translate(checkpoint, layout, 1)
    if not found or out is None:
        raise KeyError(f"unknown {layout} checkpoint tensor {checkpoint!r}")
    return out


def to_checkpoint_state_dict(model: GraniteNar, layout: str = "remote") -> dict[str, torch.Tensor]:
    """The model's tensors under a layout's names; a tensor the layout cannot hold raises CheckpointMismatch."""
    out = {}
    for name, tensor in model.state_dict().items():
        stored = to_checkpoint_name(name, layout)
        if stored is not None:
            out[stored] = tensor
        elif not torch.all(tensor == IDENTITY_NORM[name.rsplit(".", 1)[-1]]):
            raise CheckpointMismatch(f"the {layout} layout stores no {name}, so it must be "
                                     f"{IDENTITY_NORM[name.rsplit('.', 1)[-1]]} everywhere; it is not")
    return out


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(load_file(str(path / shard)))
        return tensors
    return load_file(str(path / "model.safetensors"))


def _mappable(name: str, layout: str) -> bool:
    try:
        to_native_name(name, layout)
    except KeyError:
        return False
    return True


def detect_layout(names: list[str]) -> str:
    """The layout that names the most of these tensors (strictness comes after, in native_state_dict)."""
    return max(LAYOUTS, key=lambda layout: sum(_mappable(n, layout) for n in names))


def native_state_dict(tensors: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Checkpoint tensors under native names; every tensor must map, tied copies must equal their source."""
    out, unknown = {}, []
    for name, tensor in tensors.items():
        try:
            native = to_native_name(name, layout)
        except KeyError:
            unknown.append(name)
            continue
        if native is not None:
            out[native] = tensor
    if unknown:
        raise CheckpointMismatch(f"{len(unknown)} of {len(tensors)} checkpoint tensors have no native name in the "
                                 f"{layout} layout, e.g. {unknown[:5]}")
    for copy, source in LAYOUTS[layout].tied.items():
        if copy in tensors and source in tensors and not torch.equal(tensors[copy], tensors[source]):
            raise CheckpointMismatch(f"{copy} differs from {source}: the editor's LM head is the tied embedding")
    return out


def _fill_unstored(state: dict[str, torch.Tensor], shapes: dict[str, tuple], layout: str) -> None:
    """Parameters the layout does not store (identity norms) get their identity values."""
    for name, shape in shapes.items():
        if name not in state and to_checkpoint_name(name, layout) is None:
            state[name] = torch.full(shape, IDENTITY_NORM[name.rsplit(".", 1)[-1]])


def load_model(path: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> GraniteNar:
    """Build the model from a checkpoint folder (config.json + safetensors, either layout); nothing downloaded."""
    cfg = read_config(json.loads((path / "config.json").read_text()))
    with torch.device("meta"):
        model = GraniteNar(cfg)
    tensors = read_safetensors(path)
    layout = detect_layout(list(tensors))
    state = {k: v for k, v in native_state_dict(tensors, layout).items() if not k.endswith(COUNTER)}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(COUNTER)}
    _fill_unstored(state, shapes, layout)
    missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or unexpected:
        raise CheckpointMismatch(
            f"checkpoint at {path} ({layout} layout) does not fit the model: missing {missing[:8]} "
            f"({len(missing)}), unexpected {unexpected[:8]} ({len(unexpected)})")
    wrong = [f"{k}: checkpoint {tuple(v.shape)}, model {shapes[k]}" for k, v in state.items()
             if tuple(v.shape) != shapes[k]]
    if wrong:
        raise CheckpointMismatch(f"checkpoint at {path} ({layout} layout): shapes differ: {wrong[:8]} ({len(wrong)})")
    model.load_state_dict(state, assign=True, strict=False)  # strict but for BatchNorm's counters
    _rebuild_buffers(model)
    return model.to(device=device, dtype=dtype).eval()


def _rebuild_buffers(model: GraniteNar) -> None:
    """Buffers that are computed, not stored, were left on the meta device: compute them."""
    cfg = model.cfg
    model.features = LogMelFeatures(cfg.features)
    for block in model.encoder.blocks:
        block.attn.dists = relative_distances(cfg.encoder.context, cfg.encoder.max_rel)
        block.conv.batch_norm.num_batches_tracked = torch.tensor(0)


def save_checkpoint(model: GraniteNar, path: Path, layout: str = "remote") -> None:
    """Write the model in a layout, config.json in its dialect (tests use it to build tiny checkpoints)."""
    from safetensors.torch import save_file

    tensors = to_checkpoint_state_dict(model, layout)
    config = write_config(model.cfg, LAYOUTS[layout].dialect)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=1))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
