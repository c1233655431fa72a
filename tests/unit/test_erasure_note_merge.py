"""erasure._notes: a key hash's notes under several days merged into one entry, and the days an
erasure's note is filed under (erasure._note_days). Days of 2085."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from callscribe import erasure
from callscribe.config import ERASURE_NOTES_PREFIX

D1, D2 = date(2085, 1, 9), date(2085, 5, 6)
KEY = "brackenridge/2085/01/09/calls/2085/05/06/x.wav"


class _NotesStore:
    """A store listing the given note keys under a prefix (as Store.list does, sorted)."""

    bucket = "work"

    def __init__(self, keys: list[str]):
        self.keys = sorted(keys)

    def list(self, prefix: str):
        return [SimpleNamespace(key=k) for k in self.keys if k.startswith(prefix)]


def _store(*notes: tuple[str, str, date | None]) -> _NotesStore:
    return _NotesStore([erasure.note_key(b, h, d) for b, h, d in notes])


def test_one_hash_noted_under_several_days_is_one_entry_with_each_day_once():
    store = _store(("calls", "h1", D1), ("calls", "h1", D2), ("calls", "h1", None), ("calls", "h2", D2),
                   ("other", "h1", D1))
    assert erasure._notes(store, "calls", None) == {"calls": {"h1": [D1, D2, None], "h2": [D2]}}
    # A discovery of D2 reads D2's notes and the undated ones, each day once even when asked twice.
    assert erasure._notes(store, "calls", [D2, D2]) == {"calls": {"h1": [D2, None], "h2": [D2]}}
    assert erasure._notes(store, "calls", [D1]) == {"calls": {"h1": [D1, None]}}
    # Every bucket's notes: the same hash in two buckets stays two erasures.
    assert erasure._notes(store, None, None) == {"calls": {"h1": [D1, D2, None], "h2": [D2]},
                                                 "other": {"h1": [D1]}}


def test_what_is_not_a_note_is_left_out():
    store = _NotesStore([erasure.note_key("calls", "h1", D1), f"{ERASURE_NOTES_PREFIX}/calls/2085-02-30/h2.json",
                         f"{ERASURE_NOTES_PREFIX}/calls/{D1.isoformat()}/h3.txt",
                         f"{ERASURE_NOTES_PREFIX}/calls/{D1.isoformat()}/deeper/h4.json"])
    assert erasure._notes(store, "calls", None) == {"calls": {"h1": [D1]}}


def test_an_unregistered_key_is_noted_under_each_day_a_run_could_list_it_under():
    assert erasure._note_days(KEY, None) == [D1, D2]
    assert erasure._note_days("calls/2085/02/30/x.wav", None) == [None]  # no such day: undated
    assert erasure._note_days("calls/x.wav", None) == [None]


def test_a_registered_key_is_noted_under_every_day_a_run_could_list_it_under_too():
    """Registered under D1 (a run of prefix ``brackenridge/``), the key is listed under D2 too by a
    run of prefix ``brackenridge/2085/01/09/calls/``. With its note under D1 alone, a restore to before
    the registration lets that run (reading D2's notes) register and transcribe the erased call again,
    and the daily re-apply (the note's day D1 only searched) records the erasure without erasing it."""
    days = erasure._note_days(KEY, D1)
    assert days[0] == D1, "the registered day first (the erasure's row, the copies' folder)"
    assert sorted(days) == [D1, D2]
    assert erasure._note_days("calls/2085/05/06/x.wav", D2) == [D2]


class _Rows:
    """An engine whose recordings hold ``keys`` (hash -> (key, day)); erase_noted_keys answered by day,
    or on every day when asked with none; no erasure known."""

    def __init__(self, keys: dict[str, tuple[str, date]]):
        self.keys, self.asked, self.noted_only = keys, [], []

    def connect(self):
        return self

    begin = connect

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, clause, params=None):
        if params and "actor" in params:
            self.noted_only.append(params)
        if params and "call_date" in params and "hashes" in params:
            self.asked.append(params["call_date"])
            return [SimpleNamespace(key_sha256=h, object_key=k) for h, (k, d) in sorted(self.keys.items())
                    if h in params["hashes"] and params["call_date"] in (None, d)]
        return SimpleNamespace(scalars=lambda: [])


def test_a_note_re_applied_from_one_of_its_days_erases_the_rows_under_another(monkeypatch):
    """A discovery of D2 reads D2's note of an erasure of KEY; the database, restored to after KEY was
    registered under D1 and before it was erased, holds its (transcribed) row under D1. Searched under
    D2 alone, nothing was found, the erasure was recorded as of no rows, and the D1 call stayed
    searchable: no later re-apply looks at a hash the database now remembers."""
    erased = []
    monkeypatch.setattr(erasure, "erase", lambda store, engine, key, actor, **kw: erased.append(key))
    engine = _Rows({"h1": (KEY, D1)})
    assert erasure._reapply_noted(_NotesStore([]), engine, {"calls": {"h1": [D2]}}, "actor", False) == ["h1"]
    assert erased == [KEY], f"the row under {D1} was not erased (days searched: {engine.asked})"
    assert engine.noted_only == []


def test_notes_without_rows_on_their_days_cost_one_search_of_every_day_not_one_each(monkeypatch):
    """After a restore to before recent calls were registered, many notes have no rows anywhere: the
    search of every day hashes every key of the bucket, so it is asked once for all of them (helper 87)."""
    monkeypatch.setattr(erasure, "erase", lambda store, engine, key, actor, **kw: None)
    engine = _Rows({"h7": (KEY, D1)})
    notes = {f"h{i}": [D2] for i in range(50)}
    erasure._reapply_noted(_NotesStore([]), engine, {"calls": notes}, "actor", False)
    assert engine.asked.count(None) == 1, engine.asked
    assert len(engine.noted_only) == 49  # each hash without rows remembered as erased; h7's row erased


def test_one_note_that_cannot_be_re_applied_does_not_stop_the_others(monkeypatch, caplog):
    erased = []

    def erase(store, engine, key, actor, **kw):
        if key == "calls/2085/05/06/bad.wav":
            raise RuntimeError(f"store down for this one ({key})")
        erased.append(key)

    monkeypatch.setattr(erasure, "erase", erase)
    engine = _Rows({"h1": ("calls/2085/05/06/bad.wav", D2), "h2": ("calls/2085/05/06/good.wav", D2)})
    with pytest.raises(RuntimeError, match="store down"):
        erasure._reapply_noted(_NotesStore([]), engine, {"calls": {"h1": [D2], "h2": [D2]}}, "actor", False)
    assert erased == ["calls/2085/05/06/good.wav"]
    assert "h1" in caplog.text and "bad.wav" not in caplog.text, caplog.text  # logs outlive the erasure
