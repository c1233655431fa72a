"""Segments timed in a packed chunk go back to their places in the recording."""

from callscribe.engines import Segment, Word
from callscribe.transcription import PlacedSegment, place

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
