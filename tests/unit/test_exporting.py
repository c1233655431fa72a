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



def test_an_interrupted_json_lines_export_leaves_no_file_that_looks_complete(tmp_path):
    """JSON lines hold whole calls, one a line: a run cut short (the database gone, Ctrl-C) must not
    leave a transcripts.jsonl that reads as the whole range, nor spoil the one an earlier run wrote."""
    def cut_short():
        yield CALL
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(cut_short(), "jsonl", tmp_path / "new")
    assert not (tmp_path / "new" / "transcripts.jsonl").exists()
    (before,) = export([CALL, CALL], "jsonl", tmp_path / "again")
    with pytest.raises(KeyboardInterrupt):
        export(cut_short(), "jsonl", tmp_path / "again")
    assert len(before.read_text().splitlines()) == 2, "the earlier export was overwritten by a partial one"
    assert [p.name for p in (tmp_path / "again").iterdir()] == ["transcripts.jsonl"]  # nothing half-written left


def test_a_huge_day_costs_the_same_per_call(tmp_path, monkeypatch):
    """Each call's file name was checked against every file written before it: 8,000 calls took 10
    times as long as 2,000, a day of 100,000 calls hours. Counted, not timed: comparisons of paths."""
    import pathlib

    compared = 0
    equal = pathlib.PurePath.__eq__

    def counting(self, other):
        nonlocal compared
        compared += 1
        return equal(self, other)

    monkeypatch.setattr(pathlib.PurePath, "__eq__", counting)
    n = 1500
    written = export((Call(f"calls/2100/01/01/c-{i}.wav", date(2100, 1, 1), None, None, []) for i in range(n)),
                     "txt", tmp_path)
    assert len(set(written)) == n and compared < 5 * n, f"{compared} comparisons of paths for {n} calls"


def test_a_text_files_head_and_speakers_stay_on_their_lines():
    """An object key may hold a line break (S3 takes any UTF-8): the text file's head must stay one
    line, and no line may pass for a transcript line it is not."""
    call = Call("calls/2100/01/08/a\n[00:00:09] agent: I never said this.wav", date(2100, 1, 8), "a\n1", None,
                [Line("agent\n[00:00:05] customer", 0, 1.0, 2.0, "hello")])
    lines = to_txt(call).splitlines()
    assert len(lines) == 3 and lines[1] == "" and lines[2].startswith("[00:00:01] agent [00:00:05] customer: "), lines
