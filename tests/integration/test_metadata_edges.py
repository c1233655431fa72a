"""Upload metadata at the object store's edges: what reaches Postgres, and what one call's
metadata may do to the calls chunked beside it.

SeaweedFS (and other stores than AWS, whose limit is 2 KB) take user metadata far past 2 KB. An
``agent-id`` of a few thousand characters that do not compress (a token or a JSON blob an exporter
put there by mistake) does not fit the B-tree index on ``recordings (agent_id, call_date)``: Postgres
refuses the row with ProgramLimitExceeded, which psycopg2 raises as an OperationalError. That was
taken for a database outage: the chunk task gave the attempt back and failed, on every retry and
every run, so the call and every call after it in its group of 25 stayed untranscribed and every
run of the day was red, for ever. Since discovery reads a fixed upload's metadata again (a copy
onto the key itself), the same agent-id set by such a fix failed ``discover``: the whole day, for ever.
"""

from __future__ import annotations

import io
import random
import string
import time
from datetime import date

import pytest
import sqlalchemy as sa
from minio.commonconfig import REPLACE, CopySource

from callscribe import db
from callscribe.samples import distinct_copy, sample_dir
from tests.integration.copies import put, table
from tests.integration.helpers import day_rows, run_through

pytestmark = pytest.mark.integration

CALL = sample_dir() / "call-0003.wav"


def _put_with_meta(s3, day: date, name: str, data: bytes, meta: dict[str, str]) -> str:
    key = f"calls/{day:%Y/%m/%d}/{name}"
    s3.client.put_object(s3.bucket, key, io.BytesIO(data), len(data), metadata=meta)
    return key


def _noise_text(n: int) -> str:
    """``n`` letters that do not compress (Postgres compresses an index entry before it checks its size)."""
    rng = random.Random(n)
    return "".join(rng.choice(string.ascii_letters) for _ in range(n))


def test_an_agent_id_too_long_for_the_index_does_not_hold_back_the_day(stack, s3, pg):
    day = date(2038, 3, 1)
    long_id = _noise_text(3000)
    _put_with_meta(s3, day, "a.wav", distinct_copy(CALL.read_bytes(), ".wav", 301), {"agent-id": long_id})
    put(s3, day, "b.wav", distinct_copy(CALL.read_bytes(), ".wav", 302))
    verdict = run_through(s3, pg, day, "scheduled__rv2-long-agent")
    assert verdict.ok, verdict.problems()
    rows = {r.object_key.rsplit("/", 1)[1]: r for r in day_rows(pg, day)}
    assert rows["b.wav"].status == "done", table(pg, day)
    # The call is transcribed; its agent is not a 3,000-character string the index cannot hold.
    assert rows["a.wav"].status == "done" and rows["a.wav"].loads == 1, table(pg, day)
    with pg.connect() as c:
        agent, meta = c.execute(sa.text("SELECT agent_id, metadata FROM recordings WHERE object_key = :k"),
                                {"k": f"calls/{day:%Y/%m/%d}/a.wav"}).one()
    assert agent is None, agent[:80]
    assert meta["agent-id"] == long_id  # the upload's metadata is kept as it came


def test_an_agent_id_too_long_for_the_index_set_by_a_metadata_fix_does_not_fail_discovery(stack, s3, pg):
    day = date(2038, 3, 2)
    key = _put_with_meta(s3, day, "a.wav", distinct_copy(CALL.read_bytes(), ".wav", 303), {"agent-id": "a-17"})
    put(s3, day, "b.wav", distinct_copy(CALL.read_bytes(), ".wav", 304))
    assert run_through(s3, pg, day, "scheduled__rv2-long-agent-fix-1").ok
    time.sleep(1.1)  # stores stamp whole seconds: the fix must move LastModified
    s3.client.copy_object(s3.bucket, key, CopySource(s3.bucket, key), metadata={"agent-id": _noise_text(3000)},
                          metadata_directive=REPLACE)
    put(s3, day, "c.wav", distinct_copy(CALL.read_bytes(), ".wav", 305))  # the day goes on
    verdict = run_through(s3, pg, day, "scheduled__rv2-long-agent-fix-2")
    assert verdict.ok, verdict.problems()
    rows = {r.object_key.rsplit("/", 1)[1]: r for r in day_rows(pg, day)}
    assert [(n, r.status, r.loads) for n, r in sorted(rows.items())] == [
        ("a.wav", "done", 1), ("b.wav", "done", 1), ("c.wav", "done", 1)], table(pg, day)
    with pg.connect() as c:
        agents = c.execute(sa.text(
            "SELECT r.agent_id, (SELECT array_agg(DISTINCT s.agent_id) FROM segments s WHERE s.recording_id = r.id) "
            "FROM recordings r WHERE r.object_key = :k"), {"k": key}).one()
    assert agents[0] is None and agents[1] == [None], agents  # not the old agent, nor the long value


def test_a_limit_the_data_exceeds_is_not_taken_for_a_database_outage(stack, pg):
    """Whatever row trips a Postgres limit (SQLSTATE class 54: an index row too large, a statement
    too complex) is refused for its content: retrying the task would refuse it again, for ever."""
    with pg.begin() as c:
        c.execute(sa.text("CREATE TEMP TABLE limits (v text)"))
        c.execute(sa.text("CREATE INDEX ON limits (v)"))
        with pytest.raises(sa.exc.DBAPIError) as refused:
            c.execute(sa.text("INSERT INTO limits VALUES (:v)"), {"v": _noise_text(3000)})
    assert refused.value.orig.pgcode == "54000"
    assert not db.unavailable(refused.value)


def test_a_non_ascii_agent_id_reaches_postgres_and_analysts_as_text(stack, s3, pg):
    """S3 carries user metadata in HTTP headers, US-ASCII only: AWS hands a non-ASCII value back
    encoded as RFC 2047 ("=?UTF-8?B?...?="), and stores such as SeaweedFS refuse raw UTF-8. The
    encoded form was the call's agent: analysts filtering on "Zoë Ñandú" found none of her calls."""
    day = date(2038, 3, 3)
    _put_with_meta(s3, day, "a.wav", distinct_copy(CALL.read_bytes(), ".wav", 306),
                   {"agent-id": "=?UTF-8?B?Wm/DqyDDkWFuZMO6?="})  # "Zoë Ñandú", as AWS returns it
    # Encoded words may decode to what no header, text column or jsonb holds: kept as they came.
    _put_with_meta(s3, day, "b.wav", distinct_copy(CALL.read_bytes(), ".wav", 307), {"agent-id": "=?UTF-8?B?AA==?="})
    assert run_through(s3, pg, day, "scheduled__rv2-utf8-agent").ok
    rows = {r.object_key.rsplit("/", 1)[1]: r for r in day_rows(pg, day)}
    assert (rows["a.wav"].status, rows["b.wav"].status) == ("done", "done"), table(pg, day)
    with pg.connect() as c:
        agent = c.execute(sa.text("SELECT agent_id FROM analytics.calls WHERE object_key = :k"),
                          {"k": f"calls/{day:%Y/%m/%d}/a.wav"}).scalar_one()
        hits = c.execute(sa.text("SELECT count(*) FROM analytics.segments WHERE agent_id = :a AND call_date = :d"),
                         {"a": "Zoë Ñandú", "d": day}).scalar_one()
        nul = c.execute(sa.text("SELECT agent_id FROM recordings WHERE object_key = :k"),
                        {"k": f"calls/{day:%Y/%m/%d}/b.wav"}).scalar_one()
    assert agent == "Zoë Ñandú"
    assert hits > 0
    assert nul == "=?UTF-8?B?AA==?="
