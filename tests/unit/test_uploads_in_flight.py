"""Reading the multipart uploads under way page by page (storage.Store.uploads_in_flight).

SeaweedFS, the test suite's store, lists uploads unsorted, so its pages cannot be followed by
marker; the paging is checked here against pages shaped as AWS S3 answers them (sorted by key,
then upload id, with NextKeyMarker and NextUploadIdMarker)."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from minio.error import S3Error

from callscribe.config import S3Settings
from callscribe.storage import Store

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
UPLOADS = [(f"calls/2091/01/05/{k}", f"id-{i}", f"2091-01-05T00:00:0{i}.{i}00Z")
           for i, k in enumerate(["a &amp; b.wav", "a &amp; b.wav", "c.wav", "d.wav", "e.wav"])]


def _page(uploads, truncated: bool, next_markers: bool = True) -> bytes:
    body = "".join(f"<Upload><Key>{k}</Key><UploadId>{u}</UploadId><Initiated>{t}</Initiated></Upload>"
                   for k, u, t in uploads)
    markers = (f"<NextKeyMarker>{uploads[-1][0]}</NextKeyMarker><NextUploadIdMarker>{uploads[-1][1]}"
               "</NextUploadIdMarker>") if next_markers and uploads else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="{NS}"><Bucket>calls</Bucket>'
            f"<IsTruncated>{str(truncated).lower()}</IsTruncated>{markers}{body}</ListMultipartUploadsResult>").encode()


class Paging:
    """A store answering in pages of ``size``, following the markers as S3 does."""

    def __init__(self, size: int, next_markers: bool = True):
        self.size, self.next_markers, self.queries = size, next_markers, []

    def _execute(self, method, bucket, query_params=None, **kw):
        q = dict(query_params)
        self.queries.append(q)
        after = [x for x in UPLOADS  # the markers come back unescaped, as the keys are
                 if (html.unescape(x[0]), x[1]) > (q.get("key-marker", ""), q.get("upload-id-marker", ""))]
        page = after[: self.size]
        return SimpleNamespace(data=_page(page, len(after) > self.size, self.next_markers))


def _store(client) -> Store:
    store = Store(S3Settings(endpoint="s3.local:9000", access_key="AK", secret_key="SK", bucket="calls"))
    store.client = client
    return store


def test_every_page_is_read_by_its_markers():
    client = Paging(size=2)
    found = _store(client).uploads_in_flight("calls/2091/01/05/", page_size=2)
    assert [k for k, _ in found] == ["calls/2091/01/05/a & b.wav"] * 2 + [f"calls/2091/01/05/{c}.wav" for c in "cde"]
    assert found[1][1] == datetime(2091, 1, 5, 0, 0, 1, 100_000, tzinfo=UTC)
    assert len(client.queries) == 3 and client.queries[0]["max-uploads"] == "2"
    assert all("encoding-type" not in q for q in client.queries)  # keys come back as written
    assert client.queries[1]["upload-id-marker"] == "id-1"  # the second upload of a key is not skipped


def test_a_truncated_page_without_markers_ends_the_reading():
    """A store that says there is more and not where to go on: what it gave, not a loop for ever."""
    client = Paging(size=2, next_markers=False)
    assert len(_store(client).uploads_in_flight("calls/2091/01/05/", page_size=2)) == 2
    assert len(client.queries) == 1


@pytest.mark.parametrize("code", ["AccessDenied", "NotImplemented"])
def test_a_store_that_will_not_say_gives_none(code):
    def refuse(*a, **kw):
        raise S3Error(None, code, "no", "calls/", "req", "host", "calls")

    assert _store(SimpleNamespace(_execute=refuse)).uploads_in_flight("calls/") is None


def test_other_errors_fail_the_reading():
    def down(*a, **kw):
        raise S3Error(None, "SlowDown", "slow down", "calls/", "req", "host", "calls")

    with pytest.raises(S3Error):
        _store(SimpleNamespace(_execute=down)).uploads_in_flight("calls/")


def _answering(body: bytes) -> Store:
    return _store(SimpleNamespace(_execute=lambda *a, **kw: SimpleNamespace(data=body)))


def test_a_start_written_without_a_zone_is_utc_and_excuses_its_object():
    """A store that writes Initiated without a zone (S3's times are UTC): the verdict compares it with
    the listing's times, which carry one; not a TypeError in `verify`."""
    from callscribe.audit import begun_under_way
    from callscribe.config import key_hash

    key = "calls/2092/01/05/a.wav"
    found = _answering(_page([(key, "id-0", "2092-01-05T00:00:00.100")], truncated=False)).uploads_in_flight(
        "calls/2092/01/05/")
    # as the verdict reads them back (pipeline_runs.uploads_in_flight, a JSON list)
    in_flight = {key_hash(k): [datetime.fromisoformat(t.isoformat())] for k, t in found}
    assert begun_under_way(key, "9b2cf535f27731c974343645a3985328-3", datetime(2092, 1, 5, tzinfo=UTC), in_flight)
    assert found == [(key, datetime(2092, 1, 5, 0, 0, 0, 100_000, tzinfo=UTC))]


@pytest.mark.parametrize("body", [
    _page([("calls/2092/01/05/a.wav", "id-0", "Wed, 05 Jan 2092 00:00:00 GMT")], truncated=False),
    b"<html><body>upstream said no</body>",
])
def test_an_answer_that_cannot_be_read_is_no_answer(body, caplog):
    """An upload list the run cannot read (another time format, a proxy's page): the run goes on
    without it, as with a store that will not say, rather than failing `discover` every night."""
    assert _answering(body).uploads_in_flight("calls/2092/01/05/") is None
    assert "could not be read" in caplog.text
