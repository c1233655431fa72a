"""The native Granite NAR implementation on a CPU: tiny random models, end to end.

What is checked here holds for any size: audio to token ids; an item's output does not
depend on its batch; the packed editor attention equals attention computed item by item
on a padded batch; the checkpoint name mapping round-trips; features match an independent
mel filterbank. Numbers against the real checkpoint need the weights: `callscribe parity`.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from callscribe.engines.nar import checkpoint as ck
from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.config_json import read_config
from callscribe.engines.nar.features import LogMelFeatures, mel_filterbank
from callscribe.engines.nar.modeling import GraniteNar, collapse_with_slots, random_model
from callscribe.engines.nar.packed import cu_seqlens_for, per_item_attention, varlen_attention
from tests.speech import noise_waves


@pytest.fixture(scope="module")
def tiny() -> GraniteNar:
    return random_model(NarConfig.tiny(), seed=1)


# ---------------------------------------------------------------- end to end


def test_tiny_model_turns_audio_into_token_ids(tiny):
    cfg = tiny.cfg
    out = tiny.transcribe(noise_waves([3.0, 7.5, 0.4]), return_logits=True)
    assert len(out.tokens) == len(out.drafts) == len(out.draft_steps) == 3
    for i, (tokens, draft, logits) in enumerate(zip(out.tokens, out.drafts, out.logits, strict=True)):
        assert all(0 <= t < cfg.editor.vocab and t != cfg.blank_id for t in tokens)
        assert all(t != cfg.blank_id for t in draft)
        assert logits.shape == (max(2 * len(draft) + 1, cfg.min_slots), cfg.editor.vocab)
        assert torch.isfinite(logits).all()
        steps = out.draft_steps[i]
        assert len(steps) == len(draft) and steps == sorted(set(steps))  # one step per token, in order
        assert out.draft_times(i) == [round(s * 0.08, 6) for s in steps]


def test_each_output_token_has_its_probability(tiny):
    """token_probs: the editor's softmax maximum at the slot each final token's run starts at."""
    waves = noise_waves([3.0, 1.2])
    out = tiny.transcribe(waves, return_logits=True, token_probs=True)
    assert [len(p) for p in out.token_probs] == [len(t) for t in out.tokens]
    for tokens, probs, logits in zip(out.tokens, out.token_probs, out.logits, strict=True):
        softmax = logits.softmax(-1)
        ids = logits.argmax(-1).tolist()
        kept, slots = collapse_with_slots(ids, tiny.cfg.blank_id)
        assert kept == tokens
        assert probs == pytest.approx([float(softmax[s].max()) for s in slots], rel=1e-4)
        assert all(0 < p <= 1 for p in probs)
    plain = tiny.transcribe(waves)
    assert plain.tokens == out.tokens and plain.token_probs == []  # asked for only; the ids do not change


def test_the_engines_confidence_is_the_mean_token_probability():
    from callscribe.engines.granite_native import mean_probability

    assert mean_probability([0.5, 1.0]) == 0.75 and mean_probability([]) is None


def test_a_held_draft_has_the_asked_length(tiny):
    out = tiny.transcribe(noise_waves([2.0, 5.0]), draft_tokens_per_s=4.0, return_logits=True)
    assert [len(d) for d in out.drafts] == [8, 20]
    assert [len(s) for s in out.draft_steps] == [8, 20]
    assert [lg.shape[0] for lg in out.logits] == [17, 41]  # 2n + 1 text slots


def test_an_items_output_does_not_depend_on_its_batch(tiny):
    waves = noise_waves([1.3, 9.7, 4.1, 0.5])
    together = tiny.transcribe(waves, return_logits=True)
    for i, w in enumerate(waves):
        alone = tiny.transcribe([w], return_logits=True)
        assert alone.drafts[0] == together.drafts[i]
        assert alone.draft_steps[0] == together.draft_steps[i]
        assert alone.tokens[0] == together.tokens[i]
        torch.testing.assert_close(alone.logits[0], together.logits[i], atol=1e-5, rtol=1e-4)
    reordered = tiny.transcribe(waves[::-1], return_logits=True)
    torch.testing.assert_close(reordered.logits[0], together.logits[3], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_non_finite_item_leaves_the_item_before_it_alone(tiny, fused, bad):
    """Items lie end to end in one stream: the convolution over an item's padding frames reads the next
    item's first frames, and attention gives those padding frames zero weight, which a NaN turns into
    NaN. Each block's padding frames are zeroed, so a broken item breaks only itself."""
    from callscribe.engines.nar.fuse import optimize_for_inference

    model = optimize_for_inference(copy.deepcopy(tiny)) if fused else tiny
    good, broken = noise_waves([1.0, 1.0], seed=5)  # 1 s: 50 frames in 60 (the tiny model's 20-frame blocks)
    broken[8000] = float(bad)
    alone = model.transcribe([good], return_logits=True)
    together = model.transcribe([good, broken], return_logits=True)
    assert torch.isfinite(alone.logits[0]).all()
    assert together.tokens[0] == alone.tokens[0]
    torch.testing.assert_close(together.logits[0], alone.logits[0], atol=1e-5, rtol=1e-4)


def _valid(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """A padded batch's mask of real frames."""
    return torch.arange(size)[None, :] < lengths[:, None]


def test_padding_is_masked_in_the_encoder(tiny):
    """Without the masks an item's last frames would see its batch neighbours' padding."""
    short, long_ = noise_waves([1.0, 6.0], seed=3)
    feats, lengths = tiny.features([short, long_])
    alone_feats, alone_len = tiny.features([short])
    with torch.no_grad():
        batched = tiny.encoder(feats, _valid(lengths, feats.shape[1]))
        alone = tiny.encoder(alone_feats, _valid(alone_len, alone_feats.shape[1]))
    n = int(alone_len[0])
    torch.testing.assert_close(batched.exported[0, :n], alone.exported[0, :n], atol=1e-5, rtol=1e-4)


def test_slots_interleave_blanks_and_keep_a_minimum():
    model = GraniteNar(NarConfig.tiny())
    b = model.cfg.blank_id
    assert model.slot_list([5, 7]) == [b, 5, b, 7, b, b, b, b]
    ten = list(range(1, 11))
    slots = model.slot_list(ten)
    assert len(slots) == 21 and slots[1::2] == ten and set(slots[0::2]) == {b}
    assert collapse_with_slots([b, 3, 3, b, 3, 4, 4, b], b)[0] == [3, 3, 4]


def test_the_minimum_of_slots_comes_from_the_config():
    cfg = NarConfig.tiny()
    cfg.min_slots = 12
    model = GraniteNar(cfg)
    assert len(model.slot_list([5, 7])) == 12
    assert len(model.slot_list(list(range(1, 8)))) == 15  # 2n + 1 once above the minimum


def test_each_draft_token_keeps_the_step_its_run_starts_at():
    b = 9
    ids, steps = collapse_with_slots([b, 3, 3, b, 3, 4, 4, b, b, 5], b)
    assert ids == [3, 3, 4, 5] and steps == [1, 4, 5, 9]
    ids, steps = collapse_with_slots([b, b], b)
    assert ids == [] and steps == []
    cfg = NarConfig.full()
    assert cfg.frame_s == pytest.approx(0.02) and cfg.draft_step_s == pytest.approx(0.08)


def test_a_clip_under_one_encoder_frame_still_runs(tiny):
    """Under 320 samples the original keeps no frame at all: an empty draft, the minimum of slots."""
    out = tiny.transcribe(noise_waves([0.01, 1.0]), return_logits=True)
    assert out.drafts[0] == [] and out.draft_steps[0] == []
    assert out.logits[0].shape == (tiny.cfg.min_slots, tiny.cfg.editor.vocab)
    assert torch.isfinite(out.logits[0]).all()
    alone = tiny.transcribe(noise_waves([0.01]), return_logits=True)
    torch.testing.assert_close(alone.logits[0], out.logits[0], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- packed attention


def _padded_reference(q, k, v, lengths, scale):
    """Attention item by item on a zero-padded batch with a key mask: an independent path."""
    n_items, longest = len(lengths), max(lengths)
    heads, kv_heads, d = q.shape[1], k.shape[1], q.shape[2]
    qp = torch.zeros(n_items, heads, longest, d)
    kp = torch.zeros(n_items, heads, longest, d)
    vp = torch.zeros(n_items, heads, longest, d)
    mask = torch.zeros(n_items, 1, longest, longest, dtype=torch.bool)
    start = 0
    for i, n in enumerate(lengths):
        qp[i, :, :n] = q[start : start + n].transpose(0, 1)
        kp[i, :, :n] = k[start : start + n].transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        vp[i, :, :n] = v[start : start + n].transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        mask[i, :, :, :n] = True
        start += n
    scores = (qp @ kp.transpose(-1, -2)) * scale
    out = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ vp
    return torch.cat([out[i, :, :n].transpose(0, 1) for i, n in enumerate(lengths)])


@pytest.mark.parametrize("lengths", [[5], [3, 11, 1, 7], [16, 16]])
def test_packed_attention_equals_a_per_item_reference(lengths):
    g = torch.Generator().manual_seed(len(lengths))
    total = sum(lengths)
    q = torch.randn(total, 8, 16, generator=g)
    k = torch.randn(total, 2, 16, generator=g)  # grouped queries: 4 query heads per key head
    v = torch.randn(total, 2, 16, generator=g)
    cu = cu_seqlens_for(lengths)
    got = varlen_attention(q, k, v, cu, max(lengths), scale=0.25)
    torch.testing.assert_close(got, _padded_reference(q, k, v, lengths, 0.25), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_item_attention(q, k, v, cu, 0.25), got)
    assert cu.tolist() == [0, *np.cumsum(lengths).tolist()]


def test_packing_keeps_items_apart():
    """Changing one item's keys changes no other item's output."""
    q, k, v = (torch.randn(12, 4, 8) for _ in range(3))
    cu = cu_seqlens_for([5, 7])
    before = varlen_attention(q, k, v, cu, 7, 0.3)
    k2 = k.clone()
    k2[5:] += torch.randn(7, 4, 8)
    after = varlen_attention(q, k2, v, cu, 7, 0.3)
    torch.testing.assert_close(after[:5], before[:5])
    assert not torch.allclose(after[5:], before[5:])


# ---------------------------------------------------------------- checkpoint names


def test_the_name_mapping_round_trips_every_tensor(tiny):
    native = list(tiny.state_dict())
    mapped = [ck.to_checkpoint_name(n) for n in native]
    assert len(set(mapped)) == len(native)  # a bijection
    assert [ck.to_native_name(m) for m in mapped] == native
    # Names of the published layout (pinned revision), spot-checked.
    for name in ("encoder.layers.0.attn.to_kv.weight", "encoder.layers.3.conv.depth_conv.conv.weight",
                 "encoder.layers.1.conv.batch_norm.running_var", "encoder.out_bpe.bias", "encoder.out_mid.weight",
                 "projector.qformer.layers.1.cross_attention.o_proj.bias", "projector.window_positions",
                 "projector.query", "projector.layer_norms.3.weight", "language_model.model.embed_tokens.weight",
                 "language_model.model.layers.1.mlp.gate_proj.weight", "language_model.model.norm.weight"):
        assert name in mapped, name
    assert ck.to_native_name("language_model.lm_head.weight") is None  # tied to the embedding
    with pytest.raises(KeyError):
        ck.to_native_name("encoder.layers.0.attn.something_new.weight")


def test_a_saved_checkpoint_loads_back_identically(tiny, tmp_path):
    ck.save_checkpoint(tiny, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert read_config(cfg) == tiny.cfg
    loaded = ck.load_model(tmp_path)
    waves = noise_waves([2.2, 0.9])
    a, b = tiny.transcribe(waves, return_logits=True), loaded.transcribe(waves, return_logits=True)
    assert a.tokens == b.tokens
    for x, y in zip(a.logits, b.logits, strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_a_checkpoint_that_does_not_fit_says_what_is_wrong(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    ck.save_checkpoint(tiny, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["projector.query"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ck.CheckpointMismatch, match="projector.queries"):
        ck.load_model(tmp_path)


def test_the_full_config_has_the_published_sizes():
    with torch.device("meta"):
        model = GraniteNar(NarConfig.full())
    count = {part: sum(p.numel() for p in getattr(model, part).parameters())
             for part in ("encoder", "projector", "editor")}
    assert 0.50e9 < count["encoder"] < 0.58e9  # ~543M
    assert 0.07e9 < count["projector"] < 0.09e9  # ~80M
    assert 1.5e9 < count["editor"] < 1.7e9  # ~1.6B


# ---------------------------------------------------------------- features


def test_mel_filters_match_an_independent_implementation():
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(num_frequency_bins=257, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                          sampling_rate=16_000, norm=None, mel_scale="htk")
    np.testing.assert_allclose(mel_filterbank(16_000, 512, 80).numpy(), ref, atol=1e-5)


def test_features_are_the_same_alone_or_batched():
    feats = LogMelFeatures(NarConfig().features)
    a, b = noise_waves([1.0, 3.7], seed=5)
    x, lengths = feats([a, b])
    assert lengths.tolist() == [50, 185]  # samples // 320: 2 * (samples // 320) mel frames, stacked in pairs
    assert x.shape == (2, 185, 160)
    alone, _ = feats([a])
    torch.testing.assert_close(x[0, :50], alone[0])
    # The per-utterance ceiling: nothing more than 8 (log10 units) below the item's maximum.
    assert float(alone.max() - alone.min()) <= 8 / 4 + 1e-5


@pytest.mark.parametrize(("samples", "frames"), [(123_680, 386), (4_000, 12), (6_400, 20), (319, 0), (320, 1)])
def test_an_item_has_samples_over_320_encoder_frames(samples, frames):
    """n // 320, also when n // 160 is odd: the original drops the last odd mel frame (and the centred extra)."""
    feats = LogMelFeatures(NarConfig().features)
    x, lengths = feats([torch.randn(samples) * 0.1, torch.randn(16_000) * 0.1])
    assert lengths.tolist() == [frames, 50] and x.shape[1] == max(frames, 50)


def test_the_ceiling_comes_from_the_kept_mel_frames_only():
    """A burst that only the dropped last mel frame sees must not move any kept feature (via max - 8)."""
    feats = LogMelFeatures(NarConfig().features)
    g = torch.Generator().manual_seed(4)
    quiet = torch.randn(6_550, generator=g) * 0.01  # 20 frames keep mel frames 0..39 (samples < 6496)
    burst = quiet.clone()
    burst[6_500:] = torch.randn(50, generator=g) * 1e3  # only mel frame 40, which is dropped
    x, lengths = feats([quiet, burst])
    assert lengths.tolist() == [20, 20]
    torch.testing.assert_close(x[0], x[1], atol=1e-5, rtol=1e-5)


def test_features_of_a_tone_peak_in_its_mel_band():
    feats = LogMelFeatures(NarConfig().features)
    t = torch.arange(16_000) / 16_000
    x, _ = feats([torch.sin(2 * torch.pi * 1000 * t)])
    mels = x[0, 10, :80]  # first of the two stacked frames
    centre = F.pad(mel_filterbank(16_000, 512, 80), (0, 0))[32]  # the 1000 Hz FFT bin
    assert int(mels.argmax()) == int(centre.argmax())


# ---------------------------------------------------------------- the engine, the bench and parity


def _tiny_checkpoint(folder, seed: int = 1):
    from tokenizers import Tokenizer, models, pre_tokenizers

    model = random_model(NarConfig.tiny(), seed=seed)
    ck.save_checkpoint(model, folder)
    vocab = {f"w{i}": i for i in range(63)} | {"<eos>": 63}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<eos>"])
    tok.save(str(folder / "tokenizer.json"))
    return model


def test_the_engine_loads_a_checkpoint_folder_and_decodes_text(tmp_path):
    from callscribe.engines import create
    from callscribe.samples import sample_files

    model = _tiny_checkpoint(tmp_path)
    engine = create("granite-nar-native", path=tmp_path, device="cpu")
    import soundfile as sf
    import soxr

    x, sr = sf.read(str(sample_files()[0]), dtype="float32", always_2d=True)
    chunk = soxr.resample(x[: sr * 4, 0], sr, 16_000).astype(np.float32)
    segments = engine.transcribe([chunk, chunk[:16_000]])
    expected = model.transcribe([torch.from_numpy(chunk), torch.from_numpy(chunk[:16_000])])
    for segs, ids, dur in zip(segments, expected.tokens, (4.0, 1.0), strict=True):
        text = " ".join(f"w{i}" for i in ids)
        assert [s.text for s in segs] == ([text] if text else [])
        assert all(s.start == 0.0 and abs(s.end - dur) < 0.01 for s in segs)


def test_the_engine_names_what_a_model_folder_lacks(tmp_path):
    from callscribe.engines import create
    from callscribe.engines.granite import ModelDirError

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelDirError, match="tokenizer.json.*model.safetensors"):
        create("granite-nar-native", path=tmp_path)


def test_parity_of_a_model_with_itself_and_with_another(tmp_path):
    from callscribe.dev.parity import run_parity
    from callscribe.engines.granite_native import GraniteNarNativeEngine
    from callscribe.samples import sample_dir

    _tiny_checkpoint(tmp_path / "a", seed=1)
    _tiny_checkpoint(tmp_path / "b", seed=2)
    a = GraniteNarNativeEngine(path=tmp_path / "a", device="cpu")
    a2 = GraniteNarNativeEngine(path=tmp_path / "a", device="cpu")
    b = GraniteNarNativeEngine(path=tmp_path / "b", device="cpu")
    same = run_parity(a, a2, sample_dir(), batch=4)
    assert same.chunks > 3 and same.exact_match == 1.0 and same.token_agreement == 1.0
    assert same.max_logit_diff == 0.0 and same.logits_compared == same.chunks and same.wer_between == 0.0
    assert same.wer_reference == same.wer_native is not None  # the labels are there; both read the same
    other = run_parity(a, b, sample_dir(), batch=4)
    assert other.exact_match < 1.0 and other.token_agreement < 1.0
    assert other.max_logit_diff is None or other.max_logit_diff > 0
    assert same.batch == 4 and "batch dependence" in same.note  # batched figures say what they include


def test_parity_runs_one_chunk_per_batch_by_default():
    import inspect

    from callscribe.cli import build_parser
    from callscribe.dev.parity import run_parity

    assert inspect.signature(run_parity).parameters["batch"].default == 1
    assert build_parser().parse_args(["parity", "--model", "m"]).batch == 1


def test_parity_hands_engines_float_audio_as_the_batch_runner_does():
    from callscribe.audio import as_float
    from callscribe.dev.parity import _run

    seen = []

    class Recorder:
        def token_outputs(self, batch):
            seen.extend(batch)
            return [None] * len(batch)

    chunks = [np.array([0, 16384, -32768], np.int16), np.array([8192, -8192], np.int16)]
    _run(Recorder(), chunks, batch=4)
    assert all(x.dtype == np.float32 for x in seen)
    assert sorted(x.tolist() for x in seen) == sorted(as_float(c).tolist() for c in chunks)
    assert sorted(x.tolist() for x in seen)[0] == [0.0, 0.5, -1.0]


def test_bench_runs_the_random_weight_architecture():
    import json as _json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "callscribe.cli", "bench", "--engine", "granite-nar-native", "--random-weights",
         "--config", "tiny", "--batch", "3", "--chunk-s", "6", "--batches", "2", "--json"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = _json.loads(out.stdout)
    assert result["source"] == "random weights (tiny)" and result["batch"] == 3 and result["chunk_s"] == 6
    assert len(result["seconds_per_batch"]) == 2 and result["rtfx"] > 0


@pytest.mark.parametrize(("requested", "env", "want"), [
    (None, "", "default"), (None, "tuned", "tuned"), ("autotune", "tuned", "autotune"), (None, " ", "default")])
def test_the_compile_tuning_comes_from_the_argument_then_the_setting(monkeypatch, requested, env, want):
    from callscribe.engines.granite_native import COMPILE_TUNING, compile_tuning_wanted

    monkeypatch.setenv("CALLSCRIBE_NAR_COMPILE_TUNING", env)  # empty reads as unset
    assert compile_tuning_wanted(requested) == want and want in COMPILE_TUNING


@pytest.mark.parametrize("tuning", ["default", "tuned", "autotune", "autotune-tma"])
def test_every_compile_tuning_names_options_inductor_has(tuning):
    """A misspelt option would fail only at the GPU's first compile: inductor checks the names here."""
    import torch._inductor.config as inductor

    from callscribe.engines.granite_native import COMPILE_TUNING

    with inductor.patch(COMPILE_TUNING[tuning]):
        for name, value in COMPILE_TUNING[tuning].items():
            section, _, key = name.rpartition(".")
            assert getattr(getattr(inductor, section) if section else inductor, key) == value


def test_an_unknown_compile_tuning_is_refused(monkeypatch):
    from callscribe.engines.granite_native import compile_tuning_wanted

    monkeypatch.setenv("CALLSCRIBE_NAR_COMPILE_TUNING", "max-autotune")
    with pytest.raises(ValueError, match="CALLSCRIBE_NAR_COMPILE_TUNING='max-autotune': one of default, tuned"):
        compile_tuning_wanted()


def test_a_production_shape_warm_up_runs_first_then_the_small_batch(monkeypatch):
    from callscribe.engines.granite_native import (
        WARM_UP_BATCH_SAMPLES,
        WARM_UP_SAMPLES,
        GraniteNarNativeEngine,
        warm_up_batches,
    )

    assert warm_up_batches(0) == [list(WARM_UP_SAMPLES)]
    big, small = warm_up_batches(3840)
    assert small == list(WARM_UP_SAMPLES) and set(big) == set(WARM_UP_BATCH_SAMPLES)
    assert 3840 - max(WARM_UP_BATCH_SAMPLES) / 16_000 < sum(big) / 16_000 <= 3840
    assert len(big) == 132 and big[:3] == [WARM_UP_BATCH_SAMPLES[0], WARM_UP_BATCH_SAMPLES[1], WARM_UP_BATCH_SAMPLES[0]]
    assert warm_up_batches(1)[0] == [WARM_UP_BATCH_SAMPLES[0]]  # at least one item
    engine = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False,
                                    warm_up_audio_s=60)
    seen = []
    monkeypatch.setattr(engine.model, "transcribe", lambda waves, **kw: seen.append([w.numel() for w in waves]))
    engine.warm_up()
    assert seen == warm_up_batches(60) and len(seen[0]) == 2


def test_a_production_shape_warm_up_compiles_into_a_cache_folder_of_its_own(monkeypatch, tmp_path):
    from callscribe.engines.granite_native import cache_dir_for_warm_up, use_cache_for_warm_up

    base = str(tmp_path / "inductor")
    assert cache_dir_for_warm_up(None, 3840) is None and cache_dir_for_warm_up("", 3840) is None
    assert cache_dir_for_warm_up(base, 3840) == f"{base}/warm-up-3840s"
    assert cache_dir_for_warm_up(base + "/", 60.5) == f"{base}/warm-up-60.5s"
    # Set twice in one process, or for another size: beside, never nested.
    assert cache_dir_for_warm_up(f"{base}/warm-up-3840s", 3840) == f"{base}/warm-up-3840s"
    assert cache_dir_for_warm_up(f"{base}/warm-up-3840s", 60) == f"{base}/warm-up-60s"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", base)
    use_cache_for_warm_up(3840)
    use_cache_for_warm_up(3840)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == f"{base}/warm-up-3840s"
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    use_cache_for_warm_up(3840)  # torch's default folder stays torch's default
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ


@pytest.mark.parametrize(("requested", "env", "want"), [(None, "", 0.0), (None, "3840", 3840.0), (60, "3840", 60.0),
                                                         (0, "3840", 0.0)])
def test_the_warm_up_audio_comes_from_the_argument_then_the_setting(monkeypatch, requested, env, want):
    from callscribe.engines.granite_native import warm_up_audio_wanted

    monkeypatch.setenv("CALLSCRIBE_NAR_WARM_UP_AUDIO_S", env)  # empty reads as unset
    assert warm_up_audio_wanted(requested) == want


@pytest.mark.parametrize("raw", ["-1", "nan", "lots", "40000"])
def test_a_bad_warm_up_audio_setting_is_refused(monkeypatch, raw):
    from callscribe.engines.granite_native import warm_up_audio_wanted

    monkeypatch.setenv("CALLSCRIBE_NAR_WARM_UP_AUDIO_S", raw)
    with pytest.raises(ValueError, match="CALLSCRIBE_NAR_WARM_UP_AUDIO_S=.*seconds of audio"):
        warm_up_audio_wanted()


def test_compiled_model_gives_the_same_logits():
    """torch.compile (CALLSCRIBE_NAR_COMPILE=1) changes speed, not results; ~40 s of compiling on 2 cores."""
    from torch._dynamo.utils import counters

    from callscribe.engines.granite_native import GraniteNarNativeEngine

    eager = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=False)
    compiled = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu", compile=True,
                                      route_confidence=0.5)
    # The warm-up at load compiled everything a batch reaches (token probabilities, routing): the worker's
    # path compiles nothing more. (Two items, as the warm-up has: on a CPU the per-item attention loop,
    # which CUDA never runs, is traced per item count.)
    graphs = counters["stats"]["unique_graphs"]
    reduce, rows = compiled.model.head_reduce, []
    compiled.model.head_reduce = lambda logits, scale: rows.append(logits.shape[0]) or reduce(logits, scale)
    compiled.run(compiled.prepare([w.numpy() for w in noise_waves([3.3, 1.7], seed=2)]))
    assert rows and min(rows) >= 2  # the compiled reduction ran (the draft's with routing, the editor's)
    compiled.model.head_reduce = reduce
    # A single row (a chunk of one draft step, or what is left for the last slice) would be a graph of its
    # own, compiled mid-job: it goes the eager way.
    one = torch.randn(1, compiled.model.cfg.editor.hidden)
    with torch.inference_mode():
        best, _, top = compiled.model._argmax_rows(one, compiled.model.editor.text_products, 8192, prob_scale=8.0)
    assert best.shape == top.shape == (1,) and 0 < float(top[0]) <= 1
    assert counters["stats"]["unique_graphs"] == graphs
    waves = noise_waves([5.0, 2.5, 4.0], seed=9)
    a = eager.model.transcribe(waves, draft_tokens_per_s=4.0, return_logits=True, token_probs=True)
    b = compiled.model.transcribe(waves, draft_tokens_per_s=4.0, return_logits=True, token_probs=True)
    assert a.tokens == b.tokens
    for x, y in zip(a.logits, b.logits, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
    # the token probabilities come from the compiled head reduction there, from top_probability here
    assert eager.model.head_reduce is None and compiled.model.head_reduce is not None
    assert [len(p) for p in a.token_probs] == [len(t) for t in a.tokens] and any(a.token_probs)
    for x, y in zip(a.token_probs, b.token_probs, strict=True):
        assert x == pytest.approx(y, rel=1e-4, abs=1e-7)
    routed_a = eager.model.transcribe(waves, draft_tokens_per_s=4.0, route_confidence=1.0)
    routed_b = compiled.model.transcribe(waves, draft_tokens_per_s=4.0, route_confidence=1.0)
    assert routed_a.draft_confidence == pytest.approx(routed_b.draft_confidence, rel=1e-4, abs=1e-7)



# ---------------------------------------------------------------- against transformers' own parts
# The NAR model's encoder blocks are those of Granite Speech (AR), and its editor is a
# Granite LM run without the causal mask: both are in transformers, so our code and our
# checkpoint names are checked against independent implementations.


def test_the_encoder_matches_transformers_granite_speech_encoder():
    from transformers.models.granite_speech.configuration_granite_speech import GraniteSpeechEncoderConfig
    from transformers.models.granite_speech.modeling_granite_speech import GraniteSpeechCTCEncoder

    from callscribe.engines.nar.config import EncoderConfig
    from callscribe.engines.nar.modeling import Encoder

    torch.manual_seed(0)
    cfg = EncoderConfig(hidden=32, layers=4, heads=2, head_dim=16, context=20, max_rel=32, char_vocab=12,
                        self_cond_layer=2, bpe_vocab=64, export_layers=(-1,))
    ours = Encoder(cfg).eval()
    for m in ours.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    theirs = GraniteSpeechCTCEncoder(GraniteSpeechEncoderConfig(
        input_dim=160, hidden_dim=32, num_layers=4, num_heads=2, dim_head=16, context_size=20, max_pos_emb=32,
        output_dim=12, feedforward_mult=4, conv_kernel_size=15, conv_expansion_factor=2)).eval()
    state = {ck.to_checkpoint_name(f"encoder.{k}").removeprefix("encoder."): v
             for k, v in ours.state_dict().items() if not k.startswith("bpe_ctc")}
    result = theirs.load_state_dict(state, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(1, 47, 160)  # not a whole number of attention blocks
    with torch.no_grad():
        torch.testing.assert_close(ours(x, torch.ones(1, 47, dtype=torch.bool)).exported, theirs(x).last_hidden_state,
                                   atol=1e-5, rtol=1e-4)


def test_the_editor_matches_transformers_granite_without_the_causal_mask():
    from transformers import GraniteConfig
    from transformers.models.granite.modeling_granite import GraniteModel

    from callscribe.engines.nar.config import EditorConfig
    from callscribe.engines.nar.modeling import Editor

    torch.manual_seed(0)
    c = EditorConfig(vocab=64, hidden=48, layers=2, heads=4, kv_heads=2, head_dim=12, intermediate=96,
                     max_positions=1024)
    ours = Editor(c).eval()
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.2)
    theirs = GraniteModel(GraniteConfig(
        vocab_size=64, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=12,
        intermediate_size=96, rms_norm_eps=c.rms_eps, rope_theta=c.rope_theta, max_position_embeddings=1024,
        embedding_multiplier=c.embedding_multiplier, attention_multiplier=c.attention_multiplier,
        residual_multiplier=c.residual_multiplier, logits_scaling=c.logits_scaling,
        attn_implementation="eager")).eval()
    prefix = "language_model.model."
    state = {ck.to_checkpoint_name(f"editor.{k}").removeprefix(prefix): v for k, v in ours.state_dict().items()}
    result = theirs.load_state_dict(state, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    lengths = [13, 6]
    embeds = torch.randn(sum(lengths), 48) * 0.1
    positions = torch.cat([torch.arange(n) for n in lengths])
    with torch.no_grad():
        packed = ours.norm(ours(embeds, positions, cu_seqlens_for(lengths), max(lengths)))
        for item, start in zip(embeds.split(lengths), (0, 13), strict=True):
            n = item.shape[0]
            bidirectional = torch.zeros(1, 1, n, n)  # an explicit all-visible mask replaces the causal one
            expected = theirs(inputs_embeds=item[None], attention_mask=bidirectional).last_hidden_state[0]
            torch.testing.assert_close(packed[start : start + n], expected, atol=1e-5, rtol=1e-4)


def test_the_gpu_benchmark_script_runs_on_a_cpu(tmp_path, monkeypatch, capsys):
    from benchmarks import granite

    monkeypatch.setattr(granite, "OUT", tmp_path / "granite-results.json")
    assert granite.main(["--config", "tiny", "--batch", "2", "--chunk-s", "3", "--batches", "2", "--warmup", "0"]) == 0
    saved = json.loads((tmp_path / "granite-results.json").read_text())["results"]
    assert [r["engine"] for r in saved] == ["granite-nar-native"] and saved[0]["batch"] == 2
    assert "| granite-nar-native | random weights (tiny) |" in capsys.readouterr().out


def test_a_block_that_is_not_whole_pooling_windows_is_refused():
    """Items are laid end to end in whole attention blocks: a block of 22 frames with windows of 4
    would start the second item mid-window and make its draft depend on the first."""
    import dataclasses

    cfg = NarConfig.tiny()
    cfg.encoder = dataclasses.replace(cfg.encoder, context=22)
    with pytest.raises(ValueError, match="multiple of pool window"):
        GraniteNar(cfg)


def test_a_batch_started_before_the_last_one_finished_gives_the_same_output(tiny):
    """The batch runner starts batch k+1 before finishing batch k (GraniteNar.start / finish)."""
    first, second = noise_waves([3.0, 7.5, 0.4], seed=5), noise_waves([5.0, 1.1], seed=6)
    want = [tiny.transcribe(w, token_probs=True, draft_tokens_per_s=4.0) for w in (first, second)]
    a = tiny.start(first, token_probs=True, draft_tokens_per_s=4.0)
    b = tiny.start(second, token_probs=True, draft_tokens_per_s=4.0)
    got = [a.finish(), b.finish()]
    for g, w in zip(got, want, strict=True):
        assert g.tokens == w.tokens and g.token_times == w.token_times and g.drafts == w.drafts
        assert g.token_probs == w.token_probs


def test_a_compile_cache_that_cannot_be_written_falls_back_to_a_private_folder(monkeypatch, tmp_path, caplog):
    """A pod's shared cache volume whose driver ignores fsGroup (some NFS ones) is mounted but not
    writable: inductor and Triton would fail the compile, and every pod's warm-up with it. The engine
    compiles into a folder of its own instead, and says why."""
    import os

    from callscribe.engines import granite_native

    not_a_folder = tmp_path / "volume"
    not_a_folder.write_text("a file where the cache folder should be")  # unwritable even for root
    good = tmp_path / "cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(not_a_folder / "torch-compile"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(good))
    granite_native.writable_compile_caches()
    moved = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert moved != str(not_a_folder / "torch-compile") and os.access(moved, os.W_OK)
    assert os.environ["TRITON_CACHE_DIR"] == str(good)  # a writable one stays
    assert "TORCHINDUCTOR_CACHE_DIR" in caplog.text and "not writable" in caplog.text
