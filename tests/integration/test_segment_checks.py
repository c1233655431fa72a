"""segments -> recordings, checked per statement (migration 0015): what the foreign key did, the
same answers, including against a deletion racing an insert."""

from __future__ import annotations

import threading
from datetime import date

import psycopg2.errors
import pytest
import sqlalchemy as sa

from tests.integration.helpers import load_call

pytestmark = pytest.mark.integration

DAY = date(2026, 12, 21)
INSERT = ("INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, text_redacted, call_date) "
          "VALUES (:r, 0, :s, 'mixed', 0, 1, 'by hand', 'by hand', :d)")


def _recording(pg, key: str) -> int:
    with pg.begin() as c:
        return c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels) "
            "VALUES ('calls', :k, 'e', :d, :k, 'done', 1) RETURNING id"), {"k": key, "d": DAY}).scalar_one()


def _count(pg, rid: int) -> int:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM segments WHERE recording_id = :r"), {"r": rid}).scalar_one()


def test_a_segment_of_a_recording_that_does_not_exist_is_refused_with_the_rest_of_its_statement(pg):
    rid = _recording(pg, "calls/2026/12/21/check-1.wav")
    with pg.connect() as c:
        missing = c.execute(sa.text("SELECT max(id) + 1000 FROM recordings")).scalar_one()
        with pytest.raises(sa.exc.IntegrityError) as err:
            c.execute(sa.text(
                "INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, text_redacted, "
                "call_date) VALUES (:r, 0, 0, 'mixed', 0, 1, 'a', 'a', :d), (:m, 0, 0, 'mixed', 0, 1, 'b', 'b', :d)"),
                {"r": rid, "m": missing, "d": DAY})
        assert isinstance(err.value.orig, psycopg2.errors.ForeignKeyViolation)
        assert f"recording {missing} does not exist" in str(err.value.orig)
        c.rollback()
    assert _count(pg, rid) == 0


def test_a_segment_cannot_move_to_another_recording_nor_its_recording_change_id(pg):
    one, other = _recording(pg, "calls/2026/12/21/check-2.wav"), _recording(pg, "calls/2026/12/21/check-3.wav")
    with pg.begin() as c:
        c.execute(sa.text(INSERT), {"r": one, "s": 0, "d": DAY})
    with pg.connect() as c:
        with pytest.raises(sa.exc.IntegrityError, match="stays with its recording"):
            c.execute(sa.text("UPDATE segments SET recording_id = :o WHERE recording_id = :r"), {"o": other, "r": one})
        c.rollback()
        c.execute(sa.text("UPDATE segments SET text = 'edited' WHERE recording_id = :r"), {"r": one})  # others may
        c.commit()
        # Nor can the recording take another id under its segments.
        with pytest.raises(sa.exc.IntegrityError, match="keeps its id"):
            c.execute(sa.text("UPDATE recordings SET id = id + 100000000 WHERE id = :r"), {"r": one})
        c.rollback()
    assert _count(pg, one) == 1


def test_deleting_recordings_deletes_their_segments_metrics_and_words(pg, s3):
    rid = load_call(pg, s3, "calls/2026/12/21/check-4.wav", DAY, [
        (0, "agent", 0.0, 3.0, "the zyxwvutsonian discount applies"),
        (1, "customer", 3.5, 6.0, "thanks"),
    ])
    keep = load_call(pg, s3, "calls/2026/12/21/check-5.wav", DAY, [(0, "agent", 0.0, 2.0, "a neighbour stays")])
    with pg.begin() as c:
        assert c.execute(sa.text("SELECT count(*) FROM lexicon WHERE word = 'zyxwvutsonian'")).scalar_one() == 1
        c.execute(sa.text("DELETE FROM recordings WHERE id = :r"), {"r": rid})
    with pg.connect() as c:
        metrics = c.execute(sa.text("SELECT count(*) FROM call_metrics WHERE recording_id = :r"), {"r": rid})
        assert metrics.scalar_one() == 0
        assert c.execute(sa.text("SELECT count(*) FROM lexicon WHERE word = 'zyxwvutsonian'")).scalar_one() == 0
    assert _count(pg, rid) == 0 and _count(pg, keep) == 1


def test_a_recording_cannot_be_deleted_under_an_open_insert_of_its_segments(pg):
    """The insert's check locks the recording as the key did: a deletion waits for the insert's
    commit, then takes the new segments with it; none is left without its recording."""
    rid = _recording(pg, "calls/2026/12/21/check-6.wav")
    with pg.connect() as writer, pg.connect() as deleter:
        writer.execute(sa.text(INSERT), {"r": rid, "s": 0, "d": DAY})  # open, not committed
        deleter.execute(sa.text("SET lock_timeout = '500ms'"))
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            deleter.execute(sa.text("DELETE FROM recordings WHERE id = :r"), {"r": rid})
        deleter.rollback()
        writer.commit()
        deleter.execute(sa.text("DELETE FROM recordings WHERE id = :r"), {"r": rid})
        deleter.commit()
    assert _count(pg, rid) == 0


def test_an_insert_racing_the_deletion_of_its_recording_waits_and_is_refused(pg):
    rid = _recording(pg, "calls/2026/12/21/check-7.wav")
    errors: list[BaseException] = []
    with pg.connect() as deleter:
        deleter.execute(sa.text("DELETE FROM recordings WHERE id = :r"), {"r": rid})  # open, not committed

        def insert() -> None:
            with pg.connect() as writer:
                try:
                    writer.execute(sa.text(INSERT), {"r": rid, "s": 0, "d": DAY})
                    writer.commit()
                except sa.exc.IntegrityError as exc:
                    errors.append(exc)

        t = threading.Thread(target=insert)
        t.start()
        t.join(1.0)
        assert t.is_alive()  # waiting on the deletion's lock
        deleter.commit()
        t.join(10)
    assert not t.is_alive() and len(errors) == 1
    assert isinstance(errors[0].orig, psycopg2.errors.ForeignKeyViolation)
    assert _count(pg, rid) == 0


def _schema(pg) -> dict:
    with pg.connect() as c:
        return {
            "fk_enforced": c.execute(sa.text("SELECT conenforced FROM pg_constraint WHERE conname = "
                                             "'segments_recording_id_fkey' AND conrelid = 'segments'::regclass")
                                     ).scalar_one(),
            "agent_index": c.execute(sa.text("SELECT am.amname FROM pg_class AS i JOIN pg_am AS am ON am.oid = "
                                             "i.relam WHERE i.relname IN ('segments_agent_idx', "
                                             "'segments_agent_day_idx')")).scalars().all(),
            "transcripts": c.execute(sa.text("SELECT attstorage::text || coalesce(nullif(attcompression::text, "
                                             "''), '-') FROM pg_attribute WHERE attrelid = 'transcripts'::regclass "
                                             "AND attname = 'text_redacted'")).scalar_one(),
        }


def test_0015_goes_down_to_the_enforced_key_and_up_again(pg):
    from callscribe import db
    from tests.integration.helpers import downgrade

    rid = _recording(pg, "calls/2026/12/21/check-8.wav")
    with pg.begin() as c:
        c.execute(sa.text(INSERT), {"r": rid, "s": 0, "d": DAY})
    up = _schema(pg)
    assert up["fk_enforced"] is False and up["agent_index"] == ["brin"]
    assert up["transcripts"] in ("xl", "e-")  # lz4 where the server has it, else uncompressed
    downgrade(pg, "0014")
    try:
        down = _schema(pg)
        assert down == {"fk_enforced": True, "agent_index": ["btree"], "transcripts": "x-"}
        with pg.connect() as c, pytest.raises(sa.exc.IntegrityError, match="violates foreign key constraint"):
            c.execute(sa.text(INSERT), {"r": rid + 10_000, "s": 0, "d": DAY})
    finally:
        db.migrate(pg)
    assert _schema(pg) == up
    with pg.begin() as c:
        c.execute(sa.text("DELETE FROM recordings WHERE id = :r"), {"r": rid})
    assert _count(pg, rid) == 0  # the cascade is back with the head


def test_a_load_replacing_an_older_version_does_not_deadlock_with_another_load(pg, s3):
    """Two loads at once, each replacing an older version of its call: each prunes the older
    version's words (the lexicon lock, exclusive) and adds its own (shared). A load that took
    the shared lock first and the exclusive one later deadlocked with another doing the same
    (found by review); the deletions now come first."""
    key = "calls/2026/12/21/check-9.wav"
    old = load_call(pg, s3, key, DAY, [(0, "agent", 0.0, 2.0, "the quuxolotl plan")])
    errors: list[BaseException] = []
    with pg.connect() as other:
        # Another load, in its word-adding step: it holds the shared lock.
        other.execute(sa.text("SELECT pg_advisory_xact_lock_shared(hashtext('callscribe_lexicon'))"))

        def load_new_version() -> None:
            try:
                load_call(pg, s3, key, DAY, [(0, "agent", 0.0, 2.0, "the new plan")], etag="e2")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t = threading.Thread(target=load_new_version)
        t.start()
        t.join(2.0)  # now waiting on the other load's lock
        # ... which now deletes an older version of its own call: it wants the lock exclusive.
        other.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('callscribe_lexicon'))"))
        other.commit()
        t.join(30)
    assert not t.is_alive() and errors == []
    with pg.connect() as c:
        status = c.execute(sa.text("SELECT status FROM recordings WHERE id = :r"), {"r": old}).scalar_one()
        word = c.execute(sa.text("SELECT count(*) FROM lexicon WHERE word = 'quuxolotl'")).scalar_one()
    assert status == "superseded" and word == 0 and _count(pg, old) == 0
