"""A no-op engine for measuring everything around the model (benchmarks only).

Kept out of the package (benchmarks/ is not in the wheel) and out of the engine registry:
it cannot be chosen in the DAG's Params or installed on a worker.
"""

from __future__ import annotations

import numpy as np

from callscribe.engines.base import BaseEngine, Segment


class NullEngine(BaseEngine):
    name = "null"

    def run(self, prepared: list[np.ndarray]) -> list[list[Segment]]:
        return [[Segment(0.0, len(x) / 16_000, "")] for x in prepared]
