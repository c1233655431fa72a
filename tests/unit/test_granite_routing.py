"""Confidence routing in the native Granite NAR: a chunk whose CTC draft is confident at every step
skips the projector and the editor, and its draft is its transcript (off by default)."""

from __future__ import annotations

import pytest
import torch

from callscribe.engines.granite_native import GraniteNarNativeEngine, route_confidence_wanted
from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.modeling import GraniteNar, collapse_with_slots, random_model, slot_times, token_spans
from tests.speech import noise_waves


@pytest.fixture(scope="module")
def tiny() -> GraniteNar:
    return random_model(NarConfig.tiny(), seed=3)


WAVES = noise_waves([2.5, 4.0, 1.3, 6.2, 3.1, 0.9])


def _draft_step_probs(model: GraniteNar, wave: torch.Tensor) -> list[float]:
    """An independent oracle: the item alone, padded, its CTC softmax maxima per step."""
    feats, lengths = model.features([wave])
    n = int(lengths[0])
    valid = torch.zeros(1, feats.shape[1], dtype=torch.bool)
    valid[0, :n] = True
    enc = model.encoder(feats, valid)
    w = model.cfg.encoder.pool_window
    probs = model.encoder.bpe_ctc(enc.pooled[0, : (n + w - 1) // w]).float().softmax(-1).amax(-1)
    return probs.tolist()


def test_without_a_confident_draft_routing_changes_nothing(tiny):
    plain = tiny.transcribe(WAVES, token_probs=True)
    routed = tiny.transcribe(WAVES, token_probs=True, route_confidence=1.0)  # random weights: never that sure
    assert routed.routed == [False] * len(WAVES) and plain.routed == [] and plain.draft_confidence == []
    assert routed.tokens == plain.tokens and routed.token_times == plain.token_times
    assert routed.token_probs == plain.token_probs


def test_an_edited_tokens_time_comes_from_its_editor_slot(tiny, monkeypatch):
    """The edited path the routed one sits beside: each final token is timed by the slot its run
    starts at in the editor's output (checked against the returned logits). A tiny random editor
    echoes its draft, where slot and draft times agree: its head is replaced by one that changes
    token every three slots, so runs start at insertion slots too."""
    vocab, blank = tiny.cfg.editor.vocab, tiny.cfg.blank_id

    def head(hidden: torch.Tensor) -> torch.Tensor:
        ids = (torch.arange(hidden.shape[0]) // 3) % 5 + 1
        ids = torch.where(ids == blank, ids + 5, ids)
        logits = torch.full((hidden.shape[0], vocab), -10.0)
        logits[torch.arange(hidden.shape[0]), ids] = 10.0
        return logits

    monkeypatch.setattr(tiny.editor, "text_products", head)
    out = tiny.transcribe(WAVES, return_logits=True, draft_tokens_per_s=4.0)
    step = tiny.cfg.draft_step_s
    for i, wave in enumerate(WAVES):
        kept, slots = collapse_with_slots(out.logits[i].argmax(-1).tolist(), tiny.cfg.blank_id)
        starts = slot_times(slots, [round(s * step, 6) for s in out.draft_steps[i]])
        assert any(s % 2 == 0 for s in slots[1:]) and out.tokens[i] != out.drafts[i]
        assert out.tokens[i] == kept and len(out.token_times[i]) == len(kept)
        assert out.token_times[i] == token_spans(starts, step, wave.numel() / 16_000)


def test_a_drafts_confidence_is_its_least_sure_step(tiny):
    out = tiny.transcribe(WAVES, route_confidence=1.0)
    for wave, conf in zip(WAVES, out.draft_confidence, strict=True):
        with torch.inference_mode():
            assert conf == pytest.approx(min(_draft_step_probs(tiny, wave)), rel=1e-4)


def test_confident_items_keep_their_draft_and_the_others_are_edited_as_before(tiny):
    plain = tiny.transcribe(WAVES, token_probs=True)
    conf = tiny.transcribe(WAVES, route_confidence=1.0).draft_confidence
    threshold = sorted(conf)[len(conf) // 2]  # the more confident half routes
    out = tiny.transcribe(WAVES, token_probs=True, route_confidence=threshold)
    assert out.routed == [c >= threshold for c in conf] and 0 < sum(out.routed) < len(WAVES)
    step = tiny.cfg.draft_step_s
    for i, wave in enumerate(WAVES):
        if out.routed[i]:
            assert out.tokens[i] == out.drafts[i] == plain.drafts[i]
            starts = [round(s * step, 6) for s in out.draft_steps[i]]
            assert out.token_times[i] == token_spans(starts, step, wave.numel() / 16_000)
            with torch.inference_mode():
                probs = _draft_step_probs(tiny, wave)
            assert out.token_probs[i] == pytest.approx([probs[s] for s in out.draft_steps[i]], rel=1e-4)
        else:
            assert out.tokens[i] == plain.tokens[i] and out.token_times[i] == plain.token_times[i]
            assert out.token_probs[i] == pytest.approx(plain.token_probs[i], rel=1e-5)


def test_a_routed_batch_never_reaches_the_projector_or_the_editor(tiny, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("called")

    monkeypatch.setattr(tiny.projector, "forward", boom)
    monkeypatch.setattr(tiny.editor, "forward", boom)
    out = tiny.transcribe(WAVES, route_confidence=1e-9, token_probs=True)
    assert all(out.routed) and out.tokens == out.drafts
    assert [len(p) for p in out.token_probs] == [len(t) for t in out.tokens]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_an_item_with_no_draft_steps_routes_on_its_own_probabilities(tiny, order):
    """An item under one encoder frame has no CTC step: its held draft's fillers must not read
    the next item's probabilities, nor past the batch's end (found by review)."""
    waves = [WAVES[0], torch.zeros(160)]  # 10 ms: no encoder frame
    waves = [waves[i] for i in order]
    short = order.index(1)
    out = tiny.transcribe(waves, draft_tokens_per_s=4.0, token_probs=True, route_confidence=0.5)
    assert out.draft_confidence[short] == 0.0 and not out.routed[short]
    alone = tiny.transcribe([waves[1 - short]], draft_tokens_per_s=4.0, token_probs=True, route_confidence=0.5)
    assert out.draft_confidence[1 - short] == alone.draft_confidence[0]
    routed = tiny.transcribe(waves, draft_tokens_per_s=4.0, token_probs=True, route_confidence=1e-9)
    assert routed.routed[short] is False and len(routed.token_probs[short]) == len(routed.tokens[short])
    assert routed.tokens[1 - short] == routed.drafts[1 - short]


def test_routing_and_editor_logits_do_not_mix(tiny):
    with pytest.raises(ValueError, match="no editor logits"):
        tiny.transcribe(WAVES[:1], route_confidence=0.5, return_logits=True)


@pytest.mark.parametrize(("raw", "value"), [("", None), ("off", None), ("0.9", 0.9), ("1", 1.0)])
def test_the_routing_setting(monkeypatch, raw, value):
    monkeypatch.setenv("CALLSCRIBE_NAR_ROUTE_CONFIDENCE", raw)
    assert route_confidence_wanted() == value


@pytest.mark.parametrize("raw", ["0", "1.5", "-0.2", "nan", "yes"])
def test_a_routing_setting_that_is_not_a_probability_is_refused(monkeypatch, raw):
    monkeypatch.setenv("CALLSCRIBE_NAR_ROUTE_CONFIDENCE", raw)
    with pytest.raises(ValueError, match="a probability in"):
        route_confidence_wanted()


def test_the_engine_routes_and_counts_what_it_routed(monkeypatch):
    monkeypatch.delenv("CALLSCRIBE_NAR_ROUTE_CONFIDENCE", raising=False)
    engine = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False,
                                    route_confidence=1e-9)
    segments = engine.run(engine.prepare([w.numpy() for w in WAVES[:3]]))
    assert engine.routed_items == 3 and len(segments) == 3
    default = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False)
    assert default.route_confidence is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [1.0, 8.0, 3.0])
def test_top_probability_is_the_softmax_maximum_in_float32(dtype, scale):
    from callscribe.engines.nar.modeling import top_probability

    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(37, 500, generator=g) * 6).to(dtype)
    logits[3] = logits[3, 0]  # a row of ties: every class equally likely
    best = logits.argmax(-1)
    got = top_probability(logits, best, scale, rows=8)  # several slices, the last one short
    x = logits.double() / scale
    want = torch.exp(x.amax(-1) - torch.logsumexp(x, -1))
    assert got.dtype == torch.float32 and got.shape == (37,)
    torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=1e-9)
    assert got[3] == pytest.approx(1 / 500, rel=1e-6)
    assert top_probability(logits[:0], best[:0], scale).shape == (0,)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [1.0, 8.0, 3.0])
def test_best_and_top_gives_the_argmax_and_its_probability(compiled, dtype, scale):
    """The compiled engine's head reduction: the same argmax, and the same probability as top_probability."""
    from callscribe.engines.nar.modeling import best_and_top, top_probability

    fn = torch.compile(best_and_top, dynamic=True) if compiled else best_and_top
    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(37, 500, generator=g) * 6).to(dtype)
    logits[3] = logits[3, 0]  # a row of ties: the first class, probability 1/500
    best, top = fn(logits, scale)
    assert torch.equal(best, logits.argmax(-1)) and top.dtype == torch.float32
    x = logits.double() / scale
    torch.testing.assert_close(top.double(), torch.exp(x.amax(-1) - torch.logsumexp(x, -1)), rtol=2e-6, atol=1e-9)
    torch.testing.assert_close(top, top_probability(logits, best, scale), rtol=2e-6, atol=1e-9)
    assert best[3] == 0 and top[3] == pytest.approx(1 / 500, rel=1e-6)
