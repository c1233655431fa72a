"""Load the published checkpoint into the native model: the name mapping, documented in one table.

The table pairs our module paths (left) with the checkpoint's (right, the single-file
remote-code layout of the pinned revision). ``{i}`` is a layer index; a module's own
tensors (weight, bias, BatchNorm statistics) keep their names. The mapping must be a
bijection; tests round-trip every tensor of a model through it.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import torch

from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.features import LogMelFeatures
from callscribe.engines.nar.modeling import GraniteNar, relative_distances

NAME_MAP: list[tuple[str, str]] = [
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
]
# Checkpoint tensors the native model does not need: the untied copy of the LM head (if
# present, it equals the embedding) and rotary tables (computed).
IGNORED = re.compile(r"^(language_model\.lm_head\.weight|lm_head\.weight|.*rotary_emb\.inv_freq)$")
LEAVES = r"(?:\.(?P<leaf>weight|bias|running_mean|running_var|num_batches_tracked))?"


class CheckpointMismatch(ValueError):
    """The checkpoint's tensors do not fit the model; the message lists what differs."""


@cache
def _compiled(direction: int) -> list[tuple[re.Pattern, str]]:
    out = []
    for pair in NAME_MAP:
        src, dst = pair[direction], pair[1 - direction]
        pattern = re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)")
        out.append((re.compile(f"^{pattern}{LEAVES}$"), dst))
    return out


def _translate(name: str, direction: int) -> str | None:
    for pattern, dst in _compiled(direction):
        m = pattern.match(name)
        if m:
            out = dst.replace("{i}", m.group("i")) if "{i}" in dst else dst
            return f"{out}.{m.group('leaf')}" if m.group("leaf") else out
    return None


def to_checkpoint_name(native: str) -> str:
    out = _translate(native, 0)
    if out is None:
        raise KeyError(f"no checkpoint name for {native!r}")
    return out


def to_native_name(checkpoint: str) -> str | None:
    """The native name of a checkpoint tensor; None for tensors the model ignores."""
    if IGNORED.match(checkpoint):
        return None
    out = _translate(checkpoint, 1)
    if out is None:
        raise KeyError(f"unknown checkpoint tensor {checkpoint!r}")
    return out


def to_checkpoint_state_dict(model: GraniteNar) -> dict[str, torch.Tensor]:
    return {to_checkpoint_name(k): v for k, v in model.state_dict().items()}


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


def native_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for name, tensor in tensors.items():
        try:
            native = to_native_name(name)
        except KeyError:
            unknown.append(name)
            continue
        if native is not None:
            out[native] = tensor
    if unknown:
        raise CheckpointMismatch(f"{len(unknown)} checkpoint tensors have no native name, e.g. {unknown[:5]}")
    return out


def load_model(path: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> GraniteNar:
    """Build the model from a checkpoint folder (config.json + safetensors); nothing downloaded."""
    cfg = NarConfig.from_checkpoint_config(json.loads((path / "config.json").read_text()))
    with torch.device("meta"):
        model = GraniteNar(cfg)
    # BatchNorm's training counter plays no part in inference: not required, not loaded.
    state = {k: v for k, v in native_state_dict(read_safetensors(path)).items()
             if not k.endswith("num_batches_tracked")}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or unexpected:
        raise CheckpointMismatch(
            f"checkpoint at {path} does not fit the model: missing {missing[:8]} ({len(missing)}), "
            f"unexpected {unexpected[:8]} ({len(unexpected)})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != shapes[name]:
            raise CheckpointMismatch(f"{name}: checkpoint shape {tuple(tensor.shape)}, model {shapes[name]}")
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


def save_checkpoint(model: GraniteNar, path: Path) -> None:
    """Write the model in the published layout (tests use it to build tiny checkpoints)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(model.cfg.to_checkpoint_config(), indent=1))
    save_file({k: v.contiguous() for k, v in to_checkpoint_state_dict(model).items()}, str(path / "model.safetensors"))
