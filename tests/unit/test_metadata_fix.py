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
