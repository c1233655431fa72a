"""discovery.key_days: the days a run of some prefix would list a key under."""

from __future__ import annotations

from datetime import date

from callscribe.discovery import day_prefix, key_days


def test_each_date_folder_a_prefix_can_end_before_is_a_day():
    key = "brackenridge/2082/01/09/calls/2082/05/06/x.wav"
    assert key_days(key) == [date(2082, 1, 9), date(2082, 5, 6)]
    for d in key_days(key):  # each is a day some prefix's run lists the key under
        assert key.startswith(day_prefix(key[: key.index(f"{d:%Y/%m/%d}/")], d))


def test_what_no_run_lists_under_a_day_has_none():
    assert key_days("calls/2082/05/06/x.wav") == [date(2082, 5, 6)]
    assert key_days("2082/05/06/x.wav") == [date(2082, 5, 6)]  # the bucket's root as the prefix
    assert key_days("calls/2082/13/06/x.wav") == []  # no such day
    assert key_days("calls/x2082/05/06/y.wav") == []  # not a folder of its own
    assert key_days("calls/2082/05/06/") == []  # nothing under the folder
