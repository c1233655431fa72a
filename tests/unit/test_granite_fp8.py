"""Float8 products (engines/nar/fp8.py, CALLSCRIBE_NAR_FP8): what they compute, where they go, and
that a quantized engine still transcribes. Runs on the CPU (torch._scaled_mm has a CPU kernel);
the speed is the GPU check's (`--compile-tunings default+fp8-editor`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from callscribe.engines.granite_native import GraniteNarNativeEngine
from callscribe.engines.nar.fp8 import FP8, FP8_MAX, FP8_PARTS, Fp8Linear, fp8_wanted, quantize_fp8, to_fp8_rows
from tests.speech import noise_waves


def test_rows_round_trip_within_the_formats_rounding():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 96, generator=g) * torch.logspace(-3, 3, 64)[:, None]
    x[5] = 0.0  # an all-zero row
    x[7, 3] = 1e9  # one huge value: its row's scale follows it, nothing overflows
    q, scale = to_fp8_rows(x)
    assert q.dtype == FP8 and scale.shape == (64, 1) and scale.dtype == torch.float32
    back = q.float() * scale
    assert torch.isfinite(back).all() and (back[5] == 0).all()
    # e4m3 keeps 3 mantissa bits: a normal value is off by at most 1/16 of itself; below the
    # smallest normal, by at most half a subnormal step of the row's scale.
    row_max = x.abs().amax(-1, keepdim=True)
    assert ((back - x).abs() <= x.abs() / 16 + row_max * 2.0**-10 / FP8_MAX * 2 + 1e-30).all()
    assert torch.equal(q.float().abs().amax(-1)[[0, 7]], torch.tensor([FP8_MAX, FP8_MAX]))


def test_the_float8_linear_is_the_product_of_its_quantized_operands():
    g = torch.Generator().manual_seed(1)
    src = nn.Linear(64, 48)
    nn.init.normal_(src.weight, std=0.05, generator=g)
    lin = Fp8Linear(src)
    x = torch.randn(3, 7, 64, generator=g)
    got = lin(x)
    assert got.shape == (3, 7, 48) and got.dtype == x.dtype
    qx, sx = to_fp8_rows(x.reshape(-1, 64))
    w = lin.weight_fp8.float() * lin.weight_scale.t()
    want = (qx.float() * sx) @ w.t() + src.bias
    torch.testing.assert_close(got.reshape(-1, 48), want, rtol=1e-5, atol=1e-6)
    # ... and close to the float product it replaces (a few per cent of the output's scale).
    exact = src(x)
    assert (got - exact).abs().max() < 0.05 * exact.abs().max()
    assert not torch.equal(got, exact)


def test_sizes_the_float8_kernels_cannot_take_are_refused_or_kept_exact():
    with pytest.raises(ValueError, match="multiples of 16, not 48 x 40"):
        Fp8Linear(nn.Linear(40, 48))
    # The tiny editor unfused has k and v of 24 outputs each: those stay, the rest are replaced.
    engine = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False, fuse=False,
                                    fp8="editor")
    layer = engine.model.editor.layers[0]
    assert type(layer.k) is nn.Linear and type(layer.v) is nn.Linear
    assert all(isinstance(getattr(layer, n), Fp8Linear) for n in ("q", "o", "gate", "up", "down"))


@pytest.mark.parametrize("setting", list(FP8_PARTS))
def test_quantize_replaces_the_linears_of_the_named_stacks_only(setting):
    engine = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False, fp8=setting)
    model = engine.model
    assert engine.fp8 == setting

    def count(part) -> tuple[int, int]:
        mods = list(part.modules())
        return sum(isinstance(m, Fp8Linear) for m in mods), sum(isinstance(m, nn.Linear) for m in mods)

    enc_fp8, enc_lin = count(model.encoder.blocks)
    ed_fp8, ed_lin = count(model.editor.layers)
    assert (enc_fp8 > 0, enc_lin == 0) == (("encoder" in FP8_PARTS[setting]),) * 2
    assert (ed_fp8 > 0, ed_lin == 0) == (("editor" in FP8_PARTS[setting]),) * 2
    # The vocabulary heads, the input projection, the self-conditioning pair and the Q-Former never change.
    for lin in (model.encoder.bpe_ctc, model.encoder.char_ctc, model.encoder.char_feedback, model.encoder.input_proj,
                model.projector.out, model.projector.fuse):
        assert type(lin) is nn.Linear
    assert count(model.projector)[0] == 0
    assert quantize_fp8(model, setting) == 0  # idempotent: nothing left to replace


@pytest.mark.parametrize("setting", ["editor", "all"])
def test_a_float8_engine_transcribes_close_to_the_exact_one_and_refuses_to_save(setting):
    waves = noise_waves([5.0, 2.5, 4.0], seed=9)
    exact = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False)
    fp8 = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False, fp8=setting)
    a = exact.model.transcribe(waves, draft_tokens_per_s=4.0, return_logits=True)
    b = fp8.model.transcribe(waves, draft_tokens_per_s=4.0, return_logits=True)
    vocab = exact.model.cfg.editor.vocab
    assert len(b.tokens) == 3 and all(0 <= t < vocab for item in b.tokens for t in item)
    # The encoder in float8 changes its states; left exact, the drafts are the exact model's own.
    enc_a = exact.model.encoder.blocks[0].ffn1.up(torch.ones(1, 32))
    enc_b = fp8.model.encoder.blocks[0].ffn1.up(torch.ones(1, 32))
    assert torch.equal(enc_a, enc_b) == (setting == "editor")
    if setting == "editor":
        assert b.drafts == a.drafts and b.draft_steps == a.draft_steps
    for x, y in zip(a.logits, b.logits, strict=True):
        assert x.shape == y.shape and 0 < (x - y).abs().max() < 0.05 * x.abs().max()
    with pytest.raises(RuntimeError, match="fused"):
        fp8.model.state_dict()
    unfused = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False, fuse=False,
                                     fp8=setting)
    with pytest.raises(RuntimeError, match="computes in float8"):
        unfused.model.state_dict()


@pytest.mark.parametrize(("requested", "env", "want"), [(None, "", "off"), (None, "Editor", "editor"),
                                                         ("all", "editor", "all")])
def test_the_fp8_setting_comes_from_the_argument_then_the_environment(monkeypatch, requested, env, want):
    monkeypatch.setenv("CALLSCRIBE_NAR_FP8", env)  # empty reads as unset
    assert fp8_wanted(requested) == want


def test_an_unknown_fp8_setting_is_refused(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_NAR_FP8", "1")
    with pytest.raises(ValueError, match="CALLSCRIBE_NAR_FP8='1': one of off, editor, all"):
        fp8_wanted()


def test_a_transposed_input_reaches_the_kernel_row_major(monkeypatch):
    """The GPU's float8 kernels take only a row-major first operand (the CPU's takes either)."""
    g = torch.Generator().manual_seed(2)
    lin = Fp8Linear(nn.Linear(64, 32))
    x = torch.randn(1, 64, 40, generator=g).transpose(1, 2)  # (1, 40, 64), column-major rows
    seen = []
    real = torch._scaled_mm

    def spy(a, b, **kw):
        seen.append((a.stride(), b.stride()))
        return real(a, b, **kw)

    monkeypatch.setattr(torch, "_scaled_mm", spy)
    got = lin(x)
    assert seen == [((64, 1), (1, 64))]  # a row-major, b column-major
    torch.testing.assert_close(got, lin(x.contiguous()))


def test_float8_is_refused_on_a_card_without_it(monkeypatch):
    from types import SimpleNamespace

    fake = SimpleNamespace(encoder=SimpleNamespace(blocks=[]), editor=SimpleNamespace(layers=[]),
                           parameters=lambda: iter([SimpleNamespace(device=torch.device("cuda", 0))]))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with pytest.raises(ValueError, match="compute capability 8.9 or later.*this one is 8.0"):
        quantize_fp8(fake, "editor")
    assert quantize_fp8(fake, "off") == 0  # off asks nothing of the card
