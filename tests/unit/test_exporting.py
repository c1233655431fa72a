"""Exports read back with real SubRip and WebVTT parsers."""

import html
import json
import re
from datetime import date, timedelta

import pytest
import srt
import webvtt

from callscribe.exporting import Call, Line, export, file_name, to_json, to_srt, to_txt, to_vtt

CALL = Call("calls/2026/11/24/call-0001.wav", date(2026, 11, 24), "a1", 3725.5, [
    Line("agent", 0, 0.83, 6.38, "Thank you for calling Acme support, my name is Sarah."),
    Line("customer", 1, 7.41, 12.39, "Hi, I would like to cancel my account."),
    # Text that would break a naive writer: a timing arrow, a blank line, markup, non-ASCII.
    Line("agent", 0, 13.4, 17.8, "Sure --> one moment.\n\nLet me <b>check</b> & see, Zoë."),
    Line("customer", 1, 3723.0, 3725.5, "Bye."),  # past an hour
])


def test_srt_parses_with_times_speakers_and_text():
    cues = list(srt.parse(to_srt(CALL)))
    assert len(cues) == len(CALL.lines)
    for cue, line in zip(cues, CALL.lines, strict=True):
        assert cue.start == timedelta(seconds=line.start) and cue.end == timedelta(seconds=line.end)
        assert cue.content.startswith(f"{line.speaker}: ")
    assert cues[2].content == "agent: Sure -> one moment. Let me <b>check</b> & see, Zoë."
    assert cues[3].start == timedelta(hours=1, minutes=2, seconds=3)


def test_vtt_parses_with_voices():
    captions = webvtt.from_string(to_vtt(CALL)).captions
    assert len(captions) == len(CALL.lines)
    for cap, line in zip(captions, CALL.lines, strict=True):
        assert cap.start_in_seconds == int(line.start) and cap.voice == line.speaker
    assert captions[1].text == "Hi, I would like to cancel my account."
    # Escaped in the file (a player shows the characters, not markup); the parser hands back the raw text.
    assert html.unescape(captions[2].text) == "Sure -> one moment. Let me <b>check</b> & see, Zoë."
    assert "<b>" not in captions[2].text
    assert captions[3].start == "01:02:03.000"


def test_txt_and_jsonl():
    text = to_txt(CALL).splitlines()
    assert text[0].startswith(CALL.key) and text[2] == "[00:00:00] agent: Thank you for calling Acme support, " \
                                                       "my name is Sarah."
    body = json.loads(to_json(CALL))
    assert body["key"] == CALL.key and body["call_date"] == "2026-11-24"
    assert [line["speaker"] for line in body["lines"]] == ["agent", "customer", "agent", "customer"]


def test_files_one_per_call_or_one_jsonl(tmp_path):
    other = Call("calls/2026/11/24/sub dir/x.mp3", date(2026, 11, 24), None, None, [])
    written = export([CALL, other], "srt", tmp_path / "srt")
    assert [p.name for p in written] == [file_name(CALL.key, "srt"), file_name(other.key, "srt")]
    assert written[0].name.startswith("calls__2026__11__24__call-0001.wav-") and written[0].suffix == ".srt"
    assert list(srt.parse(written[1].read_text())) == []  # a call with no speech: an empty, valid file
    (jsonl,) = export(iter([CALL, other]), "jsonl", tmp_path / "j")
    assert [json.loads(x)["key"] for x in jsonl.read_text().splitlines()] == [CALL.key, other.key]
    with pytest.raises(ValueError, match="unknown export format"):
        export([CALL], "docx", tmp_path)
    # Keys that would make the same safe name still get files of their own; long keys fit.
    clashing = ["a/b.wav", "a__b.wav", "calls/é.wav", "calls/ü.wav", "a b.wav", "a_b.wav"]
    assert len({file_name(k, "vtt") for k in clashing}) == len(clashing)
    assert len(file_name("x" * 5000, "vtt")) < 140 and not file_name("..", "srt").startswith(".")
    assert "/" not in file_name("/etc/passwd", "txt") and '"' not in file_name('a"b\nc', "txt")


def test_cue_text_and_speakers_stay_on_one_line():
    call = Call("k", date(2026, 11, 24), None, None, [
        Line("agent\n\n3", 0, 1.0, 2.0, "a ---> b --> c"), Line("customer", 1, float("nan"), 3.0, "x")])
    cues = list(srt.parse(to_srt(call)))
    assert cues[0].content == "agent 3: a -> b -> c"
    arrows = [line for line in to_vtt(call).splitlines() if "-->" in line]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}", line) for line in arrows)
    assert cues[1].start == timedelta(0)  # a time that is not a number starts at 0

