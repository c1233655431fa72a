"""Inference-time fusions (engines/nar/fuse.py) change the kernels, not the results.

The fused tiny fixture model against the unfused one at every stage, and against the original
model's golden numbers (the golden test's own stage capture, run on the fused model); a fused
model refuses to be saved; an item's output still does not depend on its batch.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from callscribe.engines.nar import checkpoint as ck
from callscribe.engines.nar import fuse
from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.modeling import ConvModule, GraniteNar, random_model
from tests.unit.conformer_parts import conv_module
from tests.unit.test_granite_golden import ATOL, EXACT, FIXTURE, _mismatches, _stages

LAYOUTS = fuse.DEPTHWISE_LAYOUTS


@pytest.fixture(scope="module")
def unfused() -> GraniteNar:
    return ck.load_model(FIXTURE)


@pytest.fixture(scope="module")
def fused(unfused) -> GraniteNar:
    return fuse.optimize_for_inference(copy.deepcopy(unfused), depthwise="nhwc")  # the default layout


@pytest.fixture(scope="module")
def fused_ncw(unfused) -> GraniteNar:
    return fuse.optimize_for_inference(copy.deepcopy(unfused), depthwise="ncw")


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURE / "golden.safetensors"))


def _waves(seconds: list[float], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(s * 16_000), generator=g) * 0.1 for s in seconds]


def test_every_layer_is_replaced_by_its_fused_form(fused):
    assert fuse.is_fused(fused)
    assert all(isinstance(b, fuse.FusedConformerBlock) for b in fused.encoder.blocks)
    assert all(isinstance(layer, fuse.FusedQFormerLayer) for layer in fused.projector.layers)
    assert all(isinstance(layer, fuse.FusedEditorLayer) for layer in fused.editor.layers)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())


def _same_stages(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for stage, value in got.items():
        if stage in EXACT:
            assert torch.equal(value, want[stage]), stage
        else:
            atol = ATOL["exported" if stage.startswith("exported") else stage]
            torch.testing.assert_close(value, want[stage], atol=atol, rtol=0, msg=stage)


@pytest.mark.parametrize("item", range(5))
def test_fused_equals_unfused_and_the_original_at_every_stage(unfused, fused, golden, item):
    """The golden fixture through the fused path (the hooks prove the fused modules ran)."""
    audio = golden[f"item{item}.audio"]
    ran = []
    handles = [fused.encoder.blocks[0].conv.register_forward_hook(lambda *a: ran.append("conv")),
               fused.editor.layers[0].register_forward_hook(lambda *a: ran.append("editor"))]
    try:
        got = _stages(fused, audio)
    finally:
        for h in handles:
            h.remove()
    assert "conv" in ran and "editor" in ran
    _same_stages(got, _stages(unfused, audio))
    problems = _mismatches(got, golden, item)
    assert not problems, "\n".join(problems)


def test_the_ncw_depthwise_layout_gives_the_same_stages(unfused, fused_ncw, golden):
    audio = golden["item0.audio"]
    _same_stages(_stages(fused_ncw, audio), _stages(unfused, audio))


def test_an_items_output_does_not_depend_on_its_batch(fused):
    waves = _waves([1.3, 5.2, 2.1, 0.5])
    together = fused.transcribe(waves, return_logits=True)
    for i, w in enumerate(waves):
        alone = fused.transcribe([w], return_logits=True)
        assert (alone.drafts[0], alone.tokens[0]) == (together.drafts[i], together.tokens[i])
        torch.testing.assert_close(alone.logits[0], together.logits[i], atol=1e-5, rtol=1e-4)


def test_token_ids_are_identical_on_a_random_batch():
    model = random_model(NarConfig.tiny(), seed=3)
    waves = _waves([2.0, 6.5, 0.3, 11.0], seed=5)
    want = model.transcribe(waves, draft_tokens_per_s=4.0, return_logits=True)
    got = fuse.optimize_for_inference(model).transcribe(waves, draft_tokens_per_s=4.0, return_logits=True)
    assert got.tokens == want.tokens and got.drafts == want.drafts
    for a, b in zip(got.logits, want.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernel", [15, 4])
def test_batch_norm_folds_into_the_depthwise_convolution(layout, kernel):
    """Odd kernels pad inside the convolution, even ones (asymmetric padding) before it."""
    cfg = dataclasses.replace(NarConfig.tiny().encoder, conv_kernel=kernel)
    torch.manual_seed(0)
    conv = ConvModule(cfg).eval()
    with torch.no_grad():
        bn = conv.batch_norm
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.3)
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.3, 2.0)
        x = torch.randn(3, 37, cfg.hidden)
        valid = torch.arange(37)[None] < torch.tensor([37, 20, 1])[:, None]
        want = conv(x, valid)
        got = fuse.FusedConvModule(conv, layout)(x, valid)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", [15, 4])
def test_the_compiled_depthwise_convolution_is_the_same_sum_of_shifts(kernel):
    """Compiled, the depthwise convolution is written out as shifted multiply-adds (one fused pass):
    the same numbers as the convolution, odd and even kernels, at item ends and past them."""
    conv, cfg = conv_module(kernel, seed=1)
    with torch.no_grad():
        fused = fuse.FusedConvModule(conv)
        x = torch.randn(2, 41, cfg.hidden)
        valid = torch.arange(41)[None] < torch.tensor([41, 9])[:, None]
        want = fused(x, valid)
        compiled = torch.compile(fused, dynamic=True, backend="aot_eager")  # traced (is_compiling), no codegen
        got = compiled(x, valid)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, conv(x, valid), atol=1e-5, rtol=1e-5)


def test_a_fused_model_refuses_to_be_saved_and_the_unfused_one_still_saves(unfused, fused, tmp_path):
    with pytest.raises(fuse.FusedModelError, match="fused for inference"):
        ck.save_checkpoint(fused, tmp_path / "fused")
    assert not (tmp_path / "fused").exists()
    with pytest.raises(fuse.FusedModelError):
        fused.editor.state_dict()
    ck.save_checkpoint(unfused, tmp_path / "unfused")  # the source of the fused copy is untouched
    assert ck.load_model(tmp_path / "unfused").state_dict().keys() == unfused.state_dict().keys()


def test_fusing_needs_eval_mode_and_is_idempotent():
    model = random_model(NarConfig.tiny(), seed=2).train()
    with pytest.raises(ValueError, match="eval"):
        fuse.optimize_for_inference(model)
    model.eval()
    once = fuse.optimize_for_inference(model)
    block = once.encoder.blocks[0]
    assert fuse.optimize_for_inference(once) is once and once.encoder.blocks[0] is block


def test_the_engine_fuses_unless_told_not_to(monkeypatch):
    from callscribe.engines.granite_native import GraniteNarNativeEngine

    monkeypatch.delenv(fuse.ENV_FUSE, raising=False)
    on = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False)
    monkeypatch.setenv(fuse.ENV_FUSE, "0")
    off = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False)
    assert on.fused and fuse.is_fused(on.model)
    assert not off.fused and not fuse.is_fused(off.model)
    waves = _waves([3.0, 0.7])
    a = on.model.transcribe(waves, draft_tokens_per_s=4.0, return_logits=True)
    b = off.model.transcribe(waves, draft_tokens_per_s=4.0, return_logits=True)
    assert a.tokens == b.tokens
    for x, y in zip(a.logits, b.logits, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_an_unknown_depthwise_layout_is_refused(monkeypatch):
    monkeypatch.setenv(fuse.ENV_DEPTHWISE, "nchw-please")
    with pytest.raises(ValueError, match=fuse.ENV_DEPTHWISE):
        fuse.optimize_for_inference(random_model(NarConfig.tiny(), seed=2))
