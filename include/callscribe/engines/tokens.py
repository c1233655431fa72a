"""Token-level output of an engine, for comparing two implementations of one model.

Lives beside the engines that produce it (granite, granite_native), so an engine does not
import the parity tool that consumes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class ItemOutput:
    """One chunk's result: token ids, their text, and the editor logits when the engine exposes them."""

    ids: list[int]
    text: str
    logits: object | None = None  # (text slots, vocab) tensor when the engine exposes it


class TokenEngine(Protocol):
    name: str

    def token_outputs(self, batch: list[np.ndarray]) -> list[ItemOutput]: ...
