"""The worker's host work around a GPU it cannot see: ``python -m benchmarks.worker_host``.

A job shaped like a GPU pod's (packed chunks of about 28 s, three speech regions each, one
segment of about 70 timed words per chunk, as the native Granite engine returns) runs through
``worker.run_job`` with an in-memory store and a stand-in device: an engine whose ``start``
returns at once and whose ``finish`` returns once the batch has been "on the device" for its
audio / ``--device-rtfx`` seconds (a sleep, which leaves the host free, as a GPU does). What it
measures is the host: the job's wall against the device's busy time, and the tail, the seconds
from the last batch finished to the shard written, when the device is idle. Medians of
``--runs``. No GPU and no object store: the figures are the host's side of a pod's job only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from callscribe.audio import TARGET_SR, encode_pack
from callscribe.dev.bench import machine_info
from callscribe.engines import BaseEngine, Segment, Word
from callscribe.manifests import ChunkRef, JobManifest, RecordingEntry
from callscribe.worker import run_job

CHUNK_S = 28.0
WORDS = 70


class MemoryStore:
    """The four calls run_job makes, on a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get_bytes(self, uri: str) -> bytes:
        return self.objects[uri]

    def put_bytes(self, uri: str, data: bytes, *args: object) -> str:
        self.objects[uri] = data
        return uri

    def exists(self, uri: str) -> bool:
        return uri in self.objects

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)


class StandInDevice(BaseEngine):
    """Each batch is busy for its audio / ``rtfx`` seconds from its start; Granite-shaped segments."""

    name = "stand-in"
    takes_int16 = True

    def __init__(self, rtfx: float):
        self.rtfx = rtfx
        self.busy_until = 0.0
        self.last_finish = 0.0
        self.busy_s = 0.0

    def start(self, prepared):
        seconds = sum(len(a) for a in prepared) / TARGET_SR / self.rtfx
        begin = max(time.perf_counter(), self.busy_until)  # batches queue on the device
        self.busy_until = begin + seconds
        self.busy_s += seconds
        done = self.busy_until

        def finish():
            time.sleep(max(0.0, done - time.perf_counter()))
            self.last_finish = time.perf_counter()
            return [[_segment(len(a) / TARGET_SR)] for a in prepared]

        return finish

    def run(self, prepared):
        return self.start(prepared)()

    def peak_memory_bytes(self):
        return None


def _segment(duration: float) -> Segment:
    step = duration / WORDS
    words = tuple(Word(k * step, k * step + 0.8 * step, f"word{k}") for k in range(WORDS))
    return Segment(0.0, duration, " ".join(w.text for w in words), words, 0.9)


def build_job(recordings: int, chunks_per_recording: int) -> tuple[JobManifest, MemoryStore]:
    store = MemoryStore()
    g = np.random.default_rng(0)
    n = int(CHUNK_S * TARGET_SR)
    recs, refs = [], []
    for r in range(recordings):
        uri = f"s3://bench/packs/{r}.wav"
        pack = (g.standard_normal(n * chunks_per_recording) * 2000).astype(np.int16)
        store.objects[uri] = encode_pack(pack, TARGET_SR, "wav")
        recs.append(RecordingEntry(recording_id=r + 1, n_channels=1, pack_uri=uri))
        for k in range(chunks_per_recording):
            start = k * 40.0  # three regions, the pauses between them cut out
            regions = [(0.0, start, start + 9.0), (9.0, start + 11.0, start + 20.0), (18.0, start + 24.0, start + 34.0)]
            refs.append(ChunkRef(recording_id=r + 1, channel=0, index=k, speaker="agent", start_s=start,
                                 end_s=start + 34.0, pack_offset=k * n, n_samples=n, regions=regions))
    job = JobManifest(job_id="bench-host", run_id="bench", engine="stand-in", batch_audio_s=3840.0,
                      shard_uri="s3://bench/shards/job.parquet", recordings=recs, chunks=refs, plan_id="bench")
    return job, store


def measure(recordings: int, chunks_per_recording: int, rtfx: float, runs: int) -> dict:
    job, store = build_job(recordings, chunks_per_recording)
    rows = []
    for _ in range(runs + 1):  # the first run warms up
        eng = StandInDevice(rtfx)
        t = time.perf_counter()
        run_job(job, store, eng)
        end = time.perf_counter()
        rows.append({"wall_s": end - t, "device_busy_s": eng.busy_s, "tail_s": end - eng.last_finish})
    rows = rows[1:]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {"chunks": len(job.chunks), "audio_s": job.audio_s, "device_rtfx": rtfx, "runs": rows,
            "median": med, "job_rtfx": job.audio_s / med["wall_s"],
            "tail_share": med["tail_s"] / med["wall_s"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", type=int, default=100)
    ap.add_argument("--chunks-per-recording", type=int, default=12)
    ap.add_argument("--device-rtfx", type=float, default=4000.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    report = {"machine": machine_info("cpu"), **measure(args.recordings, args.chunks_per_recording,
                                                    args.device_rtfx, args.runs)}
    m = report["median"]
    print(f"{report['chunks']} chunks, {report['audio_s']:.0f} s of audio, device at {args.device_rtfx:.0f}x: "
          f"wall {m['wall_s']:.2f} s (device busy {m['device_busy_s']:.2f} s), tail {m['tail_s']:.3f} s "
          f"({100 * report['tail_share']:.1f} % of wall), job RTFx {report['job_rtfx']:.0f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
