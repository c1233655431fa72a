"""Which store errors are outages (the task fails and is retried, no call is charged) and which
are about one object. A 5xx is the server's trouble whatever it names it: MinIO answers a lost
read quorum or its own back-pressure with codes of its own (XMinioReadQuorum, SlowDownRead)."""

from __future__ import annotations

import pytest
from minio.error import S3Error
from urllib3 import HTTPResponse

from callscribe.storage import store_down, unavailable


def _error(code: str, status: int | None) -> S3Error:
    response = HTTPResponse(status=status) if status is not None else None
    return S3Error(response, code, "said", "calls/a.wav", "req", "host", "calls", "calls/a.wav")


@pytest.mark.parametrize("code,status", [
    ("XMinioReadQuorum", 503), ("XMinioWriteQuorum", 503), ("SlowDownRead", 503), ("XMinioServerNotInitialized", 503),
    ("XMinioStorageFull", 507), ("SomethingNew", 500), ("InternalError", 500),
    ("ServiceUnavailable", None),  # a known outage code, whatever the status
])
def test_the_stores_own_trouble_is_an_outage(code, status):
    assert store_down(_error(code, status)) and unavailable(_error(code, status))


@pytest.mark.parametrize("code,status", [
    ("NoSuchKey", 404), ("AccessDenied", 403), ("EntityTooLarge", 400),
    ("NotImplemented", 501),  # a call this store lacks: asking again does not help
    ("XMinioSomething", None),  # no status known: its code alone decides
])
def test_an_objects_own_error_is_not(code, status):
    assert not store_down(_error(code, status)) and not unavailable(_error(code, status))


def test_credentials_refused_are_an_outage_but_not_the_store_down():
    # Every request fails alike (unavailable), yet the server is up: another bucket's refusal of them
    # is not a reason to wait for it (discovery's refund notes in a bucket the run no longer reads).
    e = _error("InvalidAccessKeyId", 403)
    assert unavailable(e) and not store_down(e)
