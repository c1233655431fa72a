import pytest

from callscribe.dev.evaluation import corpus_wer, normalize, wer, word_errors


def test_normalisation_matches_whisper_style():
    assert normalize("Sure, it is four five six seven eight.") == normalize("sure it is 45678")
    assert normalize("Twelve Green Street!") == "12 green street"


@pytest.mark.parametrize(("ref", "hyp", "errors"), [
    ("the cat sat", "the cat sat", 0),
    ("the cat sat", "the bat sat", 1),
    ("the cat sat", "the sat", 1),
    ("the cat sat", "the cat sat down", 1),
    ("a b c d", "", 4),
])
def test_word_errors(ref, hyp, errors):
    assert word_errors(ref, hyp) == (errors, len(ref.split()))


def test_corpus_wer_weights_by_words():
    assert corpus_wer([("a b c d", "a b c d"), ("x y", "")]) == pytest.approx(2 / 6)
    assert wer("", "") == 0.0 and wer("", "extra") == 1.0
