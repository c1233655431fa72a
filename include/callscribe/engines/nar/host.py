"""Host-to-device copies that do not make the host wait for the GPU.

A copy from ordinary (pageable) host memory is synchronous: the host waits until every kernel
already queued has run. Inside `GraniteNar.transcribe` that would stall the host after each
stage it queued, so the GPU would then idle while Python prepares the next one. From pinned
memory the copy is queued like a kernel and the host goes on; torch's pinned-memory cache keeps
the buffer alive until the copy has run.
"""

from __future__ import annotations

import numpy as np
import torch


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
