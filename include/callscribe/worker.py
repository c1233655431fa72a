"""The worker container's command: transcribe one job manifest into one transcript shard.

    python -m callscribe.worker --job s3://bucket/_callscribe/runs/<run>/jobs/job-00000.json

Object-store settings come from CALLSCRIBE_S3_* variables (Kubernetes secrets in a pod).
The shard's URI is written to /airflow/xcom/return.json for the KubernetesPodOperator.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from callscribe import engines
from callscribe.audio import decode_flac
from callscribe.config import s3_from_env
from callscribe.manifests import SEGMENT_COLUMNS, JobManifest, ShardInfo, to_parquet
from callscribe.storage import Store
from callscribe.transcription import order_segments, place, run_batches

log = logging.getLogger("callscribe.worker")
DEFAULT_XCOM_PATH = "/airflow/xcom/return.json"


def fetch_chunks(store: Store, job: JobManifest, threads: int = 4) -> list[np.ndarray]:
    """Each chunk's audio, in the job's chunk order; one GET per recording pack."""
    packs = sorted({r.pack_uri for r in job.recordings if r.pack_uri})
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # int16 halves the memory a job holds; the batch reader converts each batch.
        audio = dict(zip(packs, pool.map(lambda u: decode_flac(store.get_bytes(u), "int16"), packs), strict=True))
    by_rec = {r.recording_id: r.pack_uri for r in job.recordings}
    out = []
    for c in job.chunks:
        pack = audio[by_rec[c.recording_id]]
        piece = pack[c.pack_offset : c.pack_offset + c.n_samples]
        if len(piece) != c.n_samples:
            raise ValueError(f"pack of recording {c.recording_id} is shorter than its manifest says")
        out.append(piece)
    return out


def run_job(job: JobManifest, store: Store, engine: engines.Engine | None = None) -> str:
    t0 = time.perf_counter()
    audios = fetch_chunks(store, job)
    log.info("job %s: %d recordings, %d chunks, %.1f s of speech fetched in %.1f s",
             job.job_id, len(job.recordings), len(job.chunks), job.audio_s, time.perf_counter() - t0)
    eng = engine or engines.create(job.engine)
    results, batches = run_batches(eng, audios, job.batch_audio_s)
    speakers = {(c.recording_id, c.channel): c.speaker for c in job.chunks}
    rows = []
    by_rec: dict[int, list] = {}
    for c, segs in zip(job.chunks, results, strict=True):
        by_rec.setdefault(c.recording_id, []).extend(place(c.start_s, c.end_s, c.channel, segs))
    for rid, placed in by_rec.items():
        seq_by_channel: dict[int, int] = {}
        for s in order_segments(placed):
            seq = seq_by_channel.get(s.channel, 0)
            seq_by_channel[s.channel] = seq + 1
            rows.append((rid, s.channel, seq, speakers[(rid, s.channel)], s.start, s.end, s.text))
    df = pd.DataFrame(rows, columns=SEGMENT_COLUMNS)
    info = ShardInfo(job_id=job.job_id, run_id=job.run_id, engine=eng.name, recordings=job.recordings,
                     batches=batches)
    store.put_bytes(job.shard_uri, to_parquet(df, info))
    wall = time.perf_counter() - t0
    log.info("job %s: %d segments written to %s; %.1f s audio in %.1f s (RTFx %.1f)",
             job.job_id, len(df), job.shard_uri, job.audio_s, wall, job.audio_s / wall if wall else 0.0)
    return job.shard_uri


def write_xcom(path: str, value: object) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(value))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m callscribe.worker", description=__doc__.splitlines()[0])
    ap.add_argument("--job", required=True, help="s3:// URI of the job manifest")
    ap.add_argument("--xcom-path", default=os.environ.get("CALLSCRIBE_XCOM_PATH", DEFAULT_XCOM_PATH))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = Store(s3_from_env())
    job = JobManifest.model_validate_json(store.get_bytes(args.job))
    shard = run_job(job, store)
    write_xcom(args.xcom_path, shard)
    return 0


if __name__ == "__main__":
    sys.exit(main())
