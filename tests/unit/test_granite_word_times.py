"""Word times of the native Granite NAR: editor slot -> time, tokens -> timed words.

A chunk packs several speech regions of a channel; the words' times say where its text is
split back into them. The editor's slots are [blank, d0, blank, d1, ..., d(n-1), blank] (+ blank
padding): a final token takes the time of the slot its run starts at.
"""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from callscribe.engines.nar import checkpoint as ck
from callscribe.engines.nar.config import NarConfig
from callscribe.engines.nar.modeling import (
    collapse_with_slots,
    random_model,
    slot_times,
    token_spans,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "granite-nar-tiny"
B = 99  # blank in the hand-made slot sequences
DRAFT_TIMES = [0.16, 0.4, 0.8]  # n = 3: slots 0..6, slot 7 pads to the minimum of 8


def _times(slot_argmax: list[int], draft_times: list[float] = DRAFT_TIMES) -> tuple[list[int], list[float]]:
    tokens, slots = collapse_with_slots(slot_argmax, B)
    return tokens, slot_times(slots, draft_times)


# ---------------------------------------------------------------- slot -> time


def test_kept_draft_tokens_keep_their_draft_times():
    assert _times([B, 1, B, 2, B, 3, B, B]) == ([1, 2, 3], [0.16, 0.4, 0.8])


def test_a_substituted_token_takes_the_time_of_the_draft_token_it_replaces():
    assert _times([B, 7, B, 2, B, 8, B, B]) == ([7, 2, 8], [0.16, 0.4, 0.8])


def test_a_deleted_draft_token_leaves_the_others_times_alone():
    assert _times([B, 1, B, B, B, 3, B, B]) == ([1, 3], [0.16, 0.8])
    assert _times([B] * 8) == ([], [])


def test_an_insertion_between_draft_tokens_takes_the_midpoint():
    assert _times([B, 1, 5, 2, B, 3, B, B]) == ([1, 5, 2, 3], [0.16, 0.28, 0.4, 0.8])
    assert _times([B, 1, B, 2, 6, 3, B, B]) == ([1, 2, 6, 3], [0.16, 0.4, 0.6, 0.8])


def test_insertions_before_the_first_and_after_the_last_draft_token():
    assert _times([4, 1, B, 2, B, 3, 5, B]) == ([4, 1, 2, 3, 5], [0.16, 0.16, 0.4, 0.8, 0.8])


def test_padding_slots_take_the_last_draft_time():
    assert _times([B, 1, B, 2, B, 3, B, 9]) == ([1, 2, 3, 9], [0.16, 0.4, 0.8, 0.8])
    tokens, slots = collapse_with_slots([B, 1, B, B, B, B, B, B, 5, B, 6], B)  # min_slots 11, n = 1
    assert (tokens, slot_times(slots, [0.24])) == ([1, 5, 6], [0.24, 0.24, 0.24])


def test_a_repeated_token_is_timed_where_its_run_starts():
    # Slots 1 and 2 both say 1: one token, timed at slot 1 (draft token 0), not at the insertion.
    assert _times([B, 1, 1, 2, B, 3, B, B]) == ([1, 2, 3], [0.16, 0.4, 0.8])
    # A run that starts on an insertion slot: the insertion's time.
    assert _times([B, 1, B, 2, 3, 3, B, B]) == ([1, 2, 3], [0.16, 0.4, 0.6])
    # The same id twice with a blank between: two tokens, two times.
    assert _times([B, 2, B, 2, B, 3, B, B]) == ([2, 2, 3], [0.16, 0.4, 0.8])


def test_without_a_draft_every_token_is_at_zero():
    tokens, slots = collapse_with_slots([3, B, 4, 4, B, 5, B, B], B)
    assert tokens == [3, 4, 5]
    assert slot_times(slots, []) == [0.0, 0.0, 0.0]


def test_times_never_decrease_along_the_slots():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randrange(0, 12)
        draft = sorted(round(rng.uniform(0, 10), 2) for _ in range(n))
        slots = sorted(rng.sample(range(max(2 * n + 1, 8) + 4), rng.randrange(0, 8)))
        times = slot_times(slots, draft)
        assert times == sorted(times)
        assert all((draft[0] if draft else 0.0) <= t <= (draft[-1] if draft else 0.0) for t in times)


def _tensor_collapse(ids: torch.Tensor, blank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An independent greedy CTC in tensor ops: kept tokens and the step each run starts at."""
    starts = torch.ones_like(ids, dtype=torch.bool)
    starts[1:] = ids[1:] != ids[:-1]
    keep = starts & (ids != blank)
    return ids[keep], torch.nonzero(keep).flatten()


def test_the_host_collapse_equals_the_tensor_collapse():
    rng = random.Random(1)
    for _ in range(100):
        ids = [rng.choice([B, B, 1, 2, 3]) for _ in range(rng.randrange(0, 30))]
        kept, steps = _tensor_collapse(torch.tensor(ids, dtype=torch.long), B)
        assert collapse_with_slots(ids, B) == (kept.tolist(), steps.tolist())


def test_token_ends():
    # Each ends where the next starts, at most half a second later; the last one step on, within the item.
    assert token_spans([0.16, 0.16, 0.4, 2.0], 0.08, 3.0) == [(0.16, 0.16), (0.16, 0.4), (0.4, 0.9), (2.0, 2.08)]
    assert token_spans([2.96], 0.08, 3.0) == [(2.96, 3.0)]
    assert token_spans([3.2], 0.08, 3.0) == [(3.2, 3.2)]  # never ends before it starts
    assert token_spans([], 0.08, 3.0) == []


# ---------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURE / "golden.safetensors"))


def test_the_model_times_its_tokens_from_the_editors_slots(golden):
    """Against the original's own editor logits and draft: the same tokens, timed by their slots."""
    model = ck.load_model(FIXTURE)
    for k in range(5):
        audio = golden[f"item{k}.audio"]
        out = model.transcribe([audio])
        best = golden[f"item{k}.editor_logits"].argmax(-1).tolist()
        tokens, slots = collapse_with_slots(best, model.cfg.blank_id)
        assert out.tokens[0] == tokens == golden[f"item{k}.tokens"].tolist()
        starts = slot_times(slots, out.draft_times(0))
        assert [s for s, _ in out.token_times[0]] == starts
        duration = audio.numel() / 16_000
        assert out.token_times[0] == token_spans(starts, 0.08, duration)
        assert all(0.0 <= s <= e <= duration for s, e in out.token_times[0])


def test_a_held_draft_keeps_its_times_in_order():
    """Random weights with the draft held at 4 tokens a second: the filler sits at the last step."""
    model = random_model(NarConfig.tiny(), seed=1)
    g = torch.Generator().manual_seed(0)
    waves = [torch.randn(int(s * 16_000), generator=g) * 0.1 for s in (0.3, 2.0, 5.0)]
    out = model.transcribe(waves, draft_tokens_per_s=4.0)
    for i, w in enumerate(waves):
        duration = w.numel() / 16_000
        draft = out.draft_times(i)
        assert draft == sorted(draft) and all(t < duration for t in draft)
        times = out.token_times[i]
        assert len(times) == len(out.tokens[i])
        assert [s for s, _ in times] == sorted(s for s, _ in times)
        assert all(0.0 <= s <= e <= duration for s, e in times)


# ---------------------------------------------------------------- the engine


def _check_words(segments: list, duration: float) -> None:
    for seg in segments:
        assert seg.words, "a segment with text has its words timed"
        # Words joined with spaces are the segment's text (whitespace normalised: a word is decoded alone).
        assert " ".join(w.text for w in seg.words).split() == seg.text.split()
        assert all(w.text and w.text == w.text.strip() for w in seg.words)
        assert all(0.0 <= w.start <= w.end <= duration for w in seg.words)
        assert all(a.end <= b.start for a, b in pairwise(seg.words))


def test_the_engine_times_each_word_of_the_fixture_clips(golden):
    """The fixture's tokenizer is word-level (w0 ... w62): every token is a word, timed as the token."""
    from callscribe.engines import create

    engine = create("granite-nar-native", path=FIXTURE, device="cpu")
    clips = [golden[f"item{k}.audio"].numpy() for k in (1, 2, 0)]
    segments = engine.transcribe(clips)
    expected = engine.model.transcribe([torch.from_numpy(c) for c in clips])
    for segs, clip, ids, times in zip(segments, clips, expected.tokens, expected.token_times, strict=True):
        duration = len(clip) / 16_000
        assert [s.text for s in segs] == [" ".join(f"w{i}" for i in ids)]
        _check_words(segs, duration)
        assert [(w.text, w.start, w.end) for w in segs[0].words] == [
            (f"w{i}", s, e) for i, (s, e) in zip(ids, times, strict=True)]


def test_a_random_model_gives_no_text_and_no_words():
    from callscribe.engines.granite_native import GraniteNarNativeEngine

    engine = GraniteNarNativeEngine(random_weights=True, size="tiny", device="cpu")
    assert engine.transcribe([np.zeros(16_000, dtype=np.float32)]) == [[]]


# ---------------------------------------------------------------- byte-level BPE (Granite's kind)


@pytest.fixture(scope="module")
def byte_bpe():
    """A small byte-level BPE (GPT-2 style, like Granite's): a leading space is part of a token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["the caller said the order was late", "please hold while I check the account",
              "naïve café owners über alles", "thank you for calling, goodbye"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|end|>"]))
    return tok


def test_byte_level_words_start_at_tokens_with_a_leading_space(byte_bpe):
    from callscribe.engines.granite_native import timed_words

    sentence = "the caller said: naïve café owners, thanks! unheard-of words"
    ids = byte_bpe.encode(sentence).ids
    assert len(ids) > len(sentence.split())  # some words take several tokens
    times = [(0.1 * i, 0.1 * i + 0.1) for i in range(len(ids))]
    words = timed_words(byte_bpe, ids, times, duration=60.0)
    assert [w.text for w in words] == sentence.split()
    # Each word runs from its first token's start to its last token's end.
    firsts = [i for i, t in enumerate(ids) if i == 0 or byte_bpe.id_to_token(t).startswith("Ġ")]
    assert [w.start for w in words] == [pytest.approx(0.1 * i) for i in firsts]
    lasts = [i - 1 for i in firsts[1:]] + [len(ids) - 1]
    assert [w.end for w in words] == [pytest.approx(0.1 * i + 0.1) for i in lasts]


def test_byte_level_words_of_arbitrary_tokens_join_to_the_text(byte_bpe):
    """Random ids, lone UTF-8 bytes and special tokens included: the words still join to the text."""
    from callscribe.engines.granite_native import timed_words

    rng = random.Random(2)
    vocab = byte_bpe.get_vocab_size()
    cache: dict[int, bool] = {}
    for _ in range(200):
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 25))]
        starts = sorted(rng.uniform(-0.5, 6.0) for _ in ids)
        times = token_spans(starts, 0.08, 5.0)
        words = timed_words(byte_bpe, ids, times, duration=5.0, cache=cache)
        text = byte_bpe.decode(ids, skip_special_tokens=True).strip()
        assert " ".join(w.text for w in words).split() == text.split()
        assert all(0.0 <= w.start <= w.end <= 5.0 for w in words)
        assert all(a.end <= b.start for a, b in pairwise(words))
