"""Timestamp truth, end to end: calls spliced from the sample call's turns at known offsets (8 kHz
mu-law, 16 kHz PCM, 44.1 kHz, a 48 kHz MP3, an hour-long call) go through a real run (the chunker's
packs, whisper-tiny, the worker's placing, the load, the search SQL). Every loaded segment and word
start must lie in its own channel's speech, and a hit must play from just before its word. A mono call
of both parties' turns (diarized at chunking) must also keep each segment to its speaker.

A regression test for the whole timing path; it found that a segment whose text prints two of
Whisper's words as one ("20" and "%" as "20%") lost all its word times, so a hit in it played from
the segment's start, seconds early (transcription.word_starts)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from functools import cache

import numpy as np
import pytest
import soundfile as sf
import soxr
import sqlalchemy as sa

from callscribe.audio import decode
from callscribe.chunking import DEFAULT_CHUNKING, FRAME_MS, chunk_recording, chunking_for
from callscribe.diarization import DEFAULT_DIARIZATION
from callscribe.discovery import day_prefix
from callscribe.samples import labels, sample_dir
from callscribe.search import SearchFilters, search
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration

DAY = date(2128, 3, 7)
RATE = 8000  # the sample's rate: calls are built at it, then resampled whole to their own
MARGIN_S = 0.25  # cut around each labelled turn: the channel's own low noise, no speech
# The turns of call-0001.wav (stereo, agent left), as labelled: (channel, start, end).
TURNS = [(t["channel"], t["start_s"], t["end_s"]) for t in labels()["call-0001.wav"]["turns"]]
# A word heard once in each turn's piece, and when whisper-tiny hears it start in that piece alone
# (measured once on the clean piece, MARGIN_S included): the reference is the engine's own timing,
# so the checks below measure what the pipeline does to it, not the engine's error.
WORDS = {0: ("Sarah", 3.54), 1: ("bill", 3.22), 2: ("sorry", 0.76), 4: ("instead", 4.52),
         5: ("apply", 1.62), 6: ("anything", 1.62)}


@dataclass(frozen=True)
class Call:
    name: str
    rate: int
    channels: int
    fmt: tuple[str, str]
    length_s: float
    places: list[tuple[int, int, float]]  # (channel, turn, where its piece starts in the call)
    noise: float = 0.0  # background noise's standard deviation (int16 units); 0: digital silence


@cache
def _sample() -> np.ndarray:
    return sf.read(sample_dir() / "call-0001.wav", dtype="float32")[0]


def _piece(turn: int) -> np.ndarray:
    ch, a, b = TURNS[turn]
    return _sample()[int((a - MARGIN_S) * RATE): int((b + MARGIN_S) * RATE), ch]


def build(call: Call) -> bytes:
    x = np.zeros((int(call.length_s * RATE), call.channels), np.float32)
    for ch, turn, at in call.places:
        p = _piece(turn)
        i = int(round(at * RATE))
        x[i: i + len(p), ch] += p  # margins of pieces closer than 2 * MARGIN_S overlap: noise on noise
    if call.rate != RATE:
        x = soxr.resample(x, RATE, call.rate)
    if call.noise:
        x += np.random.default_rng(7).normal(0, call.noise / 32768, x.shape).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, call.rate, format=call.fmt[0], subtype=call.fmt[1])
    return buf.getvalue()


def truth(call: Call) -> dict[int, list[tuple[float, float]]]:
    """Per channel: where its turns' speech is in the call, (start, end) in seconds."""
    out: dict[int, list[tuple[float, float]]] = {}
    for ch, turn, at in call.places:
        _, a, b = TURNS[turn]
        out.setdefault(ch, []).append((at + MARGIN_S, at + MARGIN_S + (b - a)))
    return out


def _chain(ch: int, start: float, steps: list[tuple[int, float]]) -> list[tuple[int, int, float]]:
    """Pieces one after another on one channel: the first (turn, _) at ``start``, each next one
    (turn, pause) that many seconds of silence after the speech before it."""
    places = [(ch, steps[0][0], start)]
    for turn, gap in steps[1:]:
        _, prev, at = places[-1]
        _, a, b = TURNS[prev]
        places.append((ch, turn, at + (b - a) + gap))
    return places


CALLS = [
    # Stereo 8 kHz mu-law: pauses short (kept in the region), medium and long (cut out), so one chunk
    # packs several regions; the customer's channel at other offsets.
    Call("stereo-8k.wav", 8000, 2, ("WAV", "ULAW"), 120.0,
         _chain(0, 1.0, [(0, 0), (2, 0.6), (4, 5.0), (6, 60.0)]) + _chain(1, 3.3, [(1, 0), (3, 0.7)])),
    # One region longer than a chunk (its pauses under a second), cut inside it; then a long pause.
    Call("mono-16k.wav", 16000, 1, ("WAV", "PCM_16"), 80.0,
         _chain(0, 0.5, [(0, 0), (2, 0.4), (6, 0.5), (1, 0.3), (7, 0.4), (5, 0.4), (4, 40.0)]), noise=30.0),
    # 44.1 kHz: the VAD runs on the channel resampled to 16 kHz; 48 kHz: on the source samples.
    Call("stereo-44k.wav", 44100, 2, ("WAV", "PCM_16"), 40.0,
         _chain(0, 1.5, [(2, 0), (6, 4.0)]) + _chain(1, 9.0, [(5, 0)]), noise=20.0),
    # MP3's encoder delay: LAME's header says how much to drop, and the decoder drops it.
    Call("stereo-48k.mp3", 48000, 2, ("MP3", "MPEG_LAYER_III"), 30.0,
         _chain(0, 3.0, [(6, 0)]) + _chain(1, 20.0, [(1, 0)])),
    # Longer than an hour, speech only in its last minute.
    Call("hour-8k.wav", 8000, 1, ("WAV", "ULAW"), 3700.0, _chain(0, 3640.0, [(5, 0), (0, 2.0)])),
]


@pytest.fixture(scope="module")
def truth_run(stack, s3, pg) -> tuple[dict[str, sa.Row], list[sa.Row]]:
    prefix = day_prefix("calls/", DAY)
    for call in CALLS:
        s3.put_bytes(s3.uri(f"{prefix}{call.name}"), build(call))
    run_through(s3, pg, DAY, "truth-2128")
    with pg.connect() as c:
        recs = {r.object_key.rsplit("/", 1)[1]: r for r in c.execute(sa.text(
            "SELECT id, object_key, status, duration_s FROM recordings WHERE call_date = :d"), {"d": DAY})}
        segs = c.execute(sa.text(
            "SELECT recording_id, channel, start_s, end_s, text, word_starts FROM segments WHERE recording_id "
            "IN (SELECT id FROM recordings WHERE call_date = :d) ORDER BY recording_id, channel, start_s"),
            {"d": DAY}).all()
    return recs, segs


# A segment (or word) may reach into the context kept around a region (pad_s), give or take the
# VAD's frame its edge was found in.
EDGE_S = DEFAULT_CHUNKING.pad_s + FRAME_MS / 1000
# A hit starts within five of Whisper's 20 ms alignment steps after the engine's own time for the word in
# its piece alone (another context moves it a step or two), and at most 0.3 s before it: a hit that fell
# back to its segment's start (no word times) lands further back, every word here being at least 0.5 s
# into its turn ("sorry"). The play link then starts at or just before the hit (search_page.play_from).
HIT_EARLY_S, HIT_LATE_S = 0.3, 0.1


def speech(call: Call) -> dict[int, list[tuple[float, float]]]:
    """Per channel, its speech as the chunker keeps it: turns with a pause of at most max_merge_gap_s
    between them are one span (the pause stays in the region, and a segment may run across it)."""
    out: dict[int, list[tuple[float, float]]] = {}
    for ch, spans in truth(call).items():
        joined: list[tuple[float, float]] = []
        for a, b in spans:
            if joined and a - joined[-1][1] <= DEFAULT_CHUNKING.max_merge_gap_s:
                joined[-1] = (joined[-1][0], b)
            else:
                joined.append((a, b))
        out[ch] = joined
    return out


def test_the_calls_are_packed_and_cut_as_meant():
    """What the checks below rely on: the stereo call's chunk packs several regions, and the 16 kHz
    call's long region is cut inside its speech (two regions that touch)."""
    params = chunking_for("whisper-tiny")
    chunks = {c.name: [ch for ch, _ in chunk_recording(decode(build(c)), params)] for c in CALLS[:2]}
    assert max(len(c.regions) for c in chunks["stereo-8k.wav"]) >= 3
    regions = [r for c in chunks["mono-16k.wav"] for r in c.regions]
    assert any(a[1] == b[0] for a, b in zip(regions, regions[1:], strict=False))


def test_every_call_is_done_and_as_long_as_built(truth_run):
    recs, _ = truth_run
    got = {n: (r.status, round(float(r.duration_s), 3)) for n, r in recs.items()}
    assert got == {c.name: ("done", c.length_s) for c in CALLS}


def test_every_segment_and_word_start_lies_in_its_channels_speech(truth_run):
    recs, segs = truth_run
    bad = []
    for call in CALLS:
        spans = speech(call)
        mine = [s for s in segs if s.recording_id == recs[call.name].id]
        for s in mine:
            on = spans.get(s.channel, [])
            if not any(a - EDGE_S <= s.start_s and s.end_s <= b + EDGE_S for a, b in on):
                bad.append((call.name, s.channel, s.start_s, s.end_s, s.text))
            bad += [(call.name, s.channel, "word", w, s.text) for w in s.word_starts or []
                    if not any(a - EDGE_S <= w <= b + EDGE_S for a, b in on)]
        # Each party's every turn is heard on its own channel.
        bad += [(call.name, ch, "unheard", a, b) for ch, turns in truth(call).items() for a, b in turns
                if not any(s.channel == ch and s.start_s < b and s.end_s > a for s in mine)]
    assert not bad


def test_a_hit_plays_from_just_before_its_word(truth_run, pg):
    bad = []
    for call in CALLS:
        for ch, turn, at in call.places:
            if turn not in WORDS:
                continue
            word, offset = WORDS[turn]
            want = at + offset
            hits = [(h["channel"], round(h["hit_s"], 2)) for h in search(
                pg, word, limit=100, filters=SearchFilters(from_date=DAY, to_date=DAY, fuzzy=False))
                if h["object_key"].endswith("/" + call.name)]
            if not (len(hits) == 1 and hits[0][0] == ch and want - HIT_EARLY_S <= hits[0][1] <= want + HIT_LATE_S):
                bad.append((call.name, word, ch, round(want, 2), hits))
    assert not bad


# ---------------------------------------------------------------- a diarized mono call

MONO_DAY = date(2132, 3, 7)
# Both parties' turns on one channel, alternately (the agent first, so speaker_1 is the agent), with a
# conversation's pauses: 0.3-0.5 s ones (the VAD's hangover can close them below the diarizer's join_s,
# so the change falls inside a stretch of "unbroken" speech) and 0.8-2 s ones.
MONO = Call("mono-diarized-8k.wav", 8000, 1, ("WAV", "ULAW"), 48.0,
            _chain(0, 1.0, [(0, 0), (1, 0.3), (2, 1.2), (3, 0.5), (4, 2.0), (5, 0.8), (6, 0.4), (7, 1.5)]))
PARTY = {0: "speaker_1", 1: "speaker_2"}  # the sample's channel (0 agent, 1 customer) -> its label here
# A change of speaker that the VAD sees inside unbroken speech lies inside one of the diarizer's units
# (at most unit_s), which takes one label: the unit's minority, at most half a unit, is heard as the
# other voice. That much of the other voice in a segment is the error the design accepts; beyond it
# a turn was mislabelled. Over the call, the other voice's share stays within the worst per-file DER
# docs/benchmarks.md measures on calls rearranged from these turns (7.1 %).
OTHER_VOICE_S = DEFAULT_DIARIZATION.unit_s / 2
OTHER_VOICE_SHARE = 0.071


def _voices(call: Call) -> dict[str, list[tuple[float, float]]]:
    """Per label: where that party speaks in the mono call (its turns, as labelled)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for _, turn, at in call.places:
        ch, a, b = TURNS[turn]
        out.setdefault(PARTY[ch], []).append((at + MARGIN_S, at + MARGIN_S + (b - a)))
    return out


def _overlap(a: float, b: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in spans)


def test_a_diarized_mono_call_keeps_its_times_and_speakers(stack, s3, pg):
    """The mono call end to end: diarized at chunking (each chunk one voice), whisper-tiny, placed, loaded.

    Every segment and word start lies in the call's speech and a hit plays from just before its
    word, as above. Each segment's label is the true speaker of most of its time, except where the
    other voice in it is within OTHER_VOICE_S (measured: the agent's first 0.16 s after a 0.4 s pause,
    heard as "No," and labelled speaker_2; 0.39 s of the other voice in 29.9 s of segments, 1.3 %)."""
    s3.put_bytes(s3.uri(f"{day_prefix('calls/', MONO_DAY)}{MONO.name}"), build(MONO))
    run_through(s3, pg, MONO_DAY, "truth-mono-2132")
    with pg.connect() as c:
        rec = c.execute(sa.text("SELECT id, status FROM recordings WHERE call_date = :d"), {"d": MONO_DAY}).one()
        segs = c.execute(sa.text("SELECT speaker, start_s, end_s, text, word_starts FROM segments "
                                 "WHERE recording_id = :r ORDER BY start_s"), {"r": rec.id}).all()
    assert rec.status == "done" and {s.speaker for s in segs} == set(PARTY.values())
    voices, spans = _voices(MONO), speech(MONO)[0]
    bad, other_s, total_s = [], 0.0, 0.0
    for s in segs:
        if not any(a - EDGE_S <= s.start_s and s.end_s <= b + EDGE_S for a, b in spans):
            bad.append(("outside", s.start_s, s.end_s, s.text))
        bad += [("word", w, s.text) for w in s.word_starts or []
                if not any(a - EDGE_S <= w <= b + EDGE_S for a, b in spans)]
        heard = {v: _overlap(s.start_s, s.end_s, t) for v, t in voices.items()}
        other = sum(t for v, t in heard.items() if v != s.speaker)
        if other > OTHER_VOICE_S:  # a segment mostly of the other voice passes only while that is this short
            bad.append(("speaker", s.speaker, s.start_s, s.end_s, {v: round(t, 2) for v, t in heard.items()}, s.text))
        total_s += sum(heard.values())
        other_s += other
    if other_s > OTHER_VOICE_SHARE * total_s:
        bad.append(("other voice", round(other_s, 2), "of", round(total_s, 2)))
    for _, turn, at in MONO.places:
        if turn in WORDS:
            word, offset = WORDS[turn]
            want = at + offset
            hits = [(h["speaker"], round(h["hit_s"], 2)) for h in search(
                pg, word, limit=100, filters=SearchFilters(from_date=MONO_DAY, to_date=MONO_DAY, fuzzy=False))]
            if not (len(hits) == 1 and hits[0][0] == PARTY[TURNS[turn][0]]
                    and want - HIT_EARLY_S <= hits[0][1] <= want + HIT_LATE_S):
                bad.append(("hit", word, round(want, 2), hits))
    assert not bad
