"""Test audio for the native model's unit tests: seeded noise at 16 kHz, no files."""

from __future__ import annotations

import torch


def noise_waves(seconds: list[float], seed: int = 0) -> list[torch.Tensor]:
    """One float32 wave of quiet Gaussian noise per length, the same for the same seed."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(s * 16_000), generator=g) * 0.1 for s in seconds]
