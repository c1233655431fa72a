"""Two load tasks of one run (a cleared task beside its first try) loading the same shards at once,
each shard in several transactions (loading.shard_parts): every call loaded once, failures failed,
no deadlock, whichever part of which task gets there first; and a reprocess of them the same way."""

from __future__ import annotations

import threading
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from callscribe import loading
from callscribe.loading import load_shards
from callscribe.manifests import (
    CONFIDENCE,
    SEGMENT_COLUMNS,
    WORD_STARTS,
    RecordingEntry,
    RecordingFailure,
    ShardInfo,
    to_parquet,
)
from tests.integration.helpers import chunked_calls

pytestmark = pytest.mark.integration
DAY = date(2038, 7, 1)
CALLS = 120


def _shards(s3, ids: list[int], run: str, tag: str) -> list[str]:
    uris = []
    for n, mine in enumerate((ids[0::2], ids[1::2])):  # interleaved keys: parts of both take turns
        rows = pd.DataFrame([(rid, 0, 0, "agent", 0.0, 1.0, f"word{rid % 7} hello {tag}", [0.0, 0.5], 0.9)
                             for rid in mine if rid % 10],
                            columns=[*SEGMENT_COLUMNS, WORD_STARTS, CONFIDENCE])
        info = ShardInfo(job_id=f"job-{n:05d}", run_id=run, engine="test", batches=[],
                         recordings=[RecordingEntry(recording_id=i, n_channels=1) for i in mine],
                         failures=[RecordingFailure(recording_id=i, reason="scripted") for i in mine if i % 10 == 0])
        uri = s3.uri(f"_callscribe/tests/parts-{tag}-{n}.parquet")
        s3.put_bytes(uri, to_parquet(rows, info))
        uris.append(uri)
    return uris


def _side_by_side(s3, pg, uris: list[str]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def load() -> None:
        start.wait()
        try:
            load_shards(s3, pg, uris)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def _states(pg) -> dict[str, int]:
    with pg.connect() as c:
        return dict(c.execute(sa.text(
            "SELECT status || '/' || loads, count(*) FROM recordings WHERE call_date = :d GROUP BY 1"),
            {"d": DAY}).all())


def test_two_loads_of_the_same_shards_in_parts_at_once(stack, s3, pg, monkeypatch):
    monkeypatch.setattr(loading.shard_parts, "__defaults__", (7,))
    run = "scheduled__rv4-parts"
    ids = chunked_calls(pg, DAY, run, CALLS)
    failed = sum(1 for i in ids if i % 10 == 0)
    assert _side_by_side(s3, pg, _shards(s3, ids, run, "first")) == []
    assert _states(pg) == {"done/1": CALLS - failed, "failed/0": failed}

    # A reprocess of them (their old segments deleted in each part), again twice at once.
    again = "manual__rv4-parts-reprocess"
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET last_run_id = :r WHERE id = ANY(:ids)"), {"r": again, "ids": ids})
    assert _side_by_side(s3, pg, _shards(s3, ids, again, "again")) == []
    assert _states(pg) == {"done/2": CALLS - failed, "failed/0": failed}
    with pg.connect() as c:
        texts = c.execute(sa.text(
            "SELECT count(*) FILTER (WHERE text LIKE '%again'), count(*) FROM segments WHERE recording_id = ANY(:ids)"),
            {"ids": ids}).one()
    assert tuple(texts) == (CALLS - failed, CALLS - failed)
