"""audit.copy_groups: the calls a day holds more than one transcript of, each named once."""

from __future__ import annotations

from callscribe.audit import copy_groups


def test_overlapping_matches_are_one_call():
    # a.wav and c.wav share an etag; a.wav and b.wav share their bytes (b.wav a multipart upload):
    # one call transcribed three times, listed once, not as two doubled pairs.
    by_etag = [[("a.wav", False), ("c.wav", False)]]
    by_bytes = [[("a.wav", False), ("b.wav", False), ("c.wav", False)], [("x.wav", False)]]
    assert copy_groups(by_etag + by_bytes) == [[("a.wav", False), ("b.wav", False), ("c.wav", False)]]


def test_a_chain_of_matches_joins():
    groups = [[("a.wav", False), ("b.wav", True)], [("b.wav", True), ("c.wav", False)],
              [("d.wav", False), ("e.wav", False)]]
    assert copy_groups(groups) == [[("a.wav", False), ("b.wav", True), ("c.wav", False)],
                                   [("d.wav", False), ("e.wav", False)]]


def test_one_key_is_no_copy():
    assert copy_groups([[("a.wav", False)], [("a.wav", False)], []]) == []
