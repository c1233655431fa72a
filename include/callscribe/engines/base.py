"""The one interface every ASR engine implements."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Word:
    """One recognised word, times in seconds from the start of its chunk."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Segment:
    """A piece of recognised text, times in seconds from the start of its chunk.

    ``words`` (optional) time each word: a chunk packs several speech regions of a channel,
    and the words say where a segment that crosses from one region to the next is split.
    An engine without word times leaves it empty; its segments then go whole to the region
    they overlap most.

    ``confidence`` (optional) is the engine's own belief in the text, in [0, 1] (Whisper: the
    exponent of the segment's mean token log-probability; native Granite: the mean probability
    of its output tokens); None for an engine with no such notion.
    """

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    confidence: float | None = None


class EngineOutOfMemory(RuntimeError):
    """The batch did not fit on the device; the caller splits it and tries again."""


class Engine(Protocol):
    name: str
    device: str

    def prepare(self, batch: list[np.ndarray]) -> Any:
        """CPU-side work for a batch of 16 kHz mono float32 chunks (runs in a background thread).
        An engine with ``takes_int16 = True`` is also handed int16 chunks (full scale 32768) as they
        are, by run_batches, and converts them itself."""
        ...

    def run(self, prepared: Any) -> list[list[Segment]]:
        """Recognise a prepared batch: one segment list per chunk, in input order."""
        ...

    # Optional: ``start(prepared)`` queues a batch on the device and returns the call that waits
    # for it and gives what ``run`` gives. The batch runner then starts the next batch before it
    # finishes this one (transcription.run_batches); an engine without it is run batch by batch.

    def peak_memory_bytes(self) -> int | None:
        """High-water mark of the memory the engine computes in (device memory on a GPU)."""
        ...


class BaseEngine:
    """Defaults: nothing to prepare, peak memory is the process's peak resident size."""

    name = "base"
    device = "cpu"

    def prepare(self, batch: list[np.ndarray]) -> Any:
        return batch

    def run(self, prepared: Any) -> list[list[Segment]]:
        raise NotImplementedError

    def transcribe(self, batch: list[np.ndarray]) -> list[list[Segment]]:
        return self.run(self.prepare(batch))

    def peak_memory_bytes(self) -> int | None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class TorchEngine(BaseEngine):
    """Engines that compute in torch: batches go to the device from pinned host memory, and
    peak memory is the device's allocator high-water mark on a GPU."""

    device = "cpu"

    def prepare(self, batch: list[np.ndarray]) -> Any:
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in batch]
        if self.device.startswith("cuda"):
            tensors = [t.pin_memory() for t in tensors]  # makes the copy to the GPU asynchronous
        return tensors, [len(x) / 16_000 for x in batch]

    def peak_memory_bytes(self) -> int | None:
        if self.device.startswith("cuda"):
            import torch

            return int(torch.cuda.max_memory_allocated())
        return super().peak_memory_bytes()
