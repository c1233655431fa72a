"""The tight encoder stream against the blocks stream and against
each item alone, over many items, lengths on a block's edge (the tiny model's block: 20 frames
of 20 ms), routing, with and without the fused model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.fuse import optimize_for_inference
from callscribe.engines.nar.modeling import ENCODER_STREAMS, random_model
from tests.speech import noise_waves


@pytest.fixture(scope="module")
def tiny():
    return random_model(NarConfig.tiny(), seed=11)


def _lengths(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    # Exact multiples of a block (0.4 s), one frame either side, under a frame, long ones.
    edge = [0.4 * k + d for k in (1, 2, 3) for d in (-0.02, 0.0, 0.02)]
    extra = rng.uniform(0.005, 6.0, size=12).round(3).tolist()
    out = edge + extra + [0.005]
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("route", [None, 0.0, 0.15])
@pytest.mark.parametrize("seed", [0, 1])
def test_tight_equals_blocks_for_many_items(tiny, fused, route, seed):
    model = optimize_for_inference(copy.deepcopy(tiny)) if fused else copy.deepcopy(tiny)
    waves = noise_waves(_lengths(seed), seed=seed + 20)
    out = {}
    for stream in ENCODER_STREAMS:
        model.encoder_stream = stream
        out[stream] = model.transcribe(waves, return_logits=route is None, token_probs=True, route_confidence=route)
    a, b = out["tight"], out["blocks"]
    assert a.drafts == b.drafts and a.tokens == b.tokens
    for x, y in zip(a.logits or [], b.logits or [], strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
    # And each item alone, in the tight stream.
    model.encoder_stream = "tight"
    for i in (0, len(waves) // 2, len(waves) - 1):
        alone = model.transcribe([waves[i]], route_confidence=route)
        assert alone.tokens[0] == a.tokens[i] and alone.drafts[0] == a.drafts[i]


@pytest.mark.parametrize("fused", [False, True])
def test_tight_equals_blocks_in_fp8(tiny, fused):
    from callscribe.engines.nar.fp8 import quantize_fp8

    model = optimize_for_inference(copy.deepcopy(tiny)) if fused else copy.deepcopy(tiny)
    try:
        quantize_fp8(model, "all")
    except Exception as exc:  # a torch without float8 matrix products on this CPU
        pytest.skip(f"no fp8 here: {exc}")
    waves = noise_waves([0.4, 0.8, 0.01, 2.3, 1.2, 0.42], seed=5)
    out = {}
    for stream in ENCODER_STREAMS:
        model.encoder_stream = stream
        out[stream] = model.transcribe(waves, return_logits=True)
    assert out["tight"].tokens == out["blocks"].tokens
    for x, y in zip(out["tight"].logits, out["blocks"].logits, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
