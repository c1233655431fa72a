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
# The pod DAG's default (its scheduled runs have no conf): the GPU worker image installs the `gpu`
# extra only, so it has no Whisper; Granite is what its pods are for (docs/granite.md). The native
# engine, the one every GPU figure and the sizing stand for (benchmarks.gpu; docs/deploy.md): the
# reference (transformers' remote code) is not compiled, runs each batch to its end before the next
# and gives no word times or confidence.
POD_DEFAULT_ENGINE = "granite-nar-native"
# What the GPU worker image can run: the pod DAG's form offers these alone (a Whisper run there failed
# every job and spent an attempt of each call).
POD_ENGINES = ("granite-nar", "granite-nar-native")


def pod_default_engine() -> str:
    """The pod DAG's engine for runs without one in their conf: ``CALLSCRIBE_POD_ENGINE``, else
    :data:`POD_DEFAULT_ENGINE` (read when the DAG is parsed; ``granite-nar`` runs the reference)."""
    name = os.environ.get("CALLSCRIBE_POD_ENGINE", "").strip() or POD_DEFAULT_ENGINE
    if name not in POD_ENGINES:
        raise ValueError(f"CALLSCRIBE_POD_ENGINE={name!r} is not an engine the GPU worker image has: one of "
                         f"{', '.join(POD_ENGINES)}")
    return name

# Seconds of packed speech per chunk, per engine; the chunk tasks read it without loading a
# model. Whisper hears 30 s windows, but whisper-tiny misheard more in chunks packed to 30 s
# than to 25 s (make heldout, docs/benchmarks.md). Granite NAR is published on windows of up
# to 30 s and degrades on much longer items (docs/granite.md). CALLSCRIBE_CHUNK_S overrides.
CHUNK_SECONDS: dict[str, float] = {"whisper-tiny": 25.0, "granite-nar": 30.0, "granite-nar-native": 30.0}


# Speech per job when jobs run in GPU pods, for the engines whose speed on a GPU makes the 4 h
# default (batching.JobSizing) a few seconds of work after a pod start, a model load and a
# compile (15 s from the model loaded to its first batch on an H100, warm cache): 200 h is about
# 3.5 minutes at the native engine's 3,500x, 6.6 at IBM's published 1,820x. Other engines
# (whisper-tiny runs at tens of x) keep the default, well inside the transcribe task's timeout.
GPU_POD_JOB_AUDIO_S: dict[str, float] = {"granite-nar": 200 * 3600.0, "granite-nar-native": 200 * 3600.0}

# Padded audio seconds per batch in a GPU pod, for the engines whose speed needs large, length-sorted
# batches: 128 chunks of 30 s, the batch every GPU figure of docs/benchmarks.md was measured at (peak
# about 12 GiB for the native engine on an H100). Other engines, and every CPU, keep
# batching.DEFAULT_BATCH_AUDIO_S (240 s). CALLSCRIBE_BATCH_AUDIO_S overrides both (a smaller card).
GPU_BATCH_AUDIO_S: dict[str, float] = {"granite-nar": 3840.0, "granite-nar-native": 3840.0}


# An override outside these bounds is a mistake: shorter chunks leave no room for a region
# with its context. Granite NAR's editor holds 4096 positions, its audio at 10 Hz plus 2n + 1
# slots for n draft tokens (about 4 a second in speech, more in fast speech or noise): 120 s
# needs about 2,200 of them; a 240 s chunk overruns them and its text is unreliable, with no error.
CHUNK_SECONDS_RANGE = (5.0, 240.0)
MAX_CHUNK_SECONDS: dict[str, float] = {"granite-nar": 120.0, "granite-nar-native": 120.0}


def chunk_seconds(name: str | None) -> float:
    override = os.environ.get("CALLSCRIBE_CHUNK_S")
    if override:
        lo, hi = CHUNK_SECONDS_RANGE
        hi = MAX_CHUNK_SECONDS.get(name or DEFAULT_ENGINE, hi)
        value = float(override)
        if not lo <= value <= hi:
            raise ValueError(f"CALLSCRIBE_CHUNK_S={override}: a chunk must be {lo:g} to {hi:g} seconds"
                             + (f" for {name}" if name in MAX_CHUNK_SECONDS else ""))
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
