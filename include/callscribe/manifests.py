"""What crosses process boundaries: chunk manifests, job manifests and transcript shards.

Only URIs of these travel through XCom. Chunk manifests and shards are Parquet (one row
per chunk or segment, with the per-recording and per-batch facts in the file's key-value
metadata); job manifests are JSON, read by the worker container.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, model_validator

CHUNK_COLUMNS = ["recording_id", "channel", "index", "speaker", "start_s", "end_s", "pack_offset", "n_samples",
                 "pack_rate", "regions"]
SEGMENT_COLUMNS = ["recording_id", "channel", "seq", "speaker", "start_s", "end_s", "text"]
# Optional in a shard (shards from before word times lack it): per segment, when each of its
# text's whitespace-separated words starts, in seconds in the recording; null when unknown.
WORD_STARTS = "word_starts"
# Optional in a shard too (shards from before confidences lack it): the engine's confidence in
# the segment, in [0, 1]; null when the engine has none.
CONFIDENCE = "confidence"
_META_KEY = b"callscribe"
# The job manifest's format. Every model here ignores a field it does not know (pydantic's default):
# right for what the Airflow side reads from a newer worker, wrong for a worker given a job whose new
# field changes how it must be read (older images ignored plan_id, pack_rate and the region map).
# Bump it with such a field: a worker refuses a job of a newer format (upgrade the worker image).
JOB_VERSION = 1


class RecordingEntry(BaseModel):
    recording_id: int
    n_channels: int
    pack_uri: str | None = None  # None when the recording holds no speech
    audio_s: float = 0.0  # speech audio in its chunks


Region = tuple[float, float, float]  # (start in the chunk's audio, start in the recording, end in the recording), s


class ChunkRef(BaseModel):
    recording_id: int
    channel: int
    index: int
    speaker: str
    start_s: float  # in the recording: its first region's start
    end_s: float  # its last region's end
    pack_offset: int  # first sample in the pack
    n_samples: int
    pack_rate: int = 16_000  # the pack's sample rate: 8 kHz calls are stored at 8 kHz, resampled by the worker
    # The speech regions packed into the chunk; empty in manifests written before packing,
    # where the chunk is one region from start_s to end_s.
    regions: list[Region] = []

    def region_map(self) -> list[Region]:
        return [tuple(r) for r in self.regions] or [(0.0, self.start_s, self.end_s)]


class JobManifest(BaseModel):
    """One worker invocation: a set of whole recordings and where to write the result."""

    version: int = JOB_VERSION
    job_id: str
    run_id: str
    engine: str
    batch_audio_s: float = Field(gt=0)
    shard_uri: str
    recordings: list[RecordingEntry]
    chunks: list[ChunkRef]
    # New for every plan: a run id can be used again (a cleared run), and a shard at the job's
    # place from an earlier plan is not this one's result (None: planned before plan ids).
    plan_id: str | None = None

    @model_validator(mode="after")
    def _each_once(self) -> JobManifest:
        """A recording listed twice, or a chunk given twice, would be transcribed and loaded twice."""
        for rid, n in Counter(r.recording_id for r in self.recordings).items():
            if n > 1:
                raise ValueError(f"recording {rid} is listed {n} times")
        for key, n in Counter((c.recording_id, c.channel, c.index) for c in self.chunks).items():
            if n > 1:
                raise ValueError(f"chunk {key} is given {n} times")
        unlisted = {c.recording_id for c in self.chunks} - {r.recording_id for r in self.recordings}
        if unlisted:
            raise ValueError(f"chunks of recording {min(unlisted)}, which the job does not list")
        return self

    @property
    def audio_s(self) -> float:
        return sum(c.n_samples / c.pack_rate for c in self.chunks)


class BatchMetric(BaseModel):
    batch_index: int
    n_chunks: int
    audio_s: float
    padded_audio_s: float = 0.0  # longest chunk x chunks: what a padded batch costs
    # In the engine: starting the batch and finishing it. With batches overlapped (run_batches),
    # the next batch's start waits for this one's device work, so per batch the split shifts by one;
    # the sums over a job are right.
    model_s: float
    wall_s: float  # the batch's share of the runner's time: waiting for its input, and model_s
    device: str
    peak_mem_bytes: int | None = None
    oom_splits: int = 0


class RecordingFailure(BaseModel):
    """A recording of the job the worker could not transcribe; its neighbours went on."""

    recording_id: int
    reason: str


class ShardInfo(BaseModel):
    job_id: str
    run_id: str
    engine: str
    recordings: list[RecordingEntry]
    batches: list[BatchMetric]
    failures: list[RecordingFailure] = []
    plan_id: str | None = None  # the job manifest's


class JobFailure(BaseModel):
    """Written beside the shard's place when a worker gives up on its whole job."""

    job_id: str
    run_id: str
    error: str
    # The deployment's fault, not the recordings' (a worker image too old for the job, a pod never
    # scheduled or its image never pulled): the load gives their attempt back, so nights of it do
    # not leave every call `failed` for good. False in notes of images from before the field.
    deployment: bool = False


def failure_uri(shard_uri: str) -> str:
    """Where a job's failure note goes: next to where its shard would be."""
    return shard_uri.removesuffix(".parquet") + ".failed.json"


class JobProgress(BaseModel):
    """Beside a job's shard place while its worker runs: the chunks (indexes into the job's
    ``chunks``) the engine holds. A try whose process dies (a native crash, the OOM killer) leaves
    it behind, and the next try of the job learns from it which chunks to keep apart."""

    plan_id: str | None = None  # the job manifest's: a note of another plan is not this job's
    in_flight: list[int] = []  # in the engine now
    alone: bool = False  # in_flight is one chunk run on its own
    suspects: list[int] = []  # in flight when an earlier try died: each is run alone
    killers: list[int] = []  # an earlier try died running it alone: its recording fails

    def after_death(self) -> JobProgress:
        """What the next try knows: this note's try died with ``in_flight`` in the engine."""
        killers, suspects = set(self.killers), set(self.suspects)
        if self.alone and len(self.in_flight) == 1:
            killers |= set(self.in_flight)
        else:
            suspects |= set(self.in_flight)
        return JobProgress(plan_id=self.plan_id, suspects=sorted(suspects - killers), killers=sorted(killers))


def progress_uri(shard_uri: str) -> str:
    """Where a job's progress note goes: next to where its shard will be."""
    return shard_uri.removesuffix(".parquet") + ".progress.json"


def to_parquet(df: pd.DataFrame, meta: BaseModel | dict) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    payload = meta.model_dump_json() if isinstance(meta, BaseModel) else json.dumps(meta)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: payload.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def from_parquet(data: bytes) -> tuple[pd.DataFrame, dict]:
    table = pq.read_table(io.BytesIO(data))
    meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
    return table.to_pandas(), meta


def parquet_meta(data: bytes) -> dict:
    """The key-value metadata of a file ``to_parquet`` wrote, from its footer only: its rows are not
    decoded (a 200 h job's shard holds some 150,000 segments, over 100 MB once in pandas)."""
    return json.loads((pq.read_schema(io.BytesIO(data)).metadata or {}).get(_META_KEY, b"{}"))


def chunks_frame(chunks: list[ChunkRef]) -> pd.DataFrame:
    # The region map travels as JSON text: one plain column, read the same by any Parquet reader.
    rows = [{**c.model_dump(), "regions": json.dumps(c.regions)} for c in chunks]
    return pd.DataFrame(rows, columns=CHUNK_COLUMNS)


def chunks_from_frame(df: pd.DataFrame) -> list[ChunkRef]:
    # Rows from manifests written before packing have no region map (one region from start_s
    # to end_s) and 16 kHz packs; a run may mix both kinds when an upgrade lands mid-run.
    df = df.assign(
        regions=df["regions"].fillna("[]") if "regions" in df.columns else "[]",
        pack_rate=df["pack_rate"].fillna(16_000).astype(int) if "pack_rate" in df.columns else 16_000,
    )
    return [ChunkRef(**{**row, "regions": json.loads(row["regions"] or "[]")})
            for row in df[CHUNK_COLUMNS].to_dict("records")]
