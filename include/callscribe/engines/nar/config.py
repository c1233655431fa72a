"""Sizes of the Granite Speech NAR architecture (config_json.py reads and writes them as config.json).

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
    intermediate: int = 4096  # Q-Former MLP width (the remote-code config says it as mlp_ratio x hidden)
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
    min_slots: int = 8  # min_edit_sequence_length: an editor input has at least this many text slots
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
            projector=ProjectorConfig(hidden=48, heads=4, intermediate=96),
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

    @property
    def frame_s(self) -> float:
        """Seconds per encoder frame: stacked mel hops (20 ms)."""
        f = self.features
        return f.hop_length * f.stack / f.sample_rate

    @property
    def draft_step_s(self) -> float:
        """Seconds per BPE CTC step of the draft: one pooling window of encoder frames (80 ms)."""
        return self.frame_s * self.encoder.pool_window
