"""Which metadata fixes change what a transcript says (discovery.relabels), and what a listing keeps."""

from datetime import UTC, datetime

import pytest

from callscribe import discovery
from callscribe.storage import ObjectInfo


@pytest.fixture(autouse=True)
def _diarize(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_DIARIZE", "1")


@pytest.mark.parametrize(("old", "new", "channels", "expected"), [
    ({"first-speaker": "agent"}, {"first-speaker": "customer"}, 1, True),
    ({}, {"first-speaker": "agent"}, 1, True),               # speaker_1/2 become agent/customer
    ({"first_speaker": "Agent"}, {"first-speaker": "agent"}, 1, False),  # the same, spelt otherwise
    ({"speakers": "2"}, {"speakers": "3"}, 1, True),          # another number of voices looked for
    ({"speakers": "2"}, {}, 1, False),                        # 2 is the default
    ({"agent-id": "a"}, {"agent-id": "b"}, 1, False),         # the agent is not in the transcript
    ({"first-speaker": "agent"}, {"first-speaker": "customer"}, 2, False),  # stereo: channels name them
    ({"first-speaker": "agent"}, {"first-speaker": "customer"}, None, False),  # not chunked yet
])
def test_relabels(old, new, channels, expected):
    assert discovery.relabels(old, new, channels) is expected


def test_without_diarization_a_mono_call_is_mixed_whatever_its_metadata(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_DIARIZE", "0")
    assert not discovery.relabels({"first-speaker": "agent"}, {"first-speaker": "customer"}, 1)


def test_a_listing_row_keeps_the_objects_last_modified():
    at = datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC)
    assert discovery.listing_row(ObjectInfo("b", "k/x.wav", "e", 3, at))[-1] == at
    assert discovery.listing_row(ObjectInfo("b", "k/x.wav", "e", 3))[-1] is None


class _RefusingStore:
    """A store that refuses this client everything (a HEAD's 403 looks the same as a key's policy)."""

    @staticmethod
    def _no(key: str):
        from minio.error import S3Error

        return S3Error(None, "AccessDenied", "Access Denied", key, "req", "host", "b", key)

    def uri(self, key: str) -> str:
        return f"s3://b/{key}"

    def stat(self, bucket: str, key: str):
        raise self._no(key)

    def put_bytes(self, uri: str, *args, **kw):
        raise self._no(uri)


def test_a_store_refusing_the_client_fails_the_refresh_instead_of_holding_the_keys_off():
    from collections import namedtuple

    from minio.error import S3Error

    row = namedtuple("Row", "id bucket object_key etag last_modified")(1, "b", "calls/x.wav", "e", None)
    at = datetime(2082, 6, 2, tzinfo=UTC)
    with pytest.raises(S3Error):  # no engine: nothing may be recorded against the key
        discovery.refresh_metadata(_RefusingStore(), None, [row], at, "scheduled__brackenridge-unit")
