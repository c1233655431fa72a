"""Segments timed in a packed chunk go back to their places in the recording."""

from dataclasses import replace

from callscribe.engines import Segment, Word
from callscribe.transcription import PlacedSegment
from callscribe.transcription import place as place_with_words


def place(*args) -> list[PlacedSegment]:
    """Placement without the word times (their own tests below check them)."""
    return [replace(s, word_starts=()) for s in place_with_words(*args)]

# Two regions packed into one chunk: 0-2 s of the chunk is 10-12 s of the recording,
# 2-5 s of the chunk is 40-43 s (the 28 s between was silence, cut out).
REGIONS = [(0.0, 10.0, 12.0), (2.0, 40.0, 43.0)]


def test_a_segment_within_one_region_keeps_its_text_and_moves_there():
    assert place(REGIONS, 1, [Segment(2.5, 4.0, "Hello there.")]) == [PlacedSegment(1, 40.5, 42.0, "Hello there.")]
    assert place(REGIONS, 0, [Segment(0.2, 1.5, "Yes.")]) == [PlacedSegment(0, 10.2, 11.5, "Yes.")]


def test_a_segment_across_regions_is_split_by_its_words():
    words = (Word(0.3, 0.7, "Thank"), Word(0.7, 1.2, "you."), Word(2.3, 2.6, "Is"), Word(2.6, 3.1, "that"),
             Word(3.1, 3.5, "all?"))
    placed = place(REGIONS, 0, [Segment(0.3, 3.5, "Thank you. Is that all?", words)])
    assert placed == [PlacedSegment(0, 10.3, 11.2, "Thank you."), PlacedSegment(0, 40.3, 41.5, "Is that all?")]
    # No segment spans the pause that was cut out.
    assert all(not (s.start < 12.0 and s.end > 40.0) for s in placed)


def test_a_word_goes_where_its_middle_is_and_stays_inside_that_region():
    words = (Word(1.5, 2.3, "straddling"), Word(2.4, 2.8, "next"))
    placed = place(REGIONS, 0, [Segment(1.5, 2.8, "straddling next", words)])
    # "straddling" is mostly before the seam (middle 1.9 s): first region, its end clamped there.
    assert placed == [PlacedSegment(0, 11.5, 12.0, "straddling"), PlacedSegment(0, 40.4, 40.8, "next")]


def test_without_word_times_a_segment_goes_whole_to_the_region_it_overlaps_most():
    placed = place(REGIONS, 0, [Segment(1.0, 4.5, "mostly in the second region")])
    assert placed == [PlacedSegment(0, 40.0, 42.5, "mostly in the second region")]
    placed = place(REGIONS, 0, [Segment(0.0, 2.4, "mostly in the first")])
    assert placed == [PlacedSegment(0, 10.0, 12.0, "mostly in the first")]


def test_times_are_clamped_to_their_region():
    placed = place([(0.0, 5.0, 6.0)], 0, [Segment(-0.3, 1.7, "overrun")])
    assert placed == [PlacedSegment(0, 5.0, 6.0, "overrun")]


def test_a_segment_timed_only_as_the_whole_chunk_takes_its_words_times():
    # Granite gives one segment spanning the chunk; its words say when it was said.
    words = (Word(2.2, 2.5, "just"), Word(2.5, 2.9, "this"))
    placed = place(REGIONS, 0, [Segment(0.0, 5.0, "just this", words)])
    assert placed == [PlacedSegment(0, 40.2, 40.9, "just this")]


def test_each_word_of_a_placed_segment_keeps_its_start_in_the_recording():
    words = (Word(0.3, 0.7, "Thank"), Word(0.7, 1.2, "you."), Word(2.3, 2.6, "Is"), Word(2.6, 3.1, "that"),
             Word(3.1, 3.5, "all?"))
    first, second = place_with_words(REGIONS, 0, [Segment(0.3, 3.5, "Thank you. Is that all?", words)])
    assert first.word_starts == (10.3, 10.7) and second.word_starts == (40.3, 40.6, 41.1)
    # Within one region the engine's own text keeps its words' times too.
    (one,) = place_with_words(REGIONS, 1, [Segment(2.3, 3.5, "Is that all?", words[2:])])
    assert one.text == "Is that all?" and one.word_starts == (40.3, 40.6, 41.1)


def test_word_starts_follow_the_texts_words_or_are_left_out():
    # A word that prints as two pieces gives both the same start.
    words = (Word(0.1, 0.5, "New York"), Word(0.6, 0.9, "now"))
    (s,) = place_with_words(REGIONS, 0, [Segment(0.0, 1.0, "New York now", words)])
    assert s.word_starts == (10.1, 10.1, 10.6)
    # Words that do not line up with the text (the engine's text differs): no word times, not wrong ones.
    (s,) = place_with_words(REGIONS, 0, [Segment(0.0, 1.0, "Hello there friend", (Word(0.1, 0.5, "Hello"),))])
    assert s.word_starts == ()
    # Without word times: none.
    assert place_with_words(REGIONS, 0, [Segment(0.0, 1.0, "Yes.")])[0].word_starts == ()


def test_word_starts_stay_inside_the_segment_and_never_go_back():
    words = (Word(-0.2, 0.3, "early"), Word(0.9, 1.0, "b"), Word(0.5, 0.6, "c"), Word(1.8, 2.5, "late"))
    (s,) = place_with_words([(0.0, 5.0, 7.0)], 0, [Segment(-0.2, 2.5, "early b c late", words)])
    assert s.word_starts[0] == s.start == 5.0 and list(s.word_starts) == sorted(s.word_starts)
    assert all(s.start <= t <= s.end for t in s.word_starts)


def test_word_starts_travel_to_the_database_as_a_real_array():
    from callscribe.loading import pg_real_array

    assert pg_real_array([10.3, 10.7]) == "{10.300,10.700}"
    assert pg_real_array([]) is None and pg_real_array(None) is None


def test_no_word_starts_in_the_context_kept_before_a_regions_speech():
    """Whisper puts a chunk's first word at the chunk's start, in the 0.4 s of context before the
    speech: the speech onset of each region (from the audio) moves it to where speech starts."""
    import numpy as np

    from callscribe.transcription import region_onsets

    rng = np.random.default_rng(0)
    sr = 16_000
    quiet = np.zeros(int(0.4 * sr))
    t = np.arange(int(1.5 * sr)) / sr
    voiced = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    voiced += 0.01 * rng.standard_normal(len(t))
    audio = np.concatenate([quiet, voiced, quiet, voiced]).astype(np.float32)
    regions = [(0.0, 10.0, 11.9), (1.9, 40.0, 41.9)]  # each: 0.4 s of context, then speech
    onsets = region_onsets(audio, regions)
    assert abs(onsets[0] - 0.4) <= 0.06 and abs(onsets[1] - 2.3) <= 0.06
    assert region_onsets(audio + 0.25, regions) == onsets  # a recorder's DC offset moves no onset
    words = (Word(0.0, 0.8, "Thank"), Word(0.8, 1.2, "you."), Word(1.9, 2.6, "Hello"))
    first, second = place_with_words(regions, 0, [Segment(0.0, 2.6, "Thank you. Hello", words)], onsets)
    assert first.start == first.word_starts[0] == round(10.0 + onsets[0], 3)
    assert second.start == round(40.0 + onsets[1] - 1.9, 3)
    assert first.word_starts[1] == 10.8  # words after the onset keep their times


def test_onsets_read_int16_packs_as_the_worker_has_them():
    """The worker's chunks are int16: the same onsets as the float samples they stand for."""
    import numpy as np

    from callscribe.transcription import region_onsets

    sr = 16_000
    rng = np.random.default_rng(1)
    hiss = rng.integers(-3, 4, int(0.15 * sr))  # a few LSB of noise before the voice
    t = np.arange(sr) / sr
    voice = (9000 * np.sin(2 * np.pi * 200 * t)).astype(np.int64)
    x = np.concatenate([np.zeros(int(0.25 * sr), dtype=np.int64), hiss, voice]).astype(np.int16)
    regions = [(0.0, 10.0, 11.0)]
    as_int = region_onsets(x, regions)[0]
    assert as_int == region_onsets(x.astype(np.float32) / 32768, regions)[0]
    assert abs(as_int - 0.40) <= 0.035
    assert region_onsets(np.zeros(0, np.int16), regions) == [0.0]  # no audio: the region's start


def test_each_piece_of_a_segment_keeps_the_engines_confidence():
    words = (Word(0.3, 0.7, "Thank"), Word(0.7, 1.2, "you."), Word(2.3, 2.6, "Is"), Word(2.6, 3.1, "that"))
    pieces = place(REGIONS, 0, [Segment(0.3, 3.1, "Thank you. Is that", words, confidence=0.83)])
    assert [(p.text, p.confidence) for p in pieces] == [("Thank you.", 0.83), ("Is that", 0.83)]
    assert place(REGIONS, 0, [Segment(2.5, 4.0, "No words.", confidence=0.5)])[0].confidence == 0.5
    assert place(REGIONS, 0, [Segment(2.5, 4.0, "No confidence.")])[0].confidence is None


def test_whisper_confidence_is_the_segments_mean_token_probability():
    import math

    from callscribe.engines.whisper import confidence

    assert confidence(math.log(0.8)) == 0.8
    assert confidence(0.0) == 1.0 and confidence(-50.0) == 0.0
    assert confidence(None) is None and confidence(float("nan")) is None


def test_words_the_text_prints_joined_keep_the_first_ones_start():
    # Whisper times "20%" as the words "20" and "%" (punctuation it does not attach; "24/7" would come as
    # "24" and "/7"): the text has fewer words than the engine, and each keeps its first piece's start.
    words = (Word(0.1, 0.3, "of"), Word(0.3, 0.6, "20"), Word(0.6, 0.9, "%"), Word(1.0, 1.4, "instead"))
    (s,) = place_with_words(REGIONS, 0, [Segment(0.1, 1.4, "of 20% instead", words)])
    assert s.word_starts == (10.1, 10.3, 11.0)
    words = (Word(0.1, 0.4, "24"), Word(0.4, 0.7, "/7"), Word(0.8, 1.2, "support"))
    (s,) = place_with_words(REGIONS, 0, [Segment(0.1, 1.2, "24/7 support", words)])
    assert s.word_starts == (10.1, 10.8)
    # Pieces that do not spell the text's words: no word times, not wrong ones.
    words = (Word(0.1, 0.3, "of"), Word(0.3, 0.6, "20"), Word(0.6, 0.9, "%"))
    assert place_with_words(REGIONS, 0, [Segment(0.1, 0.9, "of twenty%", words)])[0].word_starts == ()
