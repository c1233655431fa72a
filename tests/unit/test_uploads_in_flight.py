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
