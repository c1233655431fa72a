"""Log-mel features as the model was trained on them, computed in torch (on the GPU when there is one).

The original's frame rule: ``n`` samples give ``n // (hop * stack)`` encoder frames (n // 320 at
16 kHz). Its centred STFT yields ``n // hop + 1`` mel frames; only the first ``stack * frames``
are kept, and they are cut BEFORE the log, the normalisation maximum and the stacking, so a
dropped frame never sets the ceiling (docs/granite.md, "Rules that differ between upstream
versions").

Each item is featurised exactly as if it were alone: its own reflection padding at both
ends of the STFT and its own normalisation ceiling, so a batch never changes an item.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from callscribe.engines.nar.config import FeatureConfig
from callscribe.engines.nar.host import upload


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
        counts = [self.frame_count(w.numel()) for w in waves]
        frames = upload(torch.tensor(counts), device)
        kept = frames * cfg.stack  # mel frames each item keeps: the rest are dropped before anything else
        usable = max(counts, default=0) * cfg.stack  # from the host's counts: no wait for the GPU
        if usable == 0:  # every item is under one encoder frame (20 ms)
            return torch.zeros(len(waves), 0, cfg.n_mels * cfg.stack, device=device), frames
        spec = torch.stft(signal, cfg.n_fft, cfg.hop_length, window=self.window.float(), center=False,
                          return_complex=True)[..., :usable]
        power = spec.real.square() + spec.imag.square()  # (B, freq, mel frames)
        logmel = (power.transpose(1, 2) @ self.filters.float()).clamp_min(1e-10).log10()  # (B, mel frames, mels)
        valid = torch.arange(usable, device=device)[None, :] < kept[:, None]
        ceiling = logmel.masked_fill(~valid[..., None], -math.inf).amax(dim=(1, 2), keepdim=True)
        logmel = torch.maximum(logmel, ceiling - 8.0) / 4.0 + 1.0
        logmel = logmel.masked_fill(~valid[..., None], 0.0)
        feats = logmel.reshape(len(waves), usable // cfg.stack, cfg.n_mels * cfg.stack)
        return feats, frames

    def frame_count(self, n_samples: int) -> int:
        """Encoder frames for n samples: n // 320 at 16 kHz (50 per second, the remainder dropped)."""
        return n_samples // (self.cfg.hop_length * self.cfg.stack)
