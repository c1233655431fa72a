"""The loader's per-call metrics (loading.call_metrics), by hand-computed cases."""

from __future__ import annotations

import json

import pandas as pd

from callscribe.loading import METRIC_COLUMNS, call_metrics


def _metrics(rows):
    df = pd.DataFrame(rows, columns=["recording_id", "channel", "seq", "speaker", "start_s", "end_s"])
    return {r[0]: dict(zip(METRIC_COLUMNS, r, strict=True)) for r in call_metrics(df)}


def test_talk_silence_overlap_and_the_longest_monologue():
    got = _metrics([
        (7, 0, 0, "agent", 0.5, 4.0),
        (7, 1, 0, "customer", 10.0, 12.0),
        (7, 1, 1, "customer", 12.5, 15.0),
        (7, 1, 2, "customer", 20.0, 26.0),
        (7, 0, 1, "agent", 25.0, 30.0),
    ])[7]
    assert json.loads(got["talk_time_s"]) == {"agent": 8.5, "customer": 10.5}
    assert (got["talk_sum_s"], got["talk_union_s"], got["overlap_s"]) == (19.0, 18.0, 1.0)
    # The customer's three segments are one turn, 10 to 26 s.
    assert (got["longest_monologue_s"], got["longest_monologue_speaker"], got["segments"]) == (16.0, "customer", 5)


def test_one_speakers_overlapping_segments_count_once_and_calls_stay_apart():
    got = _metrics([
        (1, 0, 0, "mixed", 0.0, 10.0),
        (1, 0, 1, "mixed", 5.0, 12.0),   # inside the same speaker's talk: no overlap
        (1, 0, 2, "mixed", 20.0, 21.0),
        (2, 0, 0, "agent", 0.0, 3.0),    # the next call starts again at 0
        (2, 1, 0, "customer", 3.0, 4.0),
        (2, 0, 1, "agent", 4.0, 7.0),
    ])
    assert json.loads(got[1]["talk_time_s"]) == {"mixed": 13.0} and got[1]["overlap_s"] == 0.0
    assert (got[1]["longest_monologue_s"], got[1]["segments"]) == (21.0, 3)
    assert (got[2]["talk_union_s"], got[2]["longest_monologue_s"], got[2]["longest_monologue_speaker"]) == (
        7.0, 3.0, "agent")  # two equally long agent turns: the first


def test_no_rows_no_metrics():
    assert _metrics([]) == {}


def test_a_phrase_runs_on_into_the_same_speakers_next_segment_only():
    import pandas as pd

    from callscribe.loading import LOADED_COLUMNS, Call, LoadExtras, segment_rows

    df = pd.DataFrame({"recording_id": [1, 1, 1, 1, 2], "channel": [0, 0, 0, 1, 0], "seq": [0, 1, 2, 0, 0],
                       "speaker": ["speaker_1", "speaker_1", "speaker_2", "customer", "agent"],
                       "start_s": [0.0, 2.0, 4.0, 0.0, 0.0], "end_s": [1.0, 3.0, 5.0, 1.0, 1.0],
                       "text": ["please cancel", "my card 4111 1111", "1111 1111 sure", "hello", "hi"]})
    extras = LoadExtras()
    calls = {1: Call("2026-09-01", "ag-1", 2), 2: Call("2026-09-02", None, 1)}
    rows = [dict(zip(LOADED_COLUMNS, r, strict=True)) for r in segment_rows(df, calls, extras)]
    # A diarized mono channel: the second speaker's "sure" does not finish the first one's phrase,
    # and a number dictated over two segments is masked in both.
    assert [r["next_redacted"] for r in rows] == ["my card [redacted]", None, None, None, None]
    assert [r["text_redacted"] for r in rows][:3] == ["please cancel", "my card [redacted]", "[redacted] sure"]
    assert [(r["call_date"], r["agent_id"]) for r in rows] == [("2026-09-01", "ag-1")] * 4 + [("2026-09-02", None)]
    # One transcript row per channel with segments; a channel of two voices is 'mixed'.
    assert extras.transcripts == [(1, 0, "mixed", "please cancel my card 4111 1111 1111 1111 sure",
                                   "please cancel my card [redacted] [redacted] sure", 3),
                                  (1, 1, "customer", "hello", "hello", 1), (2, 0, "agent", "hi", "hi", 1)]
    # The tokens the lexicon's words are made from: the redacted texts' only (no digit of the card).
    assert extras.tokens == {"please", "cancel", "my", "card", "[redacted]", "sure", "hello", "hi"}


def test_the_pair_holds_only_the_next_segments_first_words():
    import pandas as pd

    from callscribe.loading import LOADED_COLUMNS, NEXT_WORDS, Call, LoadExtras, segment_rows

    long = " ".join(f"w{i}" for i in range(NEXT_WORDS + 7))
    df = pd.DataFrame({"recording_id": [1, 1, 1], "channel": [0, 0, 0], "seq": [0, 1, 2],
                       "speaker": ["agent"] * 3, "start_s": [0.0, 2.0, 4.0], "end_s": [1.0, 3.0, 5.0],
                       "text": ["so", long, "  spaced - out\tnext  now"]})
    rows = [dict(zip(LOADED_COLUMNS, r, strict=True))
            for r in segment_rows(df, {1: Call("2026-09-01", None, 1)}, LoadExtras())]
    assert rows[0]["next_redacted"] == " ".join(long.split()[:NEXT_WORDS])
    assert rows[1]["next_redacted"] == "spaced - out next"  # a dash is no word: three words and it
    assert rows[2]["next_redacted"] is None


def test_every_channel_of_a_loaded_call_gets_a_transcript_row_and_rows_go_in_by_agent():
    import pandas as pd

    from callscribe.loading import Call, load_order, transcript_rows

    calls = {5: Call("2026-09-01", "ag-2", 2), 6: Call("2026-09-01", None, None),
             7: Call("2026-09-01", "ag-1", 1)}
    # Channel 1 of a one-channel recording (not from its decode) gets no transcript row.
    spoken = [(5, 1, "customer", "hi", "hi", 1), (7, 1, "customer", "odd", "odd", 1)]
    assert transcript_rows(calls, spoken, "cpu") == [(5, 0, "channel0", "", "", 0, "cpu"),
                                              (5, 1, "customer", "hi", "hi", 1, "cpu"),
                                              (6, 0, "channel0", "", "", 0, "cpu"),
                                              (7, 0, "mixed", "", "", 0, "cpu")]
    df = pd.DataFrame({"recording_id": [5, 5, 7, 6, 9, 7], "channel": [1, 0, 0, 0, 0, 0], "seq": [0, 0, 1, 0, 0, 0],
                       "speaker": ["a"] * 6, "start_s": [0.0] * 6, "end_s": [1.0] * 6, "text": ["x"] * 6})
    ordered = load_order(df, calls)
    # A recording no longer the run's (9) is left out; no agent first, then by agent, recording, channel, seq.
    assert list(zip(ordered["recording_id"], ordered["channel"], ordered["seq"], strict=True)) == [
        (6, 0, 0), (7, 0, 0), (7, 0, 1), (5, 0, 0), (5, 1, 0)]
