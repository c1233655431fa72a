"""The object store refusing the pipeline itself (expired or rotated credentials, a key
policy or KMS grant withdrawn) during the chunk stage is an outage, not each recording's fault:
"Outages fail the task, not the recording ... no recording is charged an attempt for it"."""

from __future__ import annotations

from datetime import date

import pytest
from minio.error import S3Error
from urllib3 import HTTPResponse

from callscribe import discovery, pipeline
from tests.integration.copies import call_bytes, newest, put, table
from tests.integration.helpers import run_through

pytestmark = pytest.mark.integration


def _refuse(s3, m, code: str, prefix: str = "", methods=("stat", "get_bytes", "put_bytes"),
            status: int | None = None) -> None:
    """Requests under ``prefix`` refused with ``code`` (as a store with XML bodies says it), with the
    HTTP ``status`` where given."""
    keys = {"stat": lambda bucket, key, *a: key, "get_bytes": lambda uri, *a: uri.split("/", 3)[3],
            "put_bytes": lambda uri, *a: uri.split("/", 3)[3]}

    def wrap(real, key_of):
        def refused(*args, **kw):
            key = key_of(*args)
            if key.startswith(prefix):
                raise S3Error(HTTPResponse(status=status) if status else None, code, "refused", key, "req", "host",
                              s3.bucket, key)
            return real(*args, **kw)
        return refused

    for name in methods:
        m.setattr(s3, name, wrap(getattr(s3, name), keys[name]))


# AccessDenied: how minio reports any 403 to a HEAD (no body to name the cause), an expired token's too.
@pytest.mark.parametrize("code", ["ExpiredToken", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"])
def test_credentials_that_stop_working_mid_run_charge_no_recording(stack, s3, pg, monkeypatch, code):
    """The session token in the connection expires (or the key is rotated) after discover listed the day:
    every HEAD of the chunk stage is refused. Before: every recording `failed` with an attempt spent and
    the run green; three such nights and the day's calls are failed for good."""
    codes = ["ExpiredToken", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"]
    day = date(2037, 11, 1 + codes.index(code))
    _chunk_stage_refused(s3, pg, day, f"rv-creds-{code}", 11000,
                         lambda m: _refuse(s3, m, code))  # every request: the credentials, not an object


def _chunk_stage_refused(s3, pg, day: date, name: str, seed: int, refuse) -> None:
    """Two calls of ``day`` listed, then their chunk task run while ``refuse`` (given a MonkeyPatch) has
    the store refuse it: the task must fail (Airflow retries it) with neither call charged, and once
    the store serves again the next run finishes the day green."""
    put(s3, day, "a.wav", call_bytes(seed + 1 + day.day))
    put(s3, day, "b.wav", call_bytes(seed + 11 + day.day))
    run = f"scheduled__{name}"
    ids = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    assert len(ids) == 2
    refused = pytest.MonkeyPatch()
    refuse(refused)
    try:
        with pytest.raises(S3Error):  # the task fails, and Airflow retries it
            pipeline.chunk_group(s3, pg, ids, run, 0)
    finally:
        refused.undo()
    rows = newest(pg, day)
    assert [(r.status, r.attempts) for r in rows.values()] == [("pending", 0), ("pending", 0)], table(pg, day)
    discovery.close_run(pg, run)
    verdict = run_through(s3, pg, day, f"manual__{name}-again")  # the store serves again
    assert verdict.ok, verdict.problems()
    assert {r.status for r in newest(pg, day).values()} == {"done"}, table(pg, day)


def test_every_read_of_a_group_denied_is_an_outage_not_each_calls_fault(stack, s3, pg, monkeypatch):
    """A bucket policy or KMS key grant withdrawn after discover listed the day (list allowed, every GET
    403 AccessDenied, as S3 answers a GET of an SSE-KMS object without kms:Decrypt): no call of the day
    can be read, so none is at fault. Before: each `failed` with an attempt spent, the run green."""
    day = date(2037, 11, 9)
    for i in range(3):
        put(s3, day, f"c{i}.wav", call_bytes(11090 + i))
    run = "scheduled__rv-kms"
    ids = discovery.discover(s3, pg, day, "calls/", run, is_live=lambda r: False)
    m = pytest.MonkeyPatch()
    _refuse(s3, m, "AccessDenied", methods=("get_bytes",))  # every GET in the bucket (its KMS key)
    try:
        with pytest.raises(S3Error):
            pipeline.chunk_group(s3, pg, ids, run, 0)
    finally:
        m.undo()
    rows = newest(pg, day)
    assert {(r.status, r.attempts) for r in rows.values()} == {("pending", 0)}, table(pg, day)


# MinIO's own names for its outages: a distributed MinIO that lost a node's disks cannot assemble objects.
@pytest.mark.parametrize("code", ["XMinioReadQuorum", "SlowDownRead"])
def test_a_store_down_under_a_code_of_its_own_charges_no_recording(stack, s3, pg, monkeypatch, code):
    """The store answers the chunk stage's reads 503 under a code of its own: an outage, as its status
    says. Before: every recording read then was `failed` with an attempt spent (the code was not one
    the pipeline knew), and three such nights left the day's calls failed for good."""
    day = date(2131, 1, 1 + ["XMinioReadQuorum", "SlowDownRead"].index(code))
    _chunk_stage_refused(s3, pg, day, f"store-down-{code}", 12000,  # the recordings' reads
                         lambda m: _refuse(s3, m, code, prefix="calls/", methods=("get_bytes",), status=503))
