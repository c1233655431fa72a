"""Small Conformer parts the unit tests share: a convolution module whose BatchNorm has statistics."""

from __future__ import annotations

import dataclasses

import torch

from callscribe.engines.nar.config import EncoderConfig, NarConfig
from callscribe.engines.nar.modeling import ConvModule


def conv_module(kernel: int, seed: int) -> tuple[ConvModule, EncoderConfig]:
    """The tiny config's convolution module with a ``kernel``-tap depthwise convolution, in eval mode,
    its BatchNorm's running statistics away from the identity (so folding them shows)."""
    cfg = dataclasses.replace(NarConfig.tiny().encoder, conv_kernel=kernel)
    torch.manual_seed(seed)
    conv = ConvModule(cfg).eval()
    with torch.no_grad():
        conv.batch_norm.running_mean.normal_(0, 0.3)
        conv.batch_norm.running_var.uniform_(0.3, 2.0)
    return conv, cfg
