"""A shard of very many calls, as a day of short calls makes in the GPU pods' jobs (200 h of speech a
job: thousands of calls; a day of hang-ups and IVR blips: tens of thousands in a few jobs).

The load took one advisory lock per object key, all in the shard's one transaction. Postgres keeps
every session's locks in one shared table of max_locks_per_transaction (64) x max_connections
entries: a shard past it failed with "out of shared memory" (for every other session too, while it
held them), which reads as a database outage, so the load was retried, and every later run
transcribed the same calls again and failed the same way: red for ever, none of them searchable.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from callscribe.loading import load_shards
from callscribe.manifests import CONFIDENCE, SEGMENT_COLUMNS, WORD_STARTS, RecordingEntry, ShardInfo, to_parquet
from tests.integration.helpers import chunked_calls

pytestmark = pytest.mark.integration
DAY = date(2038, 5, 1)
CALLS = 40_000  # past the embedded server's lock table (64 x 200 connections): a session's ~24,700th lock fails


def test_a_shard_of_tens_of_thousands_of_calls_loads(stack, s3, pg):
    run = "scheduled__rv2-huge-shard"
    ids = chunked_calls(pg, DAY, run, CALLS, name="hangup", duration_s=0.2)
    first = ids[0]  # one of them said something: its segment goes in with the rest
    rows = pd.DataFrame([(first, 0, 0, "mixed", 0.0, 0.2, "hello", [0.0], 0.9)],
                        columns=[*SEGMENT_COLUMNS, WORD_STARTS, CONFIDENCE])
    info = ShardInfo(job_id="job-00000", run_id=run, engine="test", batches=[],
                     recordings=[RecordingEntry(recording_id=i, n_channels=1) for i in ids])
    uri = s3.uri("_callscribe/tests/huge-shard.parquet")
    s3.put_bytes(uri, to_parquet(rows, info))
    result = load_shards(s3, pg, [uri])
    assert (result.shards, result.recordings, result.segments) == (1, CALLS, 1), result
    with pg.connect() as c:
        states = dict(c.execute(sa.text(
            "SELECT status || '/' || loads, count(*) FROM recordings WHERE call_date = :d GROUP BY 1"),
            {"d": DAY}).all())
        transcripts = c.execute(sa.text(
            "SELECT count(*) FROM transcripts t JOIN recordings r ON r.id = t.recording_id WHERE r.call_date = :d"),
            {"d": DAY}).scalar_one()
    assert states == {"done/1": CALLS}, states
    assert transcripts == CALLS
    # Loading the same shard again (a retried load task) changes nothing.
    again = load_shards(s3, pg, [uri])
    assert again.recordings == 0, again
