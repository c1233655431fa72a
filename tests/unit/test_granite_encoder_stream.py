"""The encoder's tight stream: each item in its own frames, the attention's blocks gathered.

In the "blocks" stream every item fills whole attention blocks, so the feed-forwards, the
convolution and the norms also run on the padding of each item's last block (100 of 1,600
frames at 30 s, about 190 at 28 s). The "tight" stream gives each item only its frames and
the convolution's slack, and the attention gathers each item's blocks from it. Both must
compute the same function.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.fuse import optimize_for_inference
from callscribe.engines.nar.modeling import ENCODER_STREAMS, GraniteNar, Slots, bucketed, random_model
from tests.speech import noise_waves

# The tiny model: 20 ms frames, attention blocks of 20 frames (0.4 s), pooling windows of 4.
# Lengths around a block's edge, under one frame, and long ones.
SECONDS = [0.01, 0.02, 0.4, 0.42, 0.78, 1.3, 9.7, 2.0]


@pytest.fixture(scope="module")
def tiny() -> GraniteNar:
    return random_model(NarConfig.tiny(), seed=4)


def test_blocks_of_a_small_stream_by_hand():
    # Items of 3, 0 and 5 frames, slots in units of 2 with 1 slack row: starts 0, 4, 6; 12 rows.
    slots = Slots.of([3, 0, 5], unit=2, slack=1)
    assert slots.starts == (0, 4, 6) and slots.total == 12
    rows, real, places = slots.blocks(context=4)
    assert rows.tolist() == [0, 1, 2, 0, 4, 4, 4, 4, 6, 7, 8, 9, 10, 6, 6, 6]
    assert real.tolist() == [[True, True, True, False], [False] * 4, [True] * 4, [True, False, False, False]]
    assert places.tolist() == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]


@pytest.mark.parametrize("seed", range(5))
def test_every_real_frame_sits_once_in_its_own_items_blocks(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 90, size=int(rng.integers(1, 9))).tolist()
    context = 20
    slots = Slots.of(lengths, unit=4, slack=7)
    rows, real, places = slots.blocks(context)
    item_of_row = np.repeat(np.arange(len(lengths)), np.diff(np.append(slots.starts, slots.total)))
    # A block never mixes items, and its real positions are its item's frames in order.
    for block_rows, block_real in zip(rows.reshape(-1, context), real, strict=True):
        assert len(set(item_of_row[block_rows])) == 1
        assert (np.diff(block_rows[block_real]) == 1).all()
    assert sorted(rows[real.ravel()].tolist()) == slots.rows().tolist()
    # Each real row's place brings the block's output back to that row.
    real_rows = slots.rows()
    assert (rows[places[real_rows]] == real_rows).all() and real.ravel()[places[real_rows]].all()
    assert places.shape == (slots.total,) and places.max() < rows.size


@pytest.mark.parametrize("fused", [False, True])
def test_the_tight_stream_computes_what_the_blocks_stream_computes(tiny, fused):
    model = optimize_for_inference(copy.deepcopy(tiny)) if fused else copy.deepcopy(tiny)
    waves = noise_waves(SECONDS, seed=7)
    out = {}
    for stream in ENCODER_STREAMS:
        model.encoder_stream = stream
        out[stream] = model.transcribe(waves, return_logits=True, token_probs=True, route_confidence=None)
    tight, blocks = out["tight"], out["blocks"]
    assert tight.drafts == blocks.drafts and tight.draft_steps == blocks.draft_steps
    assert tight.tokens == blocks.tokens
    for a, b in zip(tight.logits, blocks.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_an_item_in_the_tight_stream_does_not_depend_on_its_batch(tiny):
    waves = noise_waves(SECONDS, seed=8)
    together = tiny.transcribe(waves, return_logits=True)
    for i in (0, 3, 6):
        alone = tiny.transcribe([waves[i]], return_logits=True)
        assert alone.tokens[0] == together.tokens[i] and alone.drafts[0] == together.drafts[i]
        torch.testing.assert_close(alone.logits[0], together.logits[i], atol=1e-5, rtol=1e-4)


def test_the_tight_stream_leaves_out_the_last_blocks_padding(tiny):
    """What the change is for: fewer rows through every per-frame layer of the encoder."""
    waves = noise_waves([1.3, 9.7, 0.5], seed=9)
    frames = [tiny.features.frame_count(w.numel()) for w in waves]
    enc = tiny.cfg.encoder
    seen = {}

    def rows(module, args, out) -> None:
        seen[tiny.encoder_stream] = out.shape[1]

    hook = tiny.encoder.input_proj.register_forward_hook(rows)
    try:
        for stream in ENCODER_STREAMS:
            tiny.encoder_stream = stream
            tiny.transcribe(waves)
    finally:
        hook.remove()
        tiny.encoder_stream = ENCODER_STREAMS[0]
    slack = enc.conv_kernel // 2
    assert seen["tight"] == sum(bucketed(n + slack, enc.pool_window) for n in frames)
    assert seen["blocks"] == sum(bucketed(n + slack, enc.context) for n in frames)
    assert seen["tight"] < seen["blocks"]


def test_an_unknown_stream_is_refused(tiny, monkeypatch):
    from callscribe.engines.granite_native import ENV_ENCODER_STREAM, encoder_stream_wanted

    model = copy.deepcopy(tiny)
    model.encoder_stream = "padded"
    with pytest.raises(ValueError, match="encoder_stream 'padded'"):
        model.transcribe(noise_waves([1.0], seed=1))
    monkeypatch.setenv(ENV_ENCODER_STREAM, "padded")
    with pytest.raises(ValueError, match=ENV_ENCODER_STREAM):
        encoder_stream_wanted()
    assert encoder_stream_wanted("blocks") == "blocks"
    monkeypatch.setenv(ENV_ENCODER_STREAM, "blocks")
    assert encoder_stream_wanted() == "blocks"
    monkeypatch.delenv(ENV_ENCODER_STREAM)
    assert encoder_stream_wanted() == "tight"


def test_the_layouts_benchmark_runs_and_finds_the_same_outputs():
    from benchmarks import encoder_stream

    res = encoder_stream.measure(size="tiny", layers=2, seconds=(1.3, 0.5, 2.1), repeats=1)
    assert res["max_abs_diff"] < 1e-5  # the same function (bitwise the same here, in float32)
    assert res["rows"]["tight"] < res["rows"]["blocks"]
    assert set(res["median_s"]) == set(ENCODER_STREAMS) and res["tight_speedup"] > 0
