"""Speakers on mono recordings: the diarizer's error on two-voice calls made from the stereo
sample, its labels, and the chunks it leads to (one voice per chunk)."""

from dataclasses import replace

import numpy as np
import pytest

from callscribe import config
from callscribe.audio import Decoded, decode
from callscribe.chunking import DEFAULT_CHUNKING, FRAME_MS, chunk_recording, diarize_channel, speech_regions
from callscribe.dev import diarization_eval as E
from callscribe.samples import sample_dir

DER_BOUND = 0.10
DIARIZE = replace(DEFAULT_CHUNKING, diarize=True)


def _mono(m: E.Material) -> Decoded:
    return Decoded([m.audio], m.rate, m.duration_s, "PCM_16")


def test_the_stereo_sample_mixed_down_is_told_apart():
    s = E.score(E.mixdown())
    assert s.n_hyp == 2
    assert s.der <= DER_BOUND, s


def test_rearranged_two_voice_calls_stay_under_the_bound():
    scores = [E.score(m) for m in E.two_speaker_set(4)]
    assert all(s.n_hyp == 2 for s in scores), scores
    weighted = sum(s.der * s.speech_s for s in scores) / sum(s.speech_s for s in scores)
    assert weighted <= DER_BOUND, scores


@pytest.mark.parametrize("m", E.one_speaker_set(), ids=lambda m: m.name)
def test_one_voice_is_one_speaker(m):
    d = diarize_channel(m.audio, m.rate)
    assert d.n_speakers == 1
    assert {s for _, _, s in d.turns} == {0}


def test_silence_has_no_speaker_and_no_chunk():
    x = np.zeros(8000 * 20, dtype=np.int16)
    assert diarize_channel(x, 8000).n_speakers == 0
    assert chunk_recording(Decoded([x], 8000, 20.0, "PCM_16"), DIARIZE) == []


def test_a_very_short_call_is_one_speaker_sent_whole():
    m = E.mixdown()
    x = m.audio[: int(3.0 * m.rate)]  # the agent's first words only
    chunks = chunk_recording(Decoded([x], m.rate, 3.0, "PCM_16"), DIARIZE, at_16k=False)
    assert [(c.speaker, c.regions) for c, _ in chunks] == [(0, ((0, len(x)),))]


def test_chunks_of_a_two_voice_call_hold_one_voice_each_and_lose_no_speech():
    m = E.mixdown()
    chunks = [c for c, _ in chunk_recording(_mono(m), DIARIZE, at_16k=False)]
    assert {c.speaker for c in chunks} == {0, 1}
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    ref = {"agent": [], "customer": []}
    for a, b, who in m.reference:
        ref[who].append((a, b))
    who_of = {}
    for c in chunks:
        for a, b in c.regions:
            a_s, b_s = a / c.rate, b / c.rate
            heard = {w for w, turns in ref.items() for ta, tb in turns if min(b_s, tb) - max(a_s, ta) > 0.3}
            assert len(heard) == 1, (c, heard)
            assert who_of.setdefault(c.speaker, heard.pop()) in ref
    assert sorted(who_of.values()) == ["agent", "customer"]  # the speakers are the two parties
    # No sample is in two chunks, and every speech frame the VAD found is in one.
    spans = sorted(r for c in chunks for r in c.regions)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    size = m.rate * FRAME_MS // 1000
    _, regions = speech_regions(m.audio, m.rate)
    covered = np.zeros(len(m.audio) // size + 1, dtype=bool)
    for a, b in spans:
        covered[a // size : -(-b // size)] = True
    assert all(covered[a:b].all() for a, b in regions)


def test_speakers_are_numbered_by_who_speaks_first():
    m = E.mixdown()  # the agent opens the call
    d = diarize_channel(m.audio, m.rate)
    assert d.turns[0][2] == 0
    first_customer = next(a for a, _, w in m.reference if w == "customer")
    assert {s for a, _, s in d.turns if a * FRAME_MS / 1000 < first_customer - 0.5} == {0}


def test_stereo_chunking_is_unchanged_by_the_switch():
    name = "call-0001.wav"
    d = decode((sample_dir() / name).read_bytes(), name)
    plain = chunk_recording(d, DEFAULT_CHUNKING, at_16k=False)
    switched = chunk_recording(d, DIARIZE, at_16k=False)
    assert [c for c, _ in plain] == [c for c, _ in switched]
    assert all(c.speaker is None for c, _ in switched)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(plain, switched, strict=True))


def test_mono_chunking_without_the_switch_is_unchanged():
    m = E.mixdown()
    chunks = chunk_recording(_mono(m), DEFAULT_CHUNKING, at_16k=False)
    assert chunks and all(c.speaker is None for c, _ in chunks)


def test_labels_are_neutral_unless_the_metadata_names_the_first_speaker():
    assert [config.diarized_speaker(s, 2) for s in (0, 1)] == ["speaker_1", "speaker_2"]
    assert [config.diarized_speaker(s, 2, {"first-speaker": "agent"}) for s in (0, 1)] == ["agent", "customer"]
    assert [config.diarized_speaker(s, 2, {"first_speaker": "Customer"}) for s in (0, 1)] == ["customer", "agent"]
    assert config.diarized_speaker(0, 1, {"first-speaker": "agent"}) == "mixed"  # two looked for, one found
    assert config.diarized_speaker(0, 1, hint=1) == "speaker_1"  # the upload said one voice
    assert config.diarized_speaker(2, 3, {"first-speaker": "agent"}) == "speaker_3"
    assert config.diarized_speaker(1, 2, {"first-speaker": "boss"}) == "speaker_2"


def test_the_hint_and_the_switch(monkeypatch):
    assert config.speakers_hint({}) == 2
    assert config.speakers_hint({"speakers": "3"}) == 3
    assert config.speakers_hint({"speakers": "lots"}) == 2
    monkeypatch.delenv("CALLSCRIBE_DIARIZE", raising=False)
    assert config.diarize_mono() is config.DIARIZE_DEFAULT
    monkeypatch.setenv("CALLSCRIBE_DIARIZE", "1")
    assert config.diarize_mono()
    monkeypatch.setenv("CALLSCRIBE_DIARIZE", "0")
    assert not config.diarize_mono()
    m = E.mixdown()
    assert diarize_channel(m.audio, m.rate, replace(DEFAULT_CHUNKING, speakers=1)).n_speakers == 1


def test_the_error_measure():
    ref = [(0.0, 2.0, "a"), (3.0, 5.0, "b")]
    assert E.der(ref, [(0.0, 2.0, "x"), (3.0, 5.0, "y")], 6.0).der == 0.0
    assert E.der(ref, [(0.0, 2.0, "y"), (3.0, 5.0, "x")], 6.0).der == 0.0  # the best mapping
    one = E.der(ref, [(0.0, 5.0, "x")], 6.0)
    assert one.confusion == pytest.approx(0.5, abs=0.05) and one.false_alarm > 0
    assert E.der(ref, [], 6.0).miss == 1.0
