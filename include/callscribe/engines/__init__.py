"""ASR engines behind one interface (see base.Engine), created by name."""

from __future__ import annotations

import os
from collections.abc import Callable

from callscribe.engines.base import BaseEngine, Engine, EngineOutOfMemory, Segment, Word

__all__ = ["BaseEngine", "Engine", "EngineOutOfMemory", "Segment", "Word", "available", "chunk_seconds", "create"]


def _whisper_tiny(**kw) -> Engine:
    from callscribe.engines.whisper import WhisperTinyEngine

    return WhisperTinyEngine(**kw)


def _granite_nar(**kw) -> Engine:
    from callscribe.engines.granite import GraniteNarEngine

    return GraniteNarEngine(**kw)


def _granite_nar_native(**kw) -> Engine:
    from callscribe.engines.granite_native import GraniteNarNativeEngine

    return GraniteNarNativeEngine(**kw)


# Engines selectable in the DAG's Params and the CLI.
_FACTORIES: dict[str, Callable[..., Engine]] = {
    "whisper-tiny": _whisper_tiny,
    "granite-nar": _granite_nar,
    "granite-nar-native": _granite_nar_native,
}
DEFAULT_ENGINE = "whisper-tiny"

# Seconds of packed speech per chunk, per engine; the chunk tasks read it without loading a
# model. Whisper hears 30 s windows, but whisper-tiny misheard more in chunks packed to 30 s
# than to 25 s (make heldout, docs/benchmarks.md). Granite NAR is published on windows of up
# to 30 s and degrades on much longer items (docs/granite.md). CALLSCRIBE_CHUNK_S overrides.
CHUNK_SECONDS: dict[str, float] = {"whisper-tiny": 25.0, "granite-nar": 30.0, "granite-nar-native": 30.0}


# An override outside these bounds is a mistake: shorter chunks leave no room for a region
# with its context; Granite NAR cannot take items of more than about 4 minutes.
CHUNK_SECONDS_RANGE = (5.0, 240.0)


def chunk_seconds(name: str | None) -> float:
    override = os.environ.get("CALLSCRIBE_CHUNK_S")
    if override:
        lo, hi = CHUNK_SECONDS_RANGE
        value = float(override)
        if not lo <= value <= hi:
            raise ValueError(f"CALLSCRIBE_CHUNK_S={override}: a chunk must be {lo:g} to {hi:g} seconds")
        return value
    return CHUNK_SECONDS.get(name or DEFAULT_ENGINE, 30.0)


def available() -> list[str]:
    return sorted(_FACTORIES)


def create(name: str, **options) -> Engine:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(available())}") from None
    return factory(**options)
