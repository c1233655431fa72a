"""The worker times each batch's segments in the recording as the batch finishes, while the engine
has the next one, not all after the last batch; what it writes is what placing them at the end gave."""

from __future__ import annotations

from callscribe import worker
from callscribe.engines import Segment, Word
from callscribe.manifests import from_parquet
from callscribe.transcription import place, region_onsets
from tests.unit.test_worker_progress import SHARD, Recorder, _setup


class Worded(Recorder):
    """A Recorder whose segments time two words, as the native Granite engine's do."""

    def run(self, batch):
        super().run(batch)
        return [[Segment(0.0, len(a) / 16000, f"w{len(a)} end", (Word(0.0, 0.02, f"w{len(a)}"),
                                                                   Word(0.03, 0.05, "end")))] for a in batch]


def test_each_batch_is_placed_before_the_engine_runs_the_last_one(monkeypatch):
    job, store = _setup(8)
    eng = Worded(store)
    placed_at: dict[int, int] = {}  # recording id -> batches the engine had run when its chunk was placed
    real = worker.place_chunk

    def spy(regions, channel, audio, segs):
        placed_at[len(audio) // 1000] = len(eng.batches)  # recording r's chunk is r * 1000 samples
        return real(regions, channel, audio, segs)

    monkeypatch.setattr(worker, "place_chunk", spy, raising=False)
    worker.run_job(job, store, eng)
    assert sorted(placed_at) == list(range(1, 9))
    assert len(eng.batches) >= 3
    assert min(placed_at.values()) < len(eng.batches)  # not all once the engine was done

    df, info = from_parquet(store.objects[SHARD])
    assert info["failures"] == []
    for r in range(1, 9):  # what placing each chunk at the end gives
        c = job.chunks[r - 1]
        audio = worker.fetch_chunks(store, job, {})[r - 1]
        segs = Worded(store).run([audio])[0]
        want = place(c.region_map(), c.channel, segs, region_onsets(audio, c.region_map()))
        got = df[df["recording_id"] == r]
        assert [(s.start, s.end, s.text, list(s.word_starts)) for s in want] == [
            (row.start_s, row.end_s, row.text, list(row.word_starts)) for row in got.itertuples()]


def test_a_chunk_whose_segments_cannot_be_placed_fails_its_recording_not_the_job(monkeypatch):
    job, store = _setup(6)
    real = worker.place_chunk

    def broken_for_recording_3(regions, channel, audio, segs):
        if len(audio) == 3000:  # recording 3's chunk
            raise ValueError("a word time the regions cannot hold")
        return real(regions, channel, audio, segs)

    monkeypatch.setattr(worker, "place_chunk", broken_for_recording_3)
    worker.run_job(job, store, Worded(store))
    df, info = from_parquet(store.objects[SHARD])
    assert [f["recording_id"] for f in info["failures"]] == [3]
    assert "placing its segments in the recording failed: ValueError" in info["failures"][0]["reason"]
    assert sorted(set(df["recording_id"])) == [1, 2, 4, 5, 6]
