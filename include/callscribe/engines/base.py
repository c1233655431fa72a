"""The one interface every ASR engine implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Segment:
    """A piece of recognised text, times in seconds from the start of its chunk."""

    start: float
    end: float
    text: str


class Engine(Protocol):
    name: str
    device: str

    def transcribe(self, batch: list[np.ndarray]) -> list[list[Segment]]:
        """Recognise a batch of 16 kHz mono float32 chunks; one segment list per chunk, in order."""
        ...
