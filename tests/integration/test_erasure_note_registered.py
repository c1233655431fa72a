"""An erasure note of a key a run has registered is filed under every day a run could list that key
under, not its registered day alone: the runs' prefix is a Param. Days 2085-01-09 and 2085-05-06."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.audit import key_hash
from callscribe.discovery import day_prefix
from callscribe.erasure import erase, keep_notes, note_key
from callscribe.samples import sample_dir
from tests.integration.restore import bucket_of_its_own

pytestmark = pytest.mark.integration
FOLDER_DAY, DAY = date(2085, 1, 9), date(2085, 5, 6)
SITE = "brackenridge/"
PREFIX = f"{SITE}2085/01/09/calls/"  # a prefix with a date folder of its own, above the run's


@pytest.fixture
def own(s3, restorable):
    with bucket_of_its_own(s3, "callsnotereg") as store:
        yield store


def _rows(engine, key: str) -> list[sa.Row]:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT status, call_date FROM recordings WHERE object_key = :k ORDER BY id"),
                         {"k": key}).all()


def test_a_registered_key_stays_erased_when_a_run_of_another_prefix_lists_it_after_a_restore(
        stack, own, restorable):
    """Registered under 2085-01-09 by a run of prefix brackenridge/, erased, the database restored to
    before that run: a run of 2085-05-06 with the prefix brackenridge/2085/01/09/calls/ read no note
    (the note was under 2085-01-09 alone) and transcribed the erased call again; the daily upkeep then
    searched the note's day alone, found no row, and recorded the erasure with the call searchable."""
    from callscribe.local_run import run_day

    key = day_prefix(PREFIX, DAY) + "call-0003.wav"
    own.put_bytes(own.uri(key), (sample_dir() / "call-0003.wav").read_bytes())
    backup = restorable.backup()
    dr = run_day(FOLDER_DAY, {"prefix": SITE, "lookback_days": 0})
    assert str(dr.state).endswith("success"), dr.state
    assert [(r.status, r.call_date) for r in _rows(restorable.engine, key)] == [("done", FOLDER_DAY)]
    erase(own, restorable.engine, key, actor="dpo-brackenridge@example.com")
    restorable.restore(backup)

    dr = run_day(DAY, {"prefix": PREFIX, "lookback_days": 0})
    assert str(dr.state).endswith("success"), dr.state
    keep_notes(own, restorable.engine)
    assert [r.status for r in _rows(restorable.engine, key)] in ([], ["deleted"]), \
        "the erased call was registered and transcribed again, and stays so"
    assert own.exists(own.uri(note_key(own.bucket, key_hash(key), DAY)))


def test_the_note_of_another_day_erases_the_row_a_restore_brought_back_under_the_registered_day(
        stack, own, restorable):
    """The same key, the database restored to after its registration under 2085-01-09 and before its
    erasure: the run of 2085-05-06 (prefix brackenridge/2085/01/09/calls/) reads the note of its day.
    Its re-apply must find the row under 2085-01-09, not record an erasure of no rows beside it."""
    from callscribe.local_run import run_day

    key = day_prefix(PREFIX, DAY) + "call-0002.mp3"
    own.put_bytes(own.uri(key), (sample_dir() / "call-0002.mp3").read_bytes())
    dr = run_day(FOLDER_DAY, {"prefix": SITE, "lookback_days": 0})
    assert str(dr.state).endswith("success"), dr.state
    backup = restorable.backup()
    erase(own, restorable.engine, key, actor="dpo-brackenridge@example.com")
    restorable.restore(backup)
    assert [r.status for r in _rows(restorable.engine, key)] == ["done"]

    dr = run_day(DAY, {"prefix": PREFIX, "lookback_days": 0})
    assert str(dr.state).endswith("success"), dr.state
    assert [r.status for r in _rows(restorable.engine, key)] in ([], ["deleted"]), \
        "the restored call of 2085-01-09 stayed searchable"
