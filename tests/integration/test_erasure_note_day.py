"""An erasure note of a key no run has registered yet is filed under the day discovery will list
that key under, whatever date folders the run's prefix itself holds. Day 2082-05-06."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.audit import key_hash
from callscribe.discovery import day_prefix
from callscribe.erasure import erase, note_key
from callscribe.samples import sample_dir
from tests.integration.restore import bucket_of_its_own

pytestmark = pytest.mark.integration
DAY = date(2082, 5, 6)
# A prefix with a date folder of its own (a site's intake batch), above the run's YYYY/MM/DD/.
PREFIX = "brackenridge/2082/01/09/calls/"


@pytest.fixture
def own(s3, restorable):
    with bucket_of_its_own(s3, "callsnoteday") as store:
        yield store


def _upload(own, name: str) -> str:
    key = day_prefix(PREFIX, DAY) + name
    own.put_bytes(own.uri(key), (sample_dir() / name).read_bytes())
    return key


def _rows(engine, key: str) -> list[sa.Row]:
    with engine.connect() as c:
        return c.execute(sa.text(
            "SELECT r.status, (SELECT count(*) FROM segments s WHERE s.recording_id = r.id) AS segments "
            "FROM recordings r WHERE r.object_key = :k ORDER BY r.id"), {"k": key}).all()


def test_a_key_erased_before_its_run_stays_erased_after_a_restore_when_the_prefix_names_a_date(
        stack, own, restorable):
    """Erased on request before any run found it, the database then restored to before the erasure:
    the day's run re-applies the day's notes before it registers anything. The note was filed under
    the first date folder of the key (the prefix's 2082-01-09), so the run of 2082-05-06 read no note
    for it and transcribed the erased call again."""
    from callscribe.local_run import run_day

    erased = _upload(own, "call-0003.wav")
    kept = _upload(own, "call-0002.mp3")
    backup = restorable.backup()
    erase(own, restorable.engine, erased, actor="dpo-brackenridge@example.com")  # before any run found it
    assert own.exists(own.uri(note_key(own.bucket, key_hash(erased), DAY))), \
        "the note is not under the day discovery lists the key under"
    restorable.restore(backup)

    dr = run_day(DAY, {"prefix": PREFIX, "lookback_days": 0})
    assert str(dr.state).endswith("success"), dr.state
    assert _rows(restorable.engine, erased) == [], "the erased call was registered (and transcribed) again"
    with restorable.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM erasures WHERE key_sha256 = :h"),
                         {"h": key_hash(erased)}).scalar_one() == 1
    assert [r.status for r in _rows(restorable.engine, kept)] == ["done"]
