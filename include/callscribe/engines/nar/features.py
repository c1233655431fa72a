"""Log-mel features as the model was trained on them, computed in torch (on the GPU when there is one).

Each item is featurised exactly as if it were alone: its own reflection padding at both
ends of the STFT and its own normalisation ceiling, so a batch never changes an item.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from callscribe.engines.nar.config import FeatureConfig


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale, unnormalised, 0 Hz to Nyquist."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    top = 2595.0 * math.log10(1.0 + sample_rate / 2 / 700.0)
    mels = torch.linspace(0.0, top, n_mels + 2, dtype=torch.float64)
    edges = _mel_to_hz(mels)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - freqs[:, None]) / (upper - centre)[None, :]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


class LogMelFeatures(nn.Module):
    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("filters", mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels), persistent=False)
        # A periodic Hann window of win_length, centred in the n_fft frame.
        window = torch.hann_window(cfg.win_length, periodic=True)
        left = (cfg.n_fft - cfg.win_length) // 2
        self.register_buffer("window", F.pad(window, (left, cfg.n_fft - cfg.win_length - left)), persistent=False)

    @torch.no_grad()
    def forward(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (16 kHz mono, any lengths) -> features (B, T, n_mels * stack) and lengths (B,)."""
        cfg = self.cfg
        half = cfg.n_fft // 2
        device = self.window.device
        padded = []
        for w in waves:
            w = w.to(device=device, dtype=torch.float32).flatten()
            if w.numel() <= half:  # reflection needs more samples than the pad
                w = F.pad(w, (0, half + 1 - w.numel()))
            padded.append(F.pad(w[None, None], (half, half), mode="reflect")[0, 0])
        longest = max(p.numel() for p in padded)
        signal = torch.stack([F.pad(p, (0, longest - p.numel())) for p in padded])
        spec = torch.stft(signal, cfg.n_fft, cfg.hop_length, window=self.window.float(), center=False,
                          return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (B, freq, frames)
        logmel = (power.transpose(1, 2) @ self.filters.float()).clamp_min(1e-10).log10()  # (B, frames, mels)
        n_frames = torch.tensor([(p.numel() - cfg.n_fft) // cfg.hop_length + 1 for p in padded], device=device)
        valid = torch.arange(logmel.shape[1], device=device)[None, :] < n_frames[:, None]
        ceiling = logmel.masked_fill(~valid[..., None], -math.inf).amax(dim=(1, 2), keepdim=True)
        logmel = torch.maximum(logmel, ceiling - 8.0) / 4.0 + 1.0
        logmel = logmel.masked_fill(~valid[..., None], 0.0)
        usable = logmel.shape[1] // cfg.stack * cfg.stack
        feats = logmel[:, :usable].reshape(len(waves), usable // cfg.stack, cfg.n_mels * cfg.stack)
        return feats, n_frames // cfg.stack
