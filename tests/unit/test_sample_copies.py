"""Distinct copies of a sample: other bytes (another etag, so not one call's copies), same audio."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from callscribe.audio import decode
from callscribe.erasure import Erasure
from callscribe.samples import distinct_copy, sample_files


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_copies_differ_in_bytes_and_not_in_what_was_said(path):
    data = path.read_bytes()
    copies = [distinct_copy(data, path.suffix, i) for i in range(4)]
    assert copies[0] == data
    assert len({hashlib.md5(c).hexdigest() for c in copies}) == 4
    original = np.stack(decode(data, path.name).channels).astype(np.int32)
    for c in copies[1:]:
        got = decode(c, path.name)
        assert got.warning is None
        samples = np.stack(got.channels).astype(np.int32)
        assert samples.shape == original.shape
        assert np.count_nonzero(samples != original) <= 1  # one sample, by a step of the codec at most
        assert np.abs(samples - original).max() <= 64


def test_too_many_copies_of_a_tiny_file_are_refused():
    with pytest.raises(ValueError, match="too many copies"):
        distinct_copy(b"RIFF" + bytes(100), ".wav", 40)


def test_an_erasures_log_line_counts_the_copies_without_naming_them():
    done = Erasure(bucket="calls", key="calls/2026/11/24/a.wav", copies=["calls/2026/11/24/b.wav"])
    assert "calls/2026/11/24/b.wav" in done.summary()
    line = done.summary("the object with key sha256 0123", name_copies=False)
    assert "b.wav" not in line and "a.wav" not in line and "1 other key(s)" in line
