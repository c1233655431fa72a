"""Host-to-device copies that do not make the host wait for the GPU.

A copy from ordinary (pageable) host memory is synchronous: the host waits until every kernel
already queued has run. Inside `GraniteNar.transcribe` that would stall the host after each
stage it queued, so the GPU would then idle while Python prepares the next one. From pinned
memory the copy is queued like a kernel and the host goes on; torch's pinned-memory cache keeps
the buffer alive until the copy has run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from callscribe.audio import TARGET_SR, as_float

INT16_SCALE = 1 / 32768  # int16 samples to [-1, 1): a power of two, so exact in float32


def upload(t: torch.Tensor | np.ndarray, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``, queued without waiting when the device is a GPU."""
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(t)
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


class Download:
    """A device tensor on its way to the host: the copy is queued behind the kernels computing it,
    and only :meth:`tolist` waits, for that copy alone (the GPU may go on with later work)."""

    def __init__(self, t: torch.Tensor):
        self.event = None
        if t.is_cuda:
            self.host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            self.host.copy_(t, non_blocking=True)
            self.event = torch.cuda.Event()
            # On the stream the copy went to: that of t's device, which need not be the current one.
            self.event.record(torch.cuda.current_stream(t.device))
        else:
            self.host = t

    def tolist(self) -> list:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()


@dataclass(frozen=True)
class HostBatch:
    """A batch's chunks end to end in one host buffer (pinned when it goes to a GPU), in the dtype they
    came in. The worker's chunks are int16: they stay int16, half the bytes to copy, and are scaled to
    float on the device, so the reader does no float conversion (which was most of the first batch's
    preparation, when the GPU has nothing else to do). One copy per batch, not one per chunk."""

    samples: torch.Tensor  # 1-D: int16, or float32 in [-1, 1]
    lengths: tuple[int, ...]  # samples per chunk, in order

    @classmethod
    def of(cls, chunks: Sequence[np.ndarray], pin: bool = False) -> HostBatch:
        """Mono 16 kHz chunks, all int16 (kept so) or any float dtype (as float32)."""
        arrays = [np.ravel(c) for c in chunks]
        ints = bool(arrays) and all(a.dtype == np.int16 for a in arrays)
        lengths = tuple(a.size for a in arrays)
        samples = torch.empty(sum(lengths), dtype=torch.int16 if ints else torch.float32, pin_memory=pin)
        flat, at = samples.numpy(), 0
        for a in arrays:
            flat[at : at + a.size] = a if ints else as_float(a)
            at += a.size
        if not ints and not np.isfinite(flat).all():  # int16 cannot hold NaN or inf; floats can
            bad = next(i for i, a in enumerate(arrays) if not np.isfinite(as_float(a)).all())
            which = f"chunk {bad} of {len(arrays)}" if len(arrays) > 1 else "the chunk"
            raise ValueError(f"{which} holds non-finite samples (NaN or inf)")
        return cls(samples, lengths)

    @property
    def durations(self) -> list[float]:
        return [n / TARGET_SR for n in self.lengths]

    def waves(self, device: torch.device | str) -> list[torch.Tensor]:
        """The chunks on ``device`` as float32 in [-1, 1]: views into one tensor (queued, not waited for)."""
        x = self.samples.to(device, non_blocking=True)
        if x.dtype == torch.int16:
            x = x.float().mul_(INT16_SCALE)
        return list(x.split(list(self.lengths)))
