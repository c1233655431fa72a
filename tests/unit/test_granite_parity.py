"""Editing given drafts (GraniteNar.transcribe's ``drafts``), and the GPU check's slot-for-slot
parity of two builds of the model (benchmarks/parity.py), on the tiny fixture model."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from benchmarks import parity
from callscribe.engines.nar import checkpoint as ck
from callscribe.engines.nar import fuse
from callscribe.engines.nar.modeling import GraniteNar, NarOutput
from tests.unit.test_granite_golden import FIXTURE

RATE = 4.0  # drafts held at 4 tokens/s, as the GPU check holds them


@pytest.fixture(scope="module")
def model() -> GraniteNar:
    return ck.load_model(FIXTURE)


@pytest.fixture(scope="module")
def waves() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.randn(int(s * 16_000), generator=g) * 0.1 for s in (3.0, 1.2, 4.4, 2.0, 0.5)]


def test_editing_its_own_drafts_gives_the_models_own_output(model, waves):
    own = model.transcribe(waves, draft_tokens_per_s=RATE, return_logits=True, token_probs=True)
    given = model.transcribe(waves, return_logits=True, token_probs=True,
                             drafts=list(zip(own.drafts, own.draft_steps, strict=True)))
    assert given.tokens == own.tokens and given.drafts == own.drafts and given.token_times == own.token_times
    for a, b in zip(given.token_probs, own.token_probs, strict=True):
        assert a == pytest.approx(b)
    for a, b in zip(given.logits, own.logits, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_the_editor_edits_the_drafts_it_is_given(model, waves):
    own = model.transcribe(waves, draft_tokens_per_s=RATE, return_logits=True)
    # The first item gets the third's draft: its slots follow that draft, the others are untouched.
    swapped = [(own.drafts[2], own.draft_steps[2])] + list(zip(own.drafts[1:], own.draft_steps[1:], strict=True))
    out = model.transcribe(waves, return_logits=True, drafts=swapped)
    assert out.drafts[0] == own.drafts[2] != own.drafts[0]
    assert out.logits[0].shape[0] == len(model.slot_list(own.drafts[2])) != own.logits[0].shape[0]
    assert out.tokens[1:] == own.tokens[1:]


@pytest.mark.parametrize("kwargs, why", [({"route_confidence": 0.5}, "no routing"),
                                         ({"drafts_of": 4}, r"one \(tokens, steps\) pair per wave")])
def test_given_drafts_are_refused_with_routing_or_in_the_wrong_number(model, waves, kwargs, why):
    own = model.transcribe(waves, draft_tokens_per_s=RATE)
    drafts = list(zip(own.drafts, own.draft_steps, strict=True))[: kwargs.pop("drafts_of", len(waves))]
    with pytest.raises(ValueError, match=why):
        model.transcribe(waves, drafts=drafts, **kwargs)


def test_a_build_computing_the_same_function_agrees_on_every_slot(model, waves):
    fused = fuse.optimize_for_inference(copy.deepcopy(model))
    ref = parity.reference(model, waves, RATE, group=2)  # groups of 2: several passes, a ragged last one
    got = parity.compare(fused, waves, ref, RATE, group=2)
    assert got["chunks"] == got["equal"] == got["drafts_equal"] == len(waves)
    same = got["same_drafts"]
    assert same["slots"] == sum(len(model.slot_list(d)) for d, _ in ref.drafts) > len(waves)
    assert same["slots_equal"] == same["slots"] and same["slot_share"] == 1.0 and same["chunks_equal"] == len(waves)
    assert same["flips"] == 0 and same["flip_gap_max"] is None and same["flips_outside_top_k"] == 0
    assert same["logit_err_max"] < 1e-4 < same["logit_spread_p50"]
    assert same["near_ties"] == 0 and 0 < same["top2_gap_p01"] <= same["top2_gap_p50"]


def test_a_build_computing_something_else_is_told_apart(model, waves):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for layer in other.editor.layers:
            layer.down.weight.mul_(-3.0)  # every editor layer's feed-forward turned around
    ref = parity.reference(model, waves, RATE)
    got = parity.compare(other, waves, ref, RATE)["same_drafts"]
    assert got["slot_share"] < 1 and got["flips"] == got["slots"] - got["slots_equal"] > 0
    assert got["logit_err_p50"] > 0.1 * got["logit_spread_p50"] and got["flip_gap_max"] > 0.1
    assert got["flips_outside_top_k"] > 0  # not near-ties: tokens the reference ranked far down


class _Logits:
    """A stand-in build whose edits give fixed logits (the flip arithmetic, exactly)."""

    def __init__(self, logits: list[torch.Tensor]):
        self.logits = logits

    def transcribe(self, waves, draft_tokens_per_s=None, return_logits=False, drafts=None):
        return NarOutput(tokens=[[int(x) for x in lg.argmax(-1)] for lg in self.logits],
                         drafts=[[1]] * len(waves), draft_steps=[[0]] * len(waves), step_s=0.08,
                         logits=self.logits if return_logits else None)


def test_flips_are_measured_against_the_references_own_gap():
    ref_logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0],   # picks 0
                               [0.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.5]])    # picks 1
    ref = parity.reference(_Logits([ref_logits]), [torch.zeros(1)], None)
    assert ref.top_ids[0][:, 0].tolist() == [0, 1] and ref.top_ids[0].shape == (2, parity.TOP_K)
    got = ref_logits.clone()
    got[0, 2] = 5.5  # slot 0 now picks 2: the reference's third, 2.0 below its best
    got[1, 0] = 9.5  # slot 1 now picks 0: past the reference's top 8, at least 9.0 - 2.0 below its best
    out = parity.compare(_Logits([got]), [torch.zeros(1)], ref, None)["same_drafts"]
    assert out["slots"] == 2 and out["slots_equal"] == 0 and out["flips"] == 2
    assert out["flips_outside_top_k"] == 1 and out["flip_gap_max"] == pytest.approx(7.0)
    assert out["logit_err_max"] == 0.0  # the reference's choices kept their logits
    assert out["top2_gap_p50"] == pytest.approx(0.75)  # gaps 1.0 and 0.5


def test_the_checks_report_gives_the_slot_figures(model, waves, tmp_path):
    from benchmarks import gpu

    ref = parity.reference(model, waves, RATE)
    same = parity.compare(model, waves, ref, RATE)
    smoke = gpu.main(["--smoke", "--budget-s", "0.001", "--out", str(tmp_path / "r.json")])  # a report's frame
    assert smoke == 0
    res = json.loads((tmp_path / "r.json").read_text()) | {"same_tokens": same}
    row = next(line for line in gpu.render(res).splitlines() if line.startswith("| token ids, compiled vs eager"))
    slots = same["same_drafts"]["slots"]
    assert f"equal on {len(waves)} of {len(waves)} real chunks, drafts on {len(waves)}" in row
    assert f"{slots} of {slots} text slots agree (100.00 %)" in row and "0 flips outside" in row
