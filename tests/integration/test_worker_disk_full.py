"""A worker whose local disk fills up mid-job: the machine's fault, not the calls'.

A GPU engine compiles lazily (torch.compile writes its kernels to TORCHINDUCTOR_CACHE_DIR /
TRITON_CACHE_DIR: the pod's /tmp, or a shared claim) for each batch shape it has not seen: on a full
disk every batch of a new shape fails with ENOSPC while shapes compiled before still run. The worker
took those failures for the chunks' own (each failed again alone, and the engine still recognised a
chunk it had before): their calls ended `failed` with "OSError: [Errno 28] No space left on device",
an attempt spent each run, `failed` for good after three, while the task's retry on another pod (or
after the cache is cleaned) would have transcribed them. The chunk task keeps nothing on local disk
(packs, manifests and notes go to the store; Python's tempfile falls back to /tmp when TMPDIR is
full), so only the worker has this edge.
"""

from __future__ import annotations

import textwrap
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery, loading, pipeline
from callscribe.config import s3_settings
from tests.integration.helpers import run_pod, upload_day

pytestmark = pytest.mark.integration

# A stand-in engine that "compiles" each new batch length, onto a disk that is full after the first.
DISK_FULL_ENGINE = textwrap.dedent("""
    import errno, sys
    from callscribe import engines, worker
    from callscribe.engines import BaseEngine, Segment

    class Compiling(BaseEngine):
        name = "whisper-tiny"
        device = "cuda"
        takes_int16 = True
        compiled = set()

        def run(self, batch):
            shape = (len(batch), max(len(a) for a in batch))
            if shape not in self.compiled:
                if self.compiled:  # the first shape's kernels fitted; the disk is full since
                    raise OSError(errno.ENOSPC, "No space left on device", "/tmp/torch-compile/fxgraph")
                self.compiled.add(shape)
            return [[Segment(0.0, 1.0, "hello there")] for _ in batch]

        def peak_memory_bytes(self):
            return None

    engines._FACTORIES["whisper-tiny"] = lambda **kw: Compiling()
    sys.exit(worker.main(sys.argv[1:]))
""")


def test_a_full_disk_mid_job_fails_the_job_not_its_calls(stack, s3, pg, tmp_path):
    day, run = date(2038, 6, 1), "scheduled__rv2-disk-full"
    upload_day(s3, day, copies=2)
    ids = discovery.discover(s3, pg, day, "calls/", run)
    manifest = pipeline.chunk_group(s3, pg, ids, run, 0)
    jobs = pipeline.plan_jobs(s3, [manifest], run, "whisper-tiny", batch_audio_s=20)  # several batches
    assert len(jobs) == 1
    out = run_pod(DISK_FULL_ENGINE, jobs[0], tmp_path)
    # The job fails as a whole, with the cause, for the task's retry (another pod, a cleaned disk).
    assert out.returncode != 0, out.stdout[-3000:]
    assert "No space left on device" in (tmp_path / "err.txt").read_text()
    loading.load_jobs(s3, pg, jobs, run)
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT id, status, attempts, last_error FROM recordings WHERE id = ANY(:ids)"),
                         {"ids": ids}).all()
    assert {r.status for r in rows} == {"chunked"}, [(r.id, r.status, r.last_error) for r in rows]
    assert all("No space left on device" in r.last_error for r in rows), [r.last_error for r in rows]
    # Once the disk has room, the task's retry (the real engine) transcribes every one of them, once.
    pipeline.run_worker_local(jobs[0], s3_settings())
    loading.load_jobs(s3, pg, jobs, run)
    discovery.close_run(pg, run)
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT status, loads, attempts FROM recordings WHERE id = ANY(:ids)"),
                         {"ids": ids}).all()
    assert {tuple(r) for r in rows} == {("done", 1, 1)}, rows
