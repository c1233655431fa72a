"""config.json of a Granite Speech NAR checkpoint, in both dialects, read strictly.

Two dialects describe the same model:

- ``remote``: the published checkpoint's own config (the remote code of the pinned revision):
  ``encoder_config.bpe_output_dim``, ``projector_config.block_size``, top-level
  ``encoder_layer_indices`` and ``min_edit_sequence_length``, ...
- ``transformers``: what transformers' conversion to its native ``GraniteSpeechNarForCTC``
  writes: ``encoder_config.vocabulary_size`` / ``pooling_window`` / ``cat_hidden_layers``,
  ``projector_config.window_size`` / ``num_attention_heads`` / ``intermediate_size`` /
  ``layer_norm_eps``, and no ``min_edit_sequence_length`` (that code has no minimum).

Each dialect is a table: which key fills which ``NarConfig`` field, which keys the
architecture fixes, which repeat a size given elsewhere, which do not affect inference.
A key the table does not know, a required key that is missing, a value the model cannot
compute, or two keys that disagree: each raises ``ConfigError`` naming the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from callscribe.engines.nar.config import NarConfig


class ConfigError(ValueError):
    """config.json does not describe a model this code computes; the message names the keys."""


REQUIRED = object()  # a Key default: the key must be there
DERIVED = object()  # a Key default: when absent (or null), derived from other fields as the original does


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
        raise ValueError(f"expected an integer, got {v!r}")
    return int(v)


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _ints(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list | tuple):
        raise ValueError(f"expected a list of integers, got {v!r}")
    return tuple(_int(x) for x in v)


def _act(v: Any) -> str:
    if v not in ("silu", "gelu"):
        raise ValueError(f"expected silu or gelu, got {v!r}")
    return v


def _same(v: Any) -> Any:
    return v


@dataclass(frozen=True)
class Key:
    """config.json key(s) -> one NarConfig field (dotted paths on both sides).

    ``src`` may list alternatives: the first one present (and not null) is read; writing uses
    the first. ``per`` makes the key a ratio: the field is its value times that other key's.
    """

    src: tuple[str, ...]
    dst: str
    read: Callable[[Any], Any] = _same
    write: Callable[[Any], Any] = _same
    default: Any = REQUIRED
    per: str | None = None


def _k(src: str | tuple[str, ...], dst: str, read: Callable[[Any], Any] = _int, write: Callable[[Any], Any] = _same,
       default: Any = REQUIRED, per: str | None = None) -> Key:
    return Key((src,) if isinstance(src, str) else src, dst, read, write, default, per)


@dataclass(frozen=True)
class Dialect:
    name: str
    markers: tuple[str, ...]  # keys only this dialect has: how a config.json is recognised
    keys: tuple[Key, ...]
    implied: dict[str, Any]  # NarConfig fields this dialect cannot express: the value its code hard-wires
    fixed: dict[str, tuple]  # keys whose value the architecture fixes (checked when present)
    agree: dict[str, Callable[[NarConfig], Any]]  # keys that repeat a size read elsewhere (checked when present)
    ignored: frozenset[str]  # keys that play no part in inference


# Granite text model: the same keys in both dialects (a `granite` config).
TEXT_KEYS = (
    _k("text_config.vocab_size", "editor.vocab"),
    _k("text_config.hidden_size", "editor.hidden"),
    _k("text_config.num_hidden_layers", "editor.layers"),
    _k("text_config.num_attention_heads", "editor.heads"),
    _k("text_config.num_key_value_heads", "editor.kv_heads"),
    _k("text_config.head_dim", "editor.head_dim", default=DERIVED),
    _k("text_config.intermediate_size", "editor.intermediate"),
    _k("text_config.rms_norm_eps", "editor.rms_eps", _float),
    _k(("text_config.rope_parameters.rope_theta", "text_config.rope_theta"), "editor.rope_theta", _float),
    _k("text_config.max_position_embeddings", "editor.max_positions"),
    _k("text_config.embedding_multiplier", "editor.embedding_multiplier", _float),
    _k("text_config.attention_multiplier", "editor.attention_multiplier", _float),
    _k("text_config.residual_multiplier", "editor.residual_multiplier", _float),
    _k("text_config.logits_scaling", "editor.logits_scaling", _float),
)
FIXED: dict[str, tuple] = {  # the first value is the one written
    "text_config.model_type": ("granite", "granite_speech_nar_text"),
    "text_config.hidden_act": ("silu",),
    "text_config.attention_bias": (False,),
    "text_config.mlp_bias": (False,),
    "text_config.tie_word_embeddings": (True,),
    "text_config.rope_parameters.rope_type": ("default",),
    "text_config.rope_scaling": (None,),
    "tie_word_embeddings": (True,),
    "model_type": ("granite_speech_nar",),
    "encoder_config.model_type": ("granite_speech_nar_encoder",),
    "projector_config.model_type": ("granite_speech_nar_projector",),
}
TEXT_IGNORED = frozenset({
    "text_config.attention_dropout", "text_config.bos_token_id", "text_config.pad_token_id",
    "text_config.eos_token_id", "ce_loss_lambda", "encoder_ctc_loss_lambda",
})
# Keys every transformers config may carry (bookkeeping, training and generation settings).
GENERIC = frozenset({
    "_name_or_path", "architectures", "auto_map", "chunk_size_feed_forward", "dtype", "torch_dtype", "id2label",
    "label2id", "is_encoder_decoder", "output_attentions", "output_hidden_states", "problem_type", "return_dict",
    "transformers_version", "use_cache", "initializer_range", "use_bfloat16", "torchscript", "pruned_heads",
    "tie_encoder_decoder", "is_decoder", "add_cross_attention", "cross_attention_hidden_size", "finetuning_task",
    "tokenizer_class", "prefix", "task_specific_params", "tf_legacy_loss", "sep_token_id", "decoder_start_token_id",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
})
SUBCONFIGS = ("encoder_config", "projector_config", "text_config", "text_config.rope_parameters")

ENCODER_COMMON = (
    _k("encoder_config.input_dim", "encoder.input_dim"),
    _k("encoder_config.num_layers", "encoder.layers"),
    _k("encoder_config.hidden_dim", "encoder.hidden"),
    _k("encoder_config.num_heads", "encoder.heads"),
    _k("encoder_config.dim_head", "encoder.head_dim", default=DERIVED),
    _k("encoder_config.feedforward_mult", "encoder.ff_mult"),
    _k("encoder_config.conv_kernel_size", "encoder.conv_kernel"),
    _k("encoder_config.conv_expansion_factor", "encoder.conv_expansion"),
    _k("encoder_config.context_size", "encoder.context"),
    _k("encoder_config.max_pos_emb", "encoder.max_rel"),
    _k("encoder_config.output_dim", "encoder.char_vocab"),
    _k("encoder_config.self_conditioning_layer", "encoder.self_cond_layer", default=DERIVED),
)
# DERIVED fields: the fields they come from, and how (the original config classes' rules).
DERIVATIONS: dict[str, tuple[tuple[str, ...], Callable[..., int]]] = {
    "encoder.head_dim": (("encoder.hidden", "encoder.heads"), lambda hidden, heads: hidden // heads),
    "encoder.self_cond_layer": (("encoder.layers",), lambda layers: layers // 2),
    "editor.head_dim": (("editor.hidden", "editor.heads"), lambda hidden, heads: hidden // heads),
}


def _cat_layers_read(v: Any) -> tuple[int, ...]:
    # transformers' encoder always appends the last layer after the listed ones
    return (*_ints(v), -1)


def _cat_layers_write(export: tuple[int, ...]) -> list[int]:
    if not export or export[-1] != -1:
        raise ConfigError(f"the transformers dialect always exports the last layer last; export layers {export}")
    return list(export[:-1])


REMOTE = Dialect(
    name="remote",
    markers=("encoder_layer_indices", "encoder_config.bpe_output_dim", "projector_config.block_size"),
    keys=(
        *ENCODER_COMMON,
        _k("encoder_config.bpe_pooling_window", "encoder.pool_window"),
        _k("encoder_config.bpe_output_dim", "encoder.bpe_vocab"),
        _k("encoder_layer_indices", "encoder.export_layers", _ints, list),
        _k("projector_config.hidden_size", "projector.hidden"),
        _k("projector_config.num_layers", "projector.layers"),
        _k("projector_config.num_heads", "projector.heads"),
        _k("projector_config.mlp_ratio", "projector.intermediate", _float, per="projector_config.hidden_size"),
        _k("projector_config.block_size", "projector.window"),
        _k("projector_config.downsample_rate", "projector.downsample"),
        _k("projector_config.layernorm_eps", "projector.eps", _float),
        _k("projector_config.attn_bias", "projector.attn_bias", _bool),
        _k("projector_config.mlp_bias", "projector.mlp_bias", _bool),
        _k(("blank_token_id", "encoder_config.blank_token_id", "text_config.eos_token_id"), "blank_id"),
        _k("min_edit_sequence_length", "min_slots"),
        _k("scale_projected_embeddings", "scale_projected_embeddings", _bool),
        *TEXT_KEYS,
    ),
    implied={"projector.mlp_act": "silu"},  # the remote code's Q-Former MLP is SiLU, not configurable
    fixed=FIXED,
    agree={
        "encoder_config.blank_token_id": lambda c: c.blank_id,
        "projector_config.encoder_dim": lambda c: c.encoder.hidden,
        "projector_config.num_encoder_layers": lambda c: len(c.encoder.export_layers),
        "projector_config.llm_dim": lambda c: c.editor.hidden,
    },
    ignored=TEXT_IGNORED | {"audio_token_id", "encoder_config.dropout", "encoder_config.pred_dropout",
                            "projector_config.dropout_prob"},
)

TRANSFORMERS = Dialect(
    name="transformers",
    markers=("encoder_config.cat_hidden_layers", "encoder_config.vocabulary_size", "projector_config.window_size"),
    keys=(
        *ENCODER_COMMON,
        _k("encoder_config.pooling_window", "encoder.pool_window"),
        _k("encoder_config.vocabulary_size", "encoder.bpe_vocab"),
        _k("encoder_config.cat_hidden_layers", "encoder.export_layers", _cat_layers_read, _cat_layers_write),
        _k("projector_config.hidden_size", "projector.hidden"),
        _k("projector_config.num_hidden_layers", "projector.layers"),
        _k("projector_config.num_attention_heads", "projector.heads"),
        _k("projector_config.intermediate_size", "projector.intermediate"),
        _k("projector_config.hidden_act", "projector.mlp_act", _act),
        _k("projector_config.window_size", "projector.window"),
        _k("projector_config.downsample_rate", "projector.downsample"),
        _k("projector_config.layer_norm_eps", "projector.eps", _float),
        _k("projector_config.attention_bias", "projector.attn_bias", _bool),
        _k("blank_token_id", "blank_id"),
        # Not in this dialect (transformers' code has no minimum); the weights are the original's,
        # which pads every draft to 8 slots. A config that states it is obeyed.
        _k("min_edit_sequence_length", "min_slots", default=8),
        *TEXT_KEYS,
    ),
    # transformers' Q-Former MLP always has biases; audio rows are always scaled down
    implied={"projector.mlp_bias": True, "scale_projected_embeddings": True},
    fixed={**FIXED, "text_config.model_type": ("granite_speech_nar_text", "granite")},
    agree={
        "projector_config.num_key_value_heads": lambda c: c.projector.heads,  # plain multi-head cross-attention
        "projector_config.hidden_size": lambda c: c.editor.hidden,  # its output linear keeps the width
    },
    ignored=TEXT_IGNORED | {"encoder_config.dropout", "projector_config.attention_dropout"},
)
DIALECTS = {d.name: d for d in (REMOTE, TRANSFORMERS)}


# ------------------------------------------------------------------------------- reading


def _get(cfg: dict, path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _has(cfg: dict, path: str) -> bool:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _paths(cfg: dict) -> list[str]:
    """Every key of config.json, dotted, descending into the sub-configs only."""
    out = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in SUBCONFIGS and isinstance(value, dict):
                walk(value, f"{path}.")
            else:
                out.append(path)

    walk(cfg, "")
    return out


def detect_dialect(cfg: dict) -> Dialect:
    found = [d for d in DIALECTS.values() if any(_has(cfg, m) for m in d.markers)]
    if len(found) != 1:
        raise ConfigError("cannot tell the config.json dialect: expected the keys of exactly one of "
                          + "; ".join(f"{d.name} ({', '.join(d.markers)})" for d in DIALECTS.values()))
    return found[0]


def _known(dialect: Dialect, path: str) -> bool:
    sources = {s for k in dialect.keys for s in k.src}
    return (path in sources or path in dialect.fixed or path in dialect.agree or path in dialect.ignored
            or path.rsplit(".", 1)[-1] in GENERIC)


def _read_keys(cfg: dict, dialect: Dialect, problems: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = dict(dialect.implied)
    for key in dialect.keys:
        present = [s for s in key.src if _get(cfg, s) is not None]
        if not present:
            if key.default is REQUIRED:
                problems.append(f"missing {' or '.join(key.src)}")
            elif key.default is not DERIVED:
                values[key.dst] = key.default
            continue
        try:
            values[key.dst] = key.read(_get(cfg, present[0]))
        except ValueError as exc:
            problems.append(f"{present[0]}: {exc}")
    return values


def _dst_of(dialect: Dialect, src: str) -> str:
    return next(k.dst for k in dialect.keys if src in k.src)


def _resolve(values: dict[str, Any], dialect: Dialect, problems: list[str]) -> None:
    """Ratios to sizes, and the fields the original config classes derive when absent."""
    for key in dialect.keys:
        base = _dst_of(dialect, key.per) if key.per else None
        if base and key.dst in values and base in values:
            size = values[key.dst] * values[base]
            if size != int(size):
                problems.append(f"{key.src[0]} x {key.per} is not a whole number: {size}")
            values[key.dst] = int(size)
    for dst, (inputs, rule) in DERIVATIONS.items():
        if dst not in values and all(i in values for i in inputs):
            values[dst] = rule(*(values[i] for i in inputs))


def _build(values: dict[str, Any]) -> NarConfig:
    parts: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for dst, v in values.items():
        if "." in dst:
            section, name = dst.split(".", 1)
            parts.setdefault(section, {})[name] = v
        else:
            top[dst] = v
    base = NarConfig()
    sections = {f.name: type(getattr(base, f.name))(**parts.get(f.name, {}))
                for f in fields(base) if is_dataclass(getattr(base, f.name))}
    return NarConfig(**sections, **top)


def _field(cfg: NarConfig, dst: str) -> Any:
    node: Any = cfg
    for part in dst.split("."):
        node = getattr(node, part)
    return node


def read_config(cfg: dict) -> NarConfig:
    """config.json (either dialect) -> NarConfig; every problem found is named in one ConfigError."""
    dialect = detect_dialect(cfg)
    problems = [f"unknown key {p}" for p in _paths(cfg) if not _known(dialect, p)]
    values = _read_keys(cfg, dialect, problems)
    _resolve(values, dialect, problems)
    for path, allowed in dialect.fixed.items():
        if _has(cfg, path) and _get(cfg, path) not in allowed:
            problems.append(f"{path} is {_get(cfg, path)!r}; this model is computed only with {allowed}")
    if problems:
        raise ConfigError(f"config.json ({dialect.name} dialect): " + "; ".join(problems))
    nar = _build(values)
    for path, expected in dialect.agree.items():
        if _get(cfg, path) is not None and _get(cfg, path) != expected(nar):
            problems.append(f"{path} is {_get(cfg, path)!r}, but the other keys give {expected(nar)!r}")
    _check_sizes(nar, problems)
    if problems:
        raise ConfigError(f"config.json ({dialect.name} dialect): " + "; ".join(problems))
    return nar


def _check_sizes(nar: NarConfig, problems: list[str]) -> None:
    """What the modules need to be built at all."""
    e, p = nar.encoder, nar.projector
    if not 1 <= e.self_cond_layer <= e.layers:
        problems.append(f"self-conditioning layer {e.self_cond_layer} is not one of the {e.layers} encoder layers")
    if any(not -e.layers - 1 <= i <= e.layers for i in e.export_layers):
        problems.append(f"exported layers {e.export_layers} are not all encoder layers (0..{e.layers}, or negative)")
    if p.window % p.downsample:
        problems.append(f"projector window {p.window} is not a whole number of {p.downsample}-frame queries")
    if e.context % e.pool_window:
        # Items are laid end to end in whole attention blocks: each must start on a pooling window.
        problems.append(f"attention block of {e.context} frames is not a whole number of "
                        f"{e.pool_window}-frame pooling windows")
    if p.hidden % p.heads or nar.editor.heads % nar.editor.kv_heads:
        problems.append("attention heads do not divide their widths or groups")


# ------------------------------------------------------------------------------- writing


def _put(cfg: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def write_config(nar: NarConfig, dialect_name: str) -> dict:
    """NarConfig -> config.json in a dialect; a field the dialect cannot express raises ConfigError."""
    dialect = DIALECTS[dialect_name]
    for dst, value in dialect.implied.items():
        if _field(nar, dst) != value:
            raise ConfigError(f"the {dialect.name} dialect cannot express {dst} = {_field(nar, dst)!r} "
                              f"(its code fixes {value!r})")
    cfg: dict = {}
    for path, allowed in dialect.fixed.items():
        if allowed[0] is not None:
            _put(cfg, path, allowed[0])
    for key in dialect.keys:
        value = _field(nar, key.dst)
        if key.per:
            value = value / _field(nar, _dst_of(dialect, key.per))
            value = int(value) if value == int(value) else value
        _put(cfg, key.src[0], key.write(value))
    for path, expected in dialect.agree.items():
        _put(cfg, path, expected(nar))
    return cfg
