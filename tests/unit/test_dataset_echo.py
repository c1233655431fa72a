"""The data set keeps a number's audio out of examples on the other channel (the other party's line
can carry it as echo). Not only a segment there that overlaps it in time: an example is more than
its segments (neighbouring segments merged across pauses of up to 1 s, padded by 0.1 s), and an
example of the agent's channel must not span the moment the customer dictated a card number on
theirs, with no agent segment overlapping it."""

from __future__ import annotations

from callscribe.dataset import Recording, Seg, examples_of

NUMBER = (1, 0, "customer", 11.90, 12.25, "4111 1111 1111 1111", "[redacted]")


def _overlapping(rec: Recording) -> list[tuple[int, float, float, str]]:
    hot = [s for s in rec.segments if s.text != s.text_redacted]
    examples, _ = examples_of(rec)
    return [(e.channel, e.start, e.end, e.text) for e in examples for s in hot
            if e.channel != s.channel and e.start < s.end and s.start < e.end]


def test_an_agent_example_merged_across_a_pause_does_not_span_the_customers_number():
    rec = Recording(1, "calls", "calls/2026/11/24/echo.wav", "e", [
        Seg(0, 0, "agent", 10.0, 11.8, "thank you", "thank you"),
        Seg(0, 1, "agent", 12.3, 14.0, "let me check that", "let me check that"),
        Seg(*NUMBER),
    ])
    assert _overlapping(rec) == [], "an example of the other channel reaches into the time the number was said"


def test_an_agent_examples_padding_does_not_reach_into_the_customers_number():
    rec = Recording(1, "calls", "calls/2026/11/24/echo-pad.wav", "e", [
        Seg(0, 0, "agent", 9.0, 11.85, "thank you very much", "thank you very much"),
        Seg(*NUMBER),
    ])
    assert _overlapping(rec) == [], "an example of the other channel reaches into the time the number was said"


def test_an_example_away_from_the_number_is_merged_and_padded_as_before():
    rec = Recording(1, "calls", "calls/2026/11/24/echo-far.wav", "e", [
        Seg(0, 0, "agent", 1.0, 2.0, "thank you", "thank you"),
        Seg(0, 1, "agent", 2.5, 4.0, "let me check that", "let me check that"),
        Seg(*NUMBER),
    ])
    examples, _ = examples_of(rec)
    assert [(e.channel, e.start, e.end, e.segments) for e in examples] == [(0, 0.9, 4.1, 2)]
