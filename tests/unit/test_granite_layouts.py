"""Both checkpoint layouts and both config.json dialects of Granite Speech NAR, read strictly.

The same tiny weights (tests/fixtures/granite-nar-tiny, remote-code layout) are written in the
remote-code layout and in transformers' native layout; each loads back to identical logits.
A tensor or a config key that does not fit stops the load with its name.
"""

from __future__ import annotations

import copy
import json
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from callscribe.engines.nar import checkpoint as ck
from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.config_json import DIALECTS, ConfigError, read_config, write_config
from callscribe.engines.nar.modeling import GraniteNar

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "granite-nar-tiny"
LAYOUTS = ("remote", "transformers")


@pytest.fixture(scope="module")
def original() -> GraniteNar:
    return ck.load_model(FIXTURE)


@pytest.fixture(scope="module")
def audio() -> list[torch.Tensor]:
    golden = load_file(str(FIXTURE / "golden.safetensors"))
    return [golden["item0.audio"], golden["item4.audio"]]


@pytest.fixture(scope="module")
def fixture_config() -> dict:
    return json.loads((FIXTURE / "config.json").read_text())


def _save(model: GraniteNar, folder: Path, layout: str) -> dict[str, torch.Tensor]:
    ck.save_checkpoint(model, folder, layout)
    return load_file(str(folder / "model.safetensors"))


# ---------------------------------------------------------------- layouts


def test_each_layout_written_from_the_same_weights_gives_identical_logits(original, audio, tmp_path):
    expected = original.transcribe(audio, return_logits=True)
    for layout in LAYOUTS:
        _save(original, tmp_path / layout, layout)
        assert ck.detect_layout(list(load_file(str(tmp_path / layout / "model.safetensors")))) == layout
        got = ck.load_model(tmp_path / layout).transcribe(audio, return_logits=True)
        assert got.tokens == expected.tokens and got.drafts == expected.drafts, layout
        for a, b in zip(got.logits, expected.logits, strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_the_transformers_layout_uses_transformers_names(original, tmp_path):
    tensors = _save(original, tmp_path, "transformers")
    for name in ("model.encoder.layers.0.attn.to_kv.weight", "model.encoder.layers.5.conv.depth_conv.conv.weight",
                 "model.encoder.layers.1.conv.batch_norm.running_var", "model.encoder.out_mid.weight",
                 "model.out_bpe.bias", "model.projector.proj.weight", "model.projector.qformer.queries",
                 "model.projector.qformer.pos_emb", "model.projector.qformer.linear.bias",
                 "model.projector.qformer.layers.1.cross_attn.o_proj.bias",
                 "model.projector.qformer.layers.0.mlp.fc2.weight", "model.language_model.embed_tokens.weight",
                 "model.language_model.layers.1.mlp.gate_proj.weight", "model.language_model.norm.weight"):
        assert name in tensors, name
    # That code's projector norms are affine-free: the layout stores none of them.
    assert not [n for n in tensors if "norm" in n and n.startswith("model.projector")]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["encoder_config"]["cat_hidden_layers"] == [2, 3, 5] and "encoder_layer_indices" not in cfg
    assert cfg["projector_config"]["intermediate_size"] == 96 and cfg["projector_config"]["window_size"] == 15


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_tensor_name_round_trips(original, layout):
    stored = {n: ck.to_checkpoint_name(n, layout) for n in original.state_dict()}
    names = [m for m in stored.values() if m is not None]
    assert len(set(names)) == len(names)  # a bijection on what the layout stores
    assert {ck.to_native_name(m, layout) for m in names} == {n for n, m in stored.items() if m is not None}
    unstored = sorted(n for n, m in stored.items() if m is None)
    assert unstored == ([] if layout == "remote" else sorted(
        n for n in stored if n.startswith("projector.") and "norm" in n))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_missing_tensor_is_named(original, tmp_path, layout):
    tensors = _save(original, tmp_path, layout)
    del tensors[ck.to_checkpoint_name("projector.window_pos", layout)]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ck.CheckpointMismatch, match=r"missing \['projector\.window_pos'\]"):
        ck.load_model(tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_unknown_tensor_is_named(original, tmp_path, layout):
    tensors = _save(original, tmp_path, layout)
    prefix = "model.encoder" if layout == "transformers" else "encoder"
    tensors[f"{prefix}.layers.0.attn.gate.weight"] = torch.zeros(3)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ck.CheckpointMismatch, match=rf"{prefix}\.layers\.0\.attn\.gate\.weight"):
        ck.load_model(tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_wrong_shape_is_named(original, tmp_path, layout):
    tensors = _save(original, tmp_path, layout)
    name = ck.to_checkpoint_name("encoder.bpe_ctc.bias", layout)
    tensors[name] = torch.zeros(65)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ck.CheckpointMismatch, match=r"encoder\.bpe_ctc\.bias: checkpoint \(65,\), model \(64,\)"):
        ck.load_model(tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_stored_lm_head_must_be_the_embedding(original, tmp_path, layout):
    tensors = _save(original, tmp_path, layout)
    head, embedding = next(iter(ck.LAYOUTS[layout].tied.items()))
    tensors[head] = tensors[embedding].clone()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    ck.load_model(tmp_path)  # an identical copy is fine
    tensors[head][0, 0] += 1.0
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ck.CheckpointMismatch, match="tied embedding"):
        ck.load_model(tmp_path)


def test_the_transformers_layout_refuses_a_projector_norm_it_cannot_store(tmp_path):
    model = ck.load_model(FIXTURE)
    with torch.no_grad():
        model.projector.out_norm.bias += 0.1
    with pytest.raises(ck.CheckpointMismatch, match=r"projector\.out_norm\.bias"):
        ck.save_checkpoint(model, tmp_path, "transformers")


def test_names_of_two_layouts_mixed_are_refused(original, tmp_path):
    remote = _save(original, tmp_path / "r", "remote")
    native = _save(original, tmp_path / "t", "transformers")
    mixed = {k: v for k, v in remote.items() if not k.startswith("language_model.")}
    mixed |= {k: v for k, v in native.items() if k.startswith("model.language_model.")}
    save_file(mixed, str(tmp_path / "r" / "model.safetensors"))
    with pytest.raises(ck.CheckpointMismatch, match="no native name"):
        ck.load_model(tmp_path / "r")


# ---------------------------------------------------------------- config.json dialects


def test_the_remote_config_reads_every_size(fixture_config):
    cfg = read_config(fixture_config)
    e, p, d = cfg.encoder, cfg.projector, cfg.editor
    assert (e.layers, e.hidden, e.heads, e.head_dim, e.self_cond_layer, e.bpe_vocab, e.pool_window) == \
        (6, 32, 2, 16, 3, 64, 4)
    assert e.export_layers == (2, 3, 5, -1)
    assert (p.hidden, p.heads, p.intermediate, p.window, p.downsample, p.eps, p.mlp_act) == \
        (48, 4, 96, 15, 5, 1e-6, "silu")
    assert (d.layers, d.heads, d.kv_heads, d.head_dim, d.intermediate, d.logits_scaling) == (2, 4, 2, 12, 96, 8.0)
    assert (cfg.blank_id, cfg.min_slots, cfg.scale_projected_embeddings) == (63, 8, True)


@pytest.mark.parametrize("dialect", LAYOUTS)
def test_both_dialects_read_back_to_the_same_config(fixture_config, dialect):
    cfg = read_config(fixture_config)
    assert read_config(write_config(cfg, dialect)) == cfg
    full = NarConfig.full()
    assert read_config(write_config(full, dialect)) == full


@pytest.mark.parametrize("dialect", LAYOUTS)
def test_every_field_is_read_from_the_config_or_fixed_by_the_dialect(dialect):
    """No size silently keeps a default: every field but the features' is a key or hard-wired by that code."""
    d = DIALECTS[dialect]
    covered = {k.dst for k in d.keys} | set(d.implied)
    base = NarConfig()
    wanted = set()
    for f in fields(base):
        value = getattr(base, f.name)
        if f.name == "features":  # preprocessor_config.json, not config.json
            continue
        wanted |= {f"{f.name}.{g.name}" for g in fields(value)} if is_dataclass(value) else {f.name}
    assert wanted == covered


def _edited(cfg: dict, path: str, value: object = None, delete: bool = False) -> dict:
    out = copy.deepcopy(cfg)
    *parents, leaf = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    if delete:
        del node[leaf]
    else:
        node[leaf] = value
    return out


@pytest.mark.parametrize(("path", "value", "message"), [
    ("encoder_config.num_experts", 4, "unknown key encoder_config.num_experts"),
    ("projector_config.num_attention_heads", 4, "unknown key projector_config.num_attention_heads"),
    ("encoder_config.pooling_window", 4, "unknown key encoder_config.pooling_window"),
    ("encoder_config.cat_hidden_layers", [2, 3, 5], "cannot tell the config.json dialect"),
    ("text_config.hidden_act", "gelu", r"text_config.hidden_act is 'gelu'"),
    ("projector_config.encoder_dim", 64, "projector_config.encoder_dim is 64, but the other keys give 32"),
    ("projector_config.num_encoder_layers", 3, "projector_config.num_encoder_layers is 3"),
    ("encoder_config.blank_token_id", 0, "encoder_config.blank_token_id is 0"),
    ("projector_config.block_size", 14, "window 14 is not a whole number of 5-frame queries"),
    ("encoder_config.context_size", 22, "block of 22 frames is not a whole number of 4-frame pooling windows"),
    ("encoder_config.num_layers", 6.5, "encoder_config.num_layers: expected an integer"),
])
def test_a_key_that_does_not_fit_is_named(fixture_config, path, value, message):
    with pytest.raises(ConfigError, match=message):
        read_config(_edited(fixture_config, path, value))


@pytest.mark.parametrize("path", ["min_edit_sequence_length", "projector_config.block_size",
                                  "encoder_config.bpe_pooling_window", "text_config.intermediate_size",
                                  "scale_projected_embeddings"])
def test_a_missing_key_is_named(fixture_config, path):
    with pytest.raises(ConfigError, match=f"missing {path}"):
        read_config(_edited(fixture_config, path, delete=True))


def test_the_transformers_dialect_names_its_own_keys(fixture_config):
    native = write_config(read_config(fixture_config), "transformers")
    with pytest.raises(ConfigError, match="missing encoder_config.pooling_window"):
        read_config(_edited(native, "encoder_config.pooling_window", delete=True))
    with pytest.raises(ConfigError, match="projector_config.num_key_value_heads is 2"):
        read_config(_edited(native, "projector_config.num_key_value_heads", 2))
    with pytest.raises(ConfigError, match="unknown key projector_config.mlp_ratio"):
        read_config(_edited(native, "projector_config.mlp_ratio", 2))


def test_the_minimum_of_slots_is_read_from_the_config(fixture_config):
    assert read_config(_edited(fixture_config, "min_edit_sequence_length", 11)).min_slots == 11
    native = write_config(read_config(fixture_config), "transformers")
    assert read_config(_edited(native, "min_edit_sequence_length", 11)).min_slots == 11
    # transformers' own config has no such key (its code has no minimum): the original's 8 applies
    assert read_config(_edited(native, "min_edit_sequence_length", delete=True)).min_slots == 8


def test_absent_derived_keys_are_derived_as_the_original_does(fixture_config):
    cfg = _edited(_edited(fixture_config, "encoder_config.dim_head", delete=True),
                  "encoder_config.self_conditioning_layer", None)
    cfg = _edited(_edited(cfg, "blank_token_id", None), "encoder_config.blank_token_id", delete=True)
    read = read_config(cfg)
    assert (read.encoder.head_dim, read.encoder.self_cond_layer, read.blank_id) == (16, 3, 63)  # eos is 63
