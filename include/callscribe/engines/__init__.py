"""ASR engines behind one interface (see base.Engine), created by name."""

from __future__ import annotations

from collections.abc import Callable

from callscribe.engines.base import BaseEngine, Engine, EngineOutOfMemory, Segment, Word

__all__ = ["BaseEngine", "Engine", "EngineOutOfMemory", "Segment", "Word", "available", "create"]


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


def available() -> list[str]:
    return sorted(_FACTORIES)


def create(name: str, **options) -> Engine:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(available())}") from None
    return factory(**options)
