"""A file that kills the chunk task's process (a crash in a native decoder, the memory of a huge
file, a task timeout) takes down only itself, not its group.

The chunk task runs in a process of its own here, as Airflow runs it, with the decoder made to
kill that process on one file: the task's retry must chunk the rest of its group and leave the
file `failed` with a reason, instead of dying on it again on every try and every run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe import discovery
from callscribe.manifests import from_parquet
from tests.integration.helpers import upload_day

pytestmark = pytest.mark.integration

# The chunk task, as Airflow would run it, with a decoder that dies on one file (SIGKILL: no
# Python cleanup, as a segfault or the kernel's OOM killer gives).
CHUNK_TASK = textwrap.dedent("""
    import os, signal, sys
    from callscribe import pipeline
    from callscribe.db import engine_from_env
    from callscribe.storage import store

    real = pipeline.decode

    def decode(data, name):
        if name.endswith(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(data, name)

    pipeline.decode = decode
    ids = [int(i) for i in sys.argv[2].split(",")]
    print(pipeline.chunk_group(store(), engine_from_env(), ids, sys.argv[1], 0))
""")


def _chunk_task(run: str, ids: list[int], crash_on: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHUNK_TASK, run, ",".join(map(str, ids)), crash_on],
                          capture_output=True, text=True, timeout=300)


def _rows(pg, ids: list[int]) -> dict[str, sa.Row]:
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT id, object_key, status, last_error, attempts FROM recordings "
                                 "WHERE id = ANY(:ids)"), {"ids": ids})
        return {r.object_key.rsplit("/", 1)[1]: r for r in rows}


def _chunked_after_a_crash(s3, pg, run: str, ids: list[int], crasher: str) -> dict[str, sa.Row]:
    """The chunk task dies on ``crasher``; its retry (the file still kills the decoder) must finish."""
    first = _chunk_task(run, ids, crasher)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    retry = _chunk_task(run, ids, crasher)
    assert retry.returncode == 0, retry.stderr[-3000:]
    _, meta = from_parquet(s3.get_bytes(retry.stdout.strip().splitlines()[-1]))
    rows = _rows(pg, ids)
    chunked = {r.id for r in rows.values() if r.status == "chunked"}
    assert chunked == {r.id for n, r in rows.items() if n != crasher}
    assert {e["recording_id"] for e in meta["recordings"]} == chunked
    return rows


def test_a_file_that_kills_the_chunk_task_fails_alone(stack, s3, pg):
    day = date(2029, 2, 3)
    upload_day(s3, day)
    run = "chunk-crash"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    names = sorted(_rows(pg, ids))
    assert len(names) >= 3
    crasher = names[1]  # neither first nor last: some of its group before it, some after

    rows = _chunked_after_a_crash(s3, pg, run, ids, crasher)
    bad = rows[crasher]
    assert bad.status == "failed" and "died" in bad.last_error, bad
    # One attempt per run, however often the task ran.
    assert all(r.attempts == 1 for r in rows.values())

    # The next run tries it again (the machine may have been at fault, not the file), and it
    # fails alone again, one attempt further.
    discovery.release(pg, run)
    run2 = "chunk-crash-2"
    again = discovery.discover(s3, pg, day, "calls/", run2)
    assert sorted(again) == sorted(ids)
    rows = _chunked_after_a_crash(s3, pg, run2, again, crasher)
    assert rows[crasher].status == "failed" and rows[crasher].attempts == 2
    discovery.release(pg, run2)


def test_a_chunk_task_stopped_by_hand_blames_no_file(stack, s3, pg, monkeypatch):
    """`callscribe run` interrupted (Ctrl-C) while a file is decoded, then run again under the same
    run id: the interruption was not the file's doing, so it is chunked, not failed as a crash."""
    from callscribe import pipeline

    day = date(2029, 2, 5)
    upload_day(s3, day)
    run = "chunk-interrupted"
    ids = discovery.discover(s3, pg, day, "calls/", run)
    target = sorted(_rows(pg, ids))[0]
    real = pipeline.decode

    def interrupted(data, name):
        if name.endswith(target):
            raise KeyboardInterrupt
        return real(data, name)

    monkeypatch.setattr(pipeline, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.chunk_group(s3, pg, ids, run, 0)
    monkeypatch.undo()
    pipeline.chunk_group(s3, pg, ids, run, 0)
    rows = _rows(pg, ids)
    assert {n: r.status for n, r in rows.items()} == {n: "chunked" for n in rows}, rows
    assert all(r.attempts == 1 for r in rows.values())
    discovery.release(pg, run)
