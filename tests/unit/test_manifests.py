import pandas as pd

from callscribe.manifests import (
    BatchMetric,
    ChunkRef,
    JobManifest,
    RecordingEntry,
    ShardInfo,
    chunks_frame,
    chunks_from_frame,
    from_parquet,
    to_parquet,
)


def _chunk(i: int) -> ChunkRef:
    regions = [(0.0, i * 10.0, i * 10.0 + 0.5), (0.5, i * 10.0 + 4.0, i * 10.0 + 4.5)] if i % 2 else []
    return ChunkRef(recording_id=7, channel=i % 2, index=i, speaker="agent", start_s=i * 10.0, end_s=i * 10.0 + 1,
                    pack_offset=i * 16000, n_samples=16000, pack_rate=8000 if i == 3 else 16000, regions=regions)


def test_chunk_manifest_round_trip_keeps_metadata():
    chunks = [_chunk(i) for i in range(5)]
    meta = {"recordings": [RecordingEntry(recording_id=7, n_channels=2, pack_uri="s3://b/p.flac",
                                          audio_s=5.0).model_dump()]}
    df, back_meta = from_parquet(to_parquet(chunks_frame(chunks), meta))
    assert chunks_from_frame(df) == chunks
    assert back_meta == meta


def test_a_chunk_manifest_from_before_packing_reads_as_one_region_per_chunk():
    df = chunks_frame([_chunk(0), _chunk(2)]).drop(columns=["regions", "pack_rate"])
    back = chunks_from_frame(df)
    assert [c.region_map() for c in back] == [[(0.0, 0.0, 1.0)], [(0.0, 20.0, 21.0)]]
    assert [c.pack_rate for c in back] == [16000, 16000]
    assert _chunk(1).region_map() == [(0.0, 10.0, 10.5), (0.5, 14.0, 14.5)]


def test_job_manifest_json_round_trip():
    job = JobManifest(job_id="job-00000", run_id="r", engine="whisper-tiny", batch_audio_s=240,
                      shard_uri="s3://b/s.parquet",
                      recordings=[RecordingEntry(recording_id=7, n_channels=2, pack_uri="s3://b/p.flac")],
                      chunks=[_chunk(0), _chunk(1), _chunk(3)])
    assert JobManifest.model_validate_json(job.model_dump_json()) == job
    assert job.audio_s == 1.0 + 1.0 + 2.0  # the 8 kHz chunk's 16,000 samples are 2 s


def test_shard_info_round_trip():
    info = ShardInfo(job_id="j", run_id="r", engine="e", recordings=[],
                     batches=[BatchMetric(batch_index=0, n_chunks=3, audio_s=9, model_s=1, wall_s=1.2, device="cpu")])
    df = pd.DataFrame({"recording_id": [1], "text": ["hi"]})
    _, meta = from_parquet(to_parquet(df, info))
    assert ShardInfo(**meta) == info


def test_a_run_with_manifests_from_before_and_after_packing_plans_them_together():
    # A run whose chunk tasks finished before an upgrade and whose plan_jobs runs after it.
    old, _ = from_parquet(to_parquet(chunks_frame([_chunk(0)]).drop(columns=["regions", "pack_rate"]), {}))
    new, _ = from_parquet(to_parquet(chunks_frame([_chunk(1), _chunk(3)]), {}))
    back = chunks_from_frame(pd.concat([old, new], ignore_index=True))
    assert back == [_chunk(0), _chunk(1), _chunk(3)]
    assert back[0].region_map() == [(0.0, 0.0, 1.0)] and back[2].pack_rate == 8000


def test_shards_from_before_confidences_load_null_beside_new_ones():
    """The confidence column is optional: a shard written before it, a shard of an engine without
    confidences (an all-null column) and a new one each give the loader a value or None per row."""
    from callscribe.loading import confidences
    from callscribe.manifests import CONFIDENCE, SEGMENT_COLUMNS, WORD_STARTS

    rows = [(7, 0, 0, "agent", 0.0, 1.0, "hello", None), (7, 0, 1, "agent", 1.5, 2.0, "there", [1.5])]
    old, _ = from_parquet(to_parquet(pd.DataFrame(rows, columns=[*SEGMENT_COLUMNS, WORD_STARTS]), {}))
    none, _ = from_parquet(to_parquet(pd.DataFrame([(*r, None) for r in rows],
                                                   columns=[*SEGMENT_COLUMNS, WORD_STARTS, CONFIDENCE]), {}))
    new, _ = from_parquet(to_parquet(pd.DataFrame([(*rows[0], 0.91234567), (*rows[1], None)],
                                                  columns=[*SEGMENT_COLUMNS, WORD_STARTS, CONFIDENCE]), {}))
    assert CONFIDENCE not in old
    assert confidences(old) == [None, None]
    assert confidences(none) == [None, None]
    assert confidences(new) == [0.9123, None]
    # Frames of both kinds put together (as a reader of several shards would) keep the same values.
    assert confidences(pd.concat([old, new], ignore_index=True)) == [None, None, 0.9123, None]


def _job(recordings: list[int], chunks: list[ChunkRef]) -> dict:
    return dict(job_id="job-00000", run_id="r", engine="whisper-tiny", batch_audio_s=240, shard_uri="s3://b/s.parquet",
                recordings=[RecordingEntry(recording_id=r, n_channels=2) for r in recordings], chunks=chunks)


def test_a_job_manifest_holds_each_recording_and_chunk_once():
    """A recording listed twice, or a chunk given twice, would be transcribed and loaded twice."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="recording 7 is listed 2 times"):
        JobManifest(**_job([7, 7], [_chunk(0)]))
    with pytest.raises(ValidationError, match=r"chunk \(7, 0, 0\) is given 2 times"):
        JobManifest(**_job([7], [_chunk(0), _chunk(1), _chunk(0)]))
    with pytest.raises(ValidationError, match="chunks of recording 7, which the job does not list"):
        JobManifest(**_job([8], [_chunk(0)]))
    assert len(JobManifest(**_job([7, 8], [_chunk(0), _chunk(1)])).chunks) == 2


def test_plan_jobs_takes_a_recording_in_two_chunk_manifests_once():
    """Two chunk manifests that both hold a recording (a group chunked twice) plan it once."""
    from callscribe.batching import JobSizing
    from callscribe.pipeline import plan_jobs

    class Store:
        def __init__(self):
            self.objects: dict[str, bytes] = {}

        def uri(self, key: str) -> str:
            return f"s3://b/{key}"

        def get_bytes(self, uri: str) -> bytes:
            return self.objects[uri]

        def put_bytes(self, uri: str, data: bytes, *_) -> None:
            self.objects[uri] = data

        def exists(self, uri: str) -> bool:
            return uri in self.objects

    store = Store()
    entry = RecordingEntry(recording_id=7, n_channels=2, pack_uri="s3://b/p.wav", audio_s=5.0).model_dump()
    other = RecordingEntry(recording_id=9, n_channels=2, pack_uri="s3://b/q.wav", audio_s=1.0).model_dump()
    nine = _chunk(0).model_copy(update={"recording_id": 9})
    store.objects["s3://b/m0"] = to_parquet(chunks_frame([_chunk(i) for i in range(5)]), {"recordings": [entry]})
    store.objects["s3://b/m1"] = to_parquet(chunks_frame([_chunk(i) for i in range(5)] + [nine]),
                                            {"recordings": [entry, other]})
    uris = plan_jobs(store, ["s3://b/m0", "s3://b/m1"], "run", "whisper-tiny", sizing=JobSizing(1, 3600, 0))
    jobs = [JobManifest.model_validate_json(store.objects[u]) for u in uris]
    assert sorted(r.recording_id for j in jobs for r in j.recordings) == [7, 9]
    assert sorted((c.recording_id, c.index) for j in jobs for c in j.chunks) == [(7, i) for i in range(5)] + [(9, 0)]
    assert {j.batch_audio_s for j in jobs} == {240.0}  # the CPU default
    # The batch budget is the sizing's: a GPU pod's jobs carry the batch the GPU was measured at.
    uris = plan_jobs(store, ["s3://b/m1"], "run-gpu", "granite-nar-native",
                     sizing=JobSizing(1, 3600, 0, batch_s=3840.0))
    assert {JobManifest.model_validate_json(store.objects[u]).batch_audio_s for u in uris} == {3840.0}

    # A chunk manifest that cannot be read holds back only its own recordings.
    store.objects["s3://b/m2"] = b"not parquet"
    uris = plan_jobs(store, ["s3://b/m2", "s3://b/m1"], "run2", "whisper-tiny", sizing=JobSizing(1, 3600, 0))
    jobs = [JobManifest.model_validate_json(store.objects[u]) for u in uris]
    assert sorted(r.recording_id for j in jobs for r in j.recordings) == [7, 9]
