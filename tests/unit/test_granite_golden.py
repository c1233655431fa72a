"""The native Granite NAR against the ORIGINAL model's own numbers, stage by stage (float32, CPU).

tests/fixtures/granite-nar-tiny holds a tiny configuration in the remote-code checkpoint layout,
seeded random weights, five real-speech clips and what the original code computes for each clip
run alone, at every stage (its README says what each tensor is and which rule each clip pins:
the n // 320 frame count, the self-conditioning export point, the minimum of 8 editor slots).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from callscribe.engines.nar import checkpoint as ck
from callscribe.engines.nar.modeling import ENCODER_STREAMS, GraniteNar

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "granite-nar-tiny"
ITEMS = range(5)
# The fixture README's tolerances: a conforming float32 implementation lands 2-20x inside them.
ATOL = {"features": 1e-4, "exported": 1e-4, "bpe_logits": 2e-4, "projector": 1e-4, "audio_embeds": 1e-4,
        "editor_logits": 1e-4}
EXACT = ("frames", "draft", "slots", "tokens")


@pytest.fixture(scope="module")
def model() -> GraniteNar:
    return ck.load_model(FIXTURE)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURE / "golden.safetensors"))


def _layer_names(model: GraniteNar) -> list[str]:
    """Golden names of the exported layers, in encoder_layer_indices order (-1 is the last block)."""
    n = model.cfg.encoder.layers
    return [f"exported_layer{i if i >= 0 else n + 1 + i}" for i in model.cfg.encoder.export_layers]


def _stages(model: GraniteNar, audio: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run one item alone and capture every stage the fixture holds, cut to the item's own length."""
    seen: dict[str, object] = {}

    def keep(name: str, what: str):
        def hook(module, args, output=None):
            seen[name] = output if what == "output" else args[0]
        return hook

    handles = [
        model.features.register_forward_hook(keep("features", "output")),
        model.encoder.register_forward_hook(keep("encoder", "output")),
        model.encoder.bpe_ctc.register_forward_hook(keep("bpe_logits", "output")),
        model.projector.register_forward_hook(keep("projector", "output")),
        model.editor.register_forward_pre_hook(keep("editor_in", "input")),
        model.editor.embed.register_forward_pre_hook(keep("slots", "input")),
    ]
    try:
        out = model.transcribe([audio], return_logits=True)
    finally:
        for h in handles:
            h.remove()
    feats, lengths = seen["features"]
    frames = int(lengths[0])
    enc = seen["encoder"]
    w = model.cfg.encoder.pool_window
    steps = (frames + w - 1) // w
    rows = frames // model.cfg.projector.downsample
    width = model.cfg.encoder.hidden
    stages = {
        "frames": torch.tensor(frames),
        "features": feats[0, :frames],
        **dict(zip(_layer_names(model), enc.exported[0, :frames].split(width, dim=-1), strict=True)),
        "bpe_logits": seen["bpe_logits"][:steps],
        "draft": torch.tensor(out.drafts[0], dtype=torch.int64),
        "projector": seen["projector"][:rows],
        "audio_embeds": seen["editor_in"][:rows],
        "slots": seen["slots"],
        "editor_logits": out.logits[0],
        "tokens": torch.tensor(out.tokens[0], dtype=torch.int64),
    }
    return stages


def _mismatches(got: dict[str, torch.Tensor], golden: dict[str, torch.Tensor], item: int) -> list[str]:
    """One line per stage that differs from the original: shapes, and the largest difference where comparable."""
    problems = []
    for stage, value in got.items():
        want = golden[f"item{item}.{stage}"]
        if stage in EXACT:
            if not torch.equal(value.cpu(), want):
                problems.append(f"item{item}.{stage}: {value.tolist()} != original {want.tolist()}")
            continue
        atol = ATOL["exported" if stage.startswith("exported") else stage]
        value = value.detach().float().cpu()
        n = min(value.shape[0], want.shape[0])
        diff = float((value[:n] - want[:n]).abs().max()) if n else float("nan")
        if value.shape != want.shape or not diff <= atol:
            problems.append(f"item{item}.{stage}: shape {tuple(value.shape)} vs {tuple(want.shape)}, "
                            f"max abs diff {diff:.3g} on the first {n} rows (tolerance {atol:g})")
    return problems


@pytest.mark.parametrize("stream", ENCODER_STREAMS)
@pytest.mark.parametrize("item", ITEMS)
def test_the_native_model_computes_what_the_original_computes(model, golden, item, stream):
    model.encoder_stream = stream
    try:
        got = _stages(model, golden[f"item{item}.audio"])
    finally:
        model.encoder_stream = ENCODER_STREAMS[0]
    assert set(got) | {"audio"} == {k.split(".", 1)[1] for k in golden if k.startswith(f"item{item}.")}
    problems = _mismatches(got, golden, item)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("item", ITEMS)
def test_the_encoder_on_the_originals_features(model, golden, item):
    """The encoder alone, from the original's features: separates the export point from the front end."""
    feats = golden[f"item{item}.features"]
    frames = feats.shape[0]
    with torch.no_grad():
        enc = model.encoder(feats[None], torch.ones(1, frames, dtype=torch.bool))
        steps = -(-frames // model.cfg.encoder.pool_window)
        bpe_logits = model.encoder.bpe_ctc(enc.pooled[0, :steps])
    width = model.cfg.encoder.hidden
    got = dict(zip(_layer_names(model), enc.exported[0].split(width, dim=-1), strict=True))
    got["bpe_logits"] = bpe_logits
    problems = _mismatches(got, golden, item)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("item", ITEMS)
def test_each_draft_token_comes_with_its_ctc_step(model, golden, item):
    """Draft token k starts at the BPE CTC step where its run begins in the original's logits: 80 ms a step."""
    best = golden[f"item{item}.bpe_logits"].argmax(-1).tolist()
    blank = model.cfg.blank_id
    expected = [t for t, b in enumerate(best) if b != blank and (t == 0 or best[t - 1] != b)]
    out = model.transcribe([golden[f"item{item}.audio"]])
    assert [best[t] for t in expected] == golden[f"item{item}.draft"].tolist() == out.drafts[0]
    assert out.draft_steps[0] == expected
    assert out.step_s == pytest.approx(0.08)  # 4 encoder frames of 20 ms
    assert out.draft_times(0) == [pytest.approx(0.08 * t) for t in expected]
    assert all(t * 0.08 < golden[f"item{item}.audio"].numel() / 16_000 for t in out.draft_times(0))
