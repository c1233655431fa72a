"""The real DAG, run with dag.test() against the embedded Postgres and object store."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.dev.evaluation import corpus_wer, wer
from callscribe.discovery import day_prefix
from callscribe.samples import labels, sample_files

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 10)
CHANNEL_WER_BOUND = 0.35  # Whisper tiny.en on 8 kHz synthetic speech; ~0.1-0.27 measured
OVERALL_WER_BOUND = 0.25


def _counts(pg) -> dict:
    with pg.connect() as c:
        return {
            t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("recordings", "transcripts", "segments", "batch_metrics")
        }


@pytest.fixture(scope="module")
def first_run(stack, s3, pg):
    from callscribe.cli import run_day

    prefix = day_prefix("calls/", DAY)
    for f in sample_files():
        s3.put_bytes(s3.uri(prefix + f.name), f.read_bytes(), metadata={"agent-id": "agent-42"})
    s3.put_bytes(s3.uri(prefix + "notes.txt"), b"not a call")
    s3.put_bytes(s3.uri(prefix + "broken.wav"), b"RIFF....WAVEfmt garbage" * 20)
    dr = run_day(DAY)
    return dr


def _recordings(pg) -> dict[str, dict]:
    with pg.connect() as c:
        rows = c.execute(sa.text(
            "SELECT id, object_key, status, last_error, channels, agent_id, duration_s FROM recordings "
            "WHERE call_date = :d"), {"d": DAY})
        return {r.object_key.rsplit("/", 1)[1]: dict(r._mapping) for r in rows}


def test_run_succeeds_and_every_recording_ends_in_a_known_state(first_run, pg):
    assert str(first_run.state).endswith("success")
    recs = _recordings(pg)
    for f in sample_files():
        assert recs[f.name]["status"] == "done", recs[f.name]
        assert recs[f.name]["agent_id"] == "agent-42"
    assert recs["notes.txt"]["status"] == "quarantined" and "not audio" in recs["notes.txt"]["last_error"]
    assert recs["broken.wav"]["status"] == "quarantined" and "cannot decode" in recs["broken.wav"]["last_error"]


def test_transcripts_match_what_was_said(first_run, pg):
    recs = _recordings(pg)
    refs, hyps = [], []
    with pg.connect() as c:
        for name, lab in labels().items():
            rows = c.execute(sa.text("SELECT channel, speaker, text FROM transcripts WHERE recording_id = :r "
                                     "ORDER BY channel"), {"r": recs[name]["id"]}).all()
            assert [r.speaker for r in rows] == [ch["speaker"] for ch in lab["channels"]]
            for row, ch in zip(rows, lab["channels"], strict=True):
                e = wer(ch["text"], row.text)
                assert e <= CHANNEL_WER_BOUND, f"{name} channel {row.channel}: WER {e:.2f}: {row.text!r}"
                refs.append(ch["text"])
                hyps.append(row.text)
    assert corpus_wer(zip(refs, hyps, strict=True)) <= OVERALL_WER_BOUND


def test_segments_are_in_order_with_speakers_per_channel(first_run, pg):
    recs = _recordings(pg)
    stereo = recs["call-0001.wav"]
    assert stereo["channels"] == 2
    with pg.connect() as c:
        for name, rec in recs.items():
            if rec["status"] != "done":
                continue
            segs = c.execute(sa.text("SELECT channel, seq, speaker, start_s, end_s FROM segments "
                                     "WHERE recording_id = :r ORDER BY channel, seq"), {"r": rec["id"]}).all()
            assert segs, name
            for ch in {s.channel for s in segs}:
                mine = [s for s in segs if s.channel == ch]
                assert [s.seq for s in mine] == list(range(len(mine)))
                assert all(0 <= s.start_s <= s.end_s <= rec["duration_s"] + 0.01 for s in mine)
                assert all(a.start_s <= b.start_s for a, b in zip(mine, mine[1:], strict=False))
                if rec["channels"] == 2:
                    assert len({s.speaker for s in mine}) == 1
                else:  # the two voices of a mono sample call, told apart at chunking
                    assert {s.speaker for s in mine} == {"speaker_1", "speaker_2"}, name
        speakers = dict(c.execute(sa.text("SELECT DISTINCT channel, speaker FROM segments WHERE recording_id = :r"),
                                  {"r": stereo["id"]}).all())
    assert speakers == {0: "agent", 1: "customer"}


def test_search_finds_the_moment(first_run, pg):
    from callscribe.search import SearchFilters, search

    hits = search(pg, '"cancel my account"', filters=SearchFilters(from_date=DAY, to_date=DAY))  # other tests' days too
    assert hits, "phrase not found"
    top = hits[0]
    assert top["object_key"].endswith("call-0001.wav") and top["speaker"] == "customer"
    assert top["start_s"] < top["end_s"] and "\x02cancel\x03" in top["snippet"]
    # The hit starts at "cancel", the turn's sixth word, not at the start of its segment.
    assert top["start_s"] + 0.5 < top["hit_s"] < top["end_s"], top
    assert search(pg, "discount", filters=SearchFilters(speaker="agent"))
    assert not search(pg, "discount", filters=SearchFilters(speaker="nobody"))


def test_rerunning_the_day_adds_nothing(first_run, pg):
    from callscribe.cli import run_day

    before = _counts(pg)
    keys_before = sorted(_recordings(pg))
    dr = run_day(DAY)
    assert str(dr.state).endswith("success")
    assert _counts(pg) == before
    assert sorted(_recordings(pg)) == keys_before
    with pg.connect() as c:
        claimed = c.execute(sa.text("SELECT recordings_found FROM pipeline_runs WHERE run_id = :r"),
                            {"r": dr.run_id}).scalar_one()
    assert claimed == 0


def test_reloading_the_same_shards_changes_nothing(first_run, pg, s3):
    from callscribe.loading import load_shards
    from callscribe.pipeline import WORK_PREFIX, run_key

    shards = [o.key for o in s3.list(f"{WORK_PREFIX}/runs/{run_key(first_run.run_id)}/shards/")]
    assert shards
    before = _counts(pg)
    content = sa.text("SELECT string_agg(concat_ws(',', recording_id, channel, seq, start_s, text), '|' "
                      "ORDER BY recording_id, channel, seq) FROM segments")
    with pg.connect() as c:
        text_before = c.execute(content).scalar_one()
    again = load_shards(s3, pg, [s3.uri(k) for k in shards])
    assert again.recordings == 0  # the rows already hold this run's transcript: not loaded twice
    assert _counts(pg) == before
    with pg.connect() as c:
        assert c.execute(content).scalar_one() == text_before
        assert set(c.execute(sa.text("SELECT loads FROM recordings WHERE status = 'done' AND call_date = :d"),
                             {"d": DAY}).scalars()) == {1}  # this run's day: other tests load theirs again


def test_report_row(first_run, pg):
    with pg.connect() as c:
        r = c.execute(sa.text("SELECT * FROM pipeline_runs WHERE run_id = :r"), {"r": first_run.run_id}).one()
    assert (r.recordings_found, r.recordings_done, r.recordings_quarantined) == (5, 3, 2)
    assert r.audio_s == pytest.approx(sum(v["duration_s"] for v in labels().values()), rel=0.01)
    assert r.segments > 0 and r.jobs >= 1
    # the listing's time read on the store's clock too (the verdict's cut-off; test_arrivals.py)
    assert r.store_listed_at is not None and abs((r.store_listed_at - r.listed_at).total_seconds()) < 5
    # and the store asked for the uploads under way under the day's prefix (none here; test_arrivals.py)
    assert r.uploads_in_flight == []


def test_cli_status_and_search_json(first_run, stack):
    env_cli = [sys.executable, "-m", "callscribe.cli"]
    out = subprocess.run([*env_cli, "status", "--date", str(DAY), "--json"], capture_output=True, text=True,
                         check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["status"] for r in rows} == {"done", "quarantined"}
    assert all({"key", "status", "error", "duration_s", "segments"} <= r.keys() for r in rows)
    out = subprocess.run([*env_cli, "search", "internet connection", "--json", "--limit", "3", "--from", str(DAY),
                          "--to", str(DAY)], capture_output=True, text=True, check=True).stdout
    hits = [json.loads(line) for line in out.splitlines()]
    assert hits and hits[0]["key"] == f"calls/{DAY:%Y/%m/%d}/call-0002.mp3"
    assert {"key", "channel", "speaker", "start", "end", "hit", "snippet"} <= hits[0].keys()
    assert hits[0]["start"] <= hits[0]["hit"] <= hits[0]["end"]
    every = subprocess.run([*env_cli, "search", "internet connection", "--json", "--limit", "3", "--from", str(DAY),
                            "--to", str(DAY), "--all-dates"], capture_output=True, text=True, check=True).stdout
    assert json.loads(every.splitlines()[0])["key"] == hits[0]["key"]  # one day: the same best hit
