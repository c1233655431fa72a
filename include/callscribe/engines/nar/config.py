"""Sizes of the Granite Speech NAR architecture, and how they read from a checkpoint's config.json.

Defaults are the published 2B model (encoder ~0.54B, projector ~0.08B, editor ~1.6B);
``NarConfig.tiny()`` is the same architecture small enough for CPU tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class FeatureConfig:
    sample_rate: int = 16_000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    stack: int = 2  # pairs of 100 Hz frames become one 50 Hz encoder frame


@dataclass
class EncoderConfig:
    input_dim: int = 160
    hidden: int = 1024
    layers: int = 16
    heads: int = 8
    head_dim: int = 128
    ff_mult: int = 4
    conv_kernel: int = 15
    conv_expansion: int = 2
    context: int = 200  # block-local attention: frames per block
    max_rel: int = 512  # relative distances are clamped to the block, indexed around this
    char_vocab: int = 348  # the self-conditioning character CTC head; class 0 is blank
    self_cond_layer: int = 8
    pool_window: int = 4  # frames per BPE CTC step (50 Hz -> 12.5 Hz)
    bpe_vocab: int = 100_352
    export_layers: tuple[int, ...] = (4, 8, 12, -1)  # hidden states handed to the projector


@dataclass
class ProjectorConfig:
    hidden: int = 2048
    layers: int = 2
    heads: int = 32
    mlp_ratio: int = 2
    window: int = 15  # encoder frames per window
    downsample: int = 5  # frames per query: 3 queries per window, 10 Hz
    eps: float = 1e-6
    attn_bias: bool = True
    mlp_bias: bool = True
    mlp_act: str = "silu"


@dataclass
class EditorConfig:
    vocab: int = 100_352
    hidden: int = 2048
    layers: int = 40
    heads: int = 16
    kv_heads: int = 4
    head_dim: int = 128
    intermediate: int = 4096
    rms_eps: float = 1e-5
    rope_theta: float = 10_000.0
    max_positions: int = 4096
    embedding_multiplier: float = 12.0
    attention_multiplier: float = 1 / 128
    residual_multiplier: float = 0.22
    logits_scaling: float = 8.0


@dataclass
class NarConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    editor: EditorConfig = field(default_factory=EditorConfig)
    blank_id: int = 100_257  # the CTC blank of both the draft and the editor (the EOS token)
    min_slots: int = 8  # an editor input has at least this many text slots
    scale_projected_embeddings: bool = True  # audio embeddings enter the editor divided by its multiplier

    @classmethod
    def full(cls) -> NarConfig:
        return cls()

    @classmethod
    def tiny(cls) -> NarConfig:
        """Every part of the architecture at toy width: runs in milliseconds on a CPU."""
        return cls(
            encoder=EncoderConfig(hidden=32, layers=4, heads=2, head_dim=16, context=20, max_rel=32, char_vocab=12,
                                  self_cond_layer=2, bpe_vocab=64, export_layers=(1, 2, 3, -1)),
            projector=ProjectorConfig(hidden=48, heads=4),
            editor=EditorConfig(vocab=64, hidden=48, layers=2, heads=4, kv_heads=2, head_dim=12, intermediate=96,
                                max_positions=1024),
            blank_id=63,
        )

    @classmethod
    def named(cls, name: str) -> NarConfig:
        if name not in ("tiny", "full"):
            raise ValueError(f"unknown Granite NAR size {name!r}: tiny or full")
        return cls.tiny() if name == "tiny" else cls.full()

    def as_dict(self) -> dict:
        return asdict(self)

    # -- the published checkpoint's config.json (pinned revision) ---------------------------

    @classmethod
    def from_checkpoint_config(cls, cfg: dict) -> NarConfig:
        """Read the sizes from the checkpoint's config.json; unknown keys keep their defaults."""
        enc, prj = cfg.get("encoder_config", {}), cfg.get("projector_config", {})
        llm = cfg.get("text_config") or cfg.get("llm_config") or {}
        e = EncoderConfig()
        layers = enc.get("num_layers", e.layers)
        export = tuple(cfg.get("encoder_layer_indices") or e.export_layers)
        encoder = EncoderConfig(
            input_dim=enc.get("input_dim", e.input_dim), hidden=enc.get("hidden_dim", e.hidden), layers=layers,
            heads=enc.get("num_heads", e.heads), head_dim=enc.get("dim_head", e.head_dim),
            ff_mult=enc.get("feedforward_mult", e.ff_mult), conv_kernel=enc.get("conv_kernel_size", e.conv_kernel),
            conv_expansion=enc.get("conv_expansion_factor", e.conv_expansion),
            context=enc.get("context_size", e.context), max_rel=enc.get("max_pos_emb", e.max_rel),
            char_vocab=enc.get("output_dim", e.char_vocab),
            self_cond_layer=enc.get("self_conditioning_layer") or layers // 2,
            pool_window=enc.get("bpe_pooling_window") or e.pool_window,
            bpe_vocab=enc.get("bpe_output_dim") or llm.get("vocab_size", e.bpe_vocab),
            export_layers=export,
        )
        p = ProjectorConfig()
        projector = ProjectorConfig(
            hidden=prj.get("hidden_size", p.hidden), layers=prj.get("num_layers", p.layers),
            heads=prj.get("num_heads", p.heads), mlp_ratio=prj.get("mlp_ratio", p.mlp_ratio),
            window=prj.get("block_size", p.window), downsample=prj.get("downsample_rate", p.downsample),
            eps=prj.get("layernorm_eps", p.eps), attn_bias=prj.get("attn_bias", p.attn_bias),
            mlp_bias=prj.get("mlp_bias", p.mlp_bias), mlp_act=prj.get("mlp_act", p.mlp_act),
        )
        d = EditorConfig()
        rope = (llm.get("rope_parameters") or {}).get("rope_theta") or llm.get("rope_theta", d.rope_theta)
        editor = EditorConfig(
            vocab=llm.get("vocab_size", d.vocab), hidden=llm.get("hidden_size", d.hidden),
            layers=llm.get("num_hidden_layers", d.layers), heads=llm.get("num_attention_heads", d.heads),
            kv_heads=llm.get("num_key_value_heads", d.kv_heads),
            head_dim=llm.get("head_dim") or llm.get("hidden_size", d.hidden) // llm.get("num_attention_heads", d.heads),
            intermediate=llm.get("intermediate_size", d.intermediate), rms_eps=llm.get("rms_norm_eps", d.rms_eps),
            rope_theta=float(rope), max_positions=llm.get("max_position_embeddings", d.max_positions),
            embedding_multiplier=llm.get("embedding_multiplier", d.embedding_multiplier),
            attention_multiplier=llm.get("attention_multiplier", d.attention_multiplier),
            residual_multiplier=llm.get("residual_multiplier", d.residual_multiplier),
            logits_scaling=llm.get("logits_scaling", d.logits_scaling),
        )
        return cls(encoder=encoder, projector=projector, editor=editor,
                   blank_id=int(enc.get("blank_token_id") or cfg.get("blank_token_id") or cls.blank_id),
                   scale_projected_embeddings=bool(cfg.get("scale_projected_embeddings", True)))

    def to_checkpoint_config(self) -> dict:
        """The inverse of ``from_checkpoint_config`` (used to write tiny test checkpoints)."""
        e, p, d = self.encoder, self.projector, self.editor
        return {
            "encoder_config": {
                "input_dim": e.input_dim, "hidden_dim": e.hidden, "num_layers": e.layers, "num_heads": e.heads,
                "dim_head": e.head_dim, "feedforward_mult": e.ff_mult, "conv_kernel_size": e.conv_kernel,
                "conv_expansion_factor": e.conv_expansion, "context_size": e.context, "max_pos_emb": e.max_rel,
                "output_dim": e.char_vocab, "self_conditioning_layer": e.self_cond_layer,
                "bpe_pooling_window": e.pool_window, "bpe_output_dim": e.bpe_vocab,
            },
            "encoder_layer_indices": list(e.export_layers),
            "projector_config": {
                "hidden_size": p.hidden, "num_layers": p.layers, "num_heads": p.heads, "mlp_ratio": p.mlp_ratio,
                "block_size": p.window, "downsample_rate": p.downsample, "layernorm_eps": p.eps,
                "attn_bias": p.attn_bias, "mlp_bias": p.mlp_bias, "mlp_act": p.mlp_act,
                "encoder_dim": e.hidden, "num_encoder_layers": len(e.export_layers), "llm_dim": d.hidden,
            },
            "text_config": {
                "vocab_size": d.vocab, "hidden_size": d.hidden, "num_hidden_layers": d.layers,
                "num_attention_heads": d.heads, "num_key_value_heads": d.kv_heads, "head_dim": d.head_dim,
                "intermediate_size": d.intermediate, "rms_norm_eps": d.rms_eps,
                "rope_parameters": {"rope_theta": d.rope_theta}, "max_position_embeddings": d.max_positions,
                "embedding_multiplier": d.embedding_multiplier, "attention_multiplier": d.attention_multiplier,
                "residual_multiplier": d.residual_multiplier, "logits_scaling": d.logits_scaling,
            },
            "blank_token_id": self.blank_id,
            "scale_projected_embeddings": self.scale_projected_embeddings,
        }
