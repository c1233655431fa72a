"""Which torch device an engine computes on, and a loud failure when a GPU was asked for but is absent.

A worker pod that requested a GPU and lands without one (no device plugin, a driver that does
not match, ``CUDA_VISIBLE_DEVICES`` empty) would otherwise run the 2B model on its CPU, hours
late and without an error. The pod sets ``CALLSCRIBE_DEVICE=cuda``; the engine then refuses
to start unless torch sees that GPU.

Precedence: an explicit ``device=`` argument, then ``CALLSCRIBE_DEVICE``, then the automatic
choice (the first GPU when torch sees one, else the CPU). ``auto`` or an empty value is the
automatic choice.
"""

from __future__ import annotations

import os

ENV = "CALLSCRIBE_DEVICE"


class DeviceUnavailable(RuntimeError):
    """The device asked for is not there; the message says who asked and what torch sees."""


def what_torch_sees(torch) -> str:
    """One line for an operator: torch's build, its CUDA runtime, the visible GPUs."""
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build (no CUDA)"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (f"torch {torch.__version__}, {build}; torch.cuda.is_available() is {torch.cuda.is_available()}, "
            f"{torch.cuda.device_count()} GPU(s) visible"
            + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""))


def choose_device(device: str | None = None) -> str:
    """The device string to use (``cuda``, ``cuda:1``, ``cpu``, ...), checked against what torch sees."""
    import torch

    if device:
        source = f"device={device!r}"
    else:
        device = os.environ.get(ENV, "").strip()
        source = f"{ENV}={device}"
        if device.lower() in ("", "auto"):
            return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"{source} is not a torch device (cuda, cuda:N, cpu): {exc}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"{source} asks for a GPU, but torch sees none: {what_torch_sees(torch)}. "
                                    "Refusing to fall back to the CPU.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"{source} asks for GPU {parsed.index}, but torch sees only "
                                    f"{torch.cuda.device_count()}: {what_torch_sees(torch)}.")
    return device
