"""The latest migrations on a populated database: down to before them and up again, data kept."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from callscribe import db
from callscribe.redaction import redact_channel
from tests.integration.helpers import downgrade

pytestmark = pytest.mark.integration

KEY = "calls/2026/09/18/migrate-1.wav"
TEXTS = ["my card is 4111", "1111 1111 1111 thanks", "the code is four one one one five"]
STARTS = [[0.0, 0.3, 0.6, 0.9], [5.0, 5.5, 6.0, 6.5], [10.0, 10.2, 10.4, 10.6, 10.8, 11.0, 11.2, 11.4]]


def test_redaction_moves_to_load_time_on_a_populated_table(pg):
    downgrade(pg, "0008")  # segments redacted by the database's generated columns
    try:
        with pg.begin() as c:
            rid = c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels) "
                "VALUES ('calls', :k, 'e', '2026-09-18', 'migrate-1', 'done', 1) RETURNING id"),
                {"k": KEY}).scalar_one()
            for seq, text in enumerate(TEXTS):
                c.execute(sa.text(
                    "INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, word_starts) "
                    "VALUES (:r, 0, :s, 'mixed', :a, :b, :t, :w)"),
                    {"r": rid, "s": seq, "a": seq * 5, "b": seq * 5 + 4, "t": text, "w": STARTS[seq]})
            c.execute(sa.text("INSERT INTO transcripts (recording_id, channel, speaker, text, n_segments, engine) "
                              "VALUES (:r, 0, 'mixed', :t, 3, 'test')"), {"r": rid, "t": " ".join(TEXTS)})
            before = c.execute(sa.text("SELECT count(*) FROM segments")).scalar_one()
    finally:
        db.migrate(pg)  # back to head whatever happened
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT text, text_redacted, next_redacted, word_starts FROM segments "
                                 "WHERE recording_id = :r ORDER BY seq"), {"r": rid}).all()
        assert [r.text for r in rows] == TEXTS  # raw text untouched
        assert [r.text_redacted for r in rows] == redact_channel(TEXTS)
        assert rows[0].text_redacted == "my card is [redacted]" and rows[1].text_redacted.startswith("[redacted]")
        assert [r.next_redacted for r in rows] == [rows[1].text_redacted, rows[2].text_redacted, None]
        # Word times now follow the redacted words: a masked number is one word.
        assert [list(r.word_starts) for r in rows] == [[0.0, 0.3, 0.6, 0.9], [5.0, 6.5],
                                                        [10.0, 10.2, 10.4, 10.6]]
        assert c.execute(sa.text("SELECT text_redacted FROM transcripts WHERE recording_id = :r"),
                         {"r": rid}).scalar_one() == " ".join(redact_channel(TEXTS))
        assert c.execute(sa.text("SELECT count(*) FROM segments")).scalar_one() == before
        hits = c.execute(sa.text("SELECT count(*) FROM analytics.search('thanks', fuzzy => false, "
                                 "max_hits => 100000) WHERE object_key = :k"), {"k": KEY}).scalar_one()
        assert hits == 1


def test_every_new_revision_goes_down_and_up(pg):
    with pg.connect() as c:
        n = c.execute(sa.text("SELECT count(*) FROM analytics.search('refund', max_hits => 1000)")).scalar_one()
    downgrade(pg, "0006")
    try:
        with pg.connect() as c:
            columns = c.execute(sa.text("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'segments'")).scalars().all()
            assert "word_starts" not in columns and "next_text" in columns and "confidence" not in columns
    finally:
        db.migrate(pg)
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM analytics.search('refund', max_hits => 1000)")).scalar_one() == n


def test_confidence_goes_down_and_up_and_shards_from_before_it_load_null(pg, s3):
    """0010: segments.confidence comes and goes; a load of a shard without the column (written
    before it) and one with it, together, keeps both: NULL for the old one's rows."""
    import pandas as pd

    from callscribe.loading import load_shards
    from callscribe.manifests import CONFIDENCE, SEGMENT_COLUMNS, RecordingEntry, ShardInfo, to_parquet

    def columns() -> list[str]:
        with pg.connect() as c:
            return c.execute(sa.text("SELECT column_name FROM information_schema.columns "
                                     "WHERE table_name = 'segments'")).scalars().all()

    downgrade(pg, "0009")
    try:
        assert CONFIDENCE not in columns()
    finally:
        db.migrate(pg)
    assert CONFIDENCE in columns()
    ids, uris = [], []
    with pg.begin() as c:
        for i in range(2):
            ids.append(c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels, last_run_id) "
                "VALUES ('calls', :k, 'e', '2026-09-18', :k, 'chunked', 1, 'confidence-mix') RETURNING id"),
                {"k": f"calls/2026/09/18/confidence-{i}.wav"}).scalar_one())
    old = pd.DataFrame([(ids[0], 0, 0, "mixed", 0.0, 1.0, "written before confidences")], columns=SEGMENT_COLUMNS)
    new = pd.DataFrame([(ids[1], 0, 0, "mixed", 0.0, 1.0, "written after", 0.87),
                        (ids[1], 0, 1, "mixed", 1.0, 2.0, "no confidence here", None)],
                       columns=[*SEGMENT_COLUMNS, CONFIDENCE])
    for rid, df in zip(ids, (old, new), strict=True):
        info = ShardInfo(job_id=f"mix-{rid}", run_id="confidence-mix", engine="test", batches=[],
                         recordings=[RecordingEntry(recording_id=rid, n_channels=1)])
        uris.append(s3.put_bytes(s3.uri(f"_callscribe/tests/confidence-{rid}.parquet"), to_parquet(df, info)))
    assert load_shards(s3, pg, uris).recordings == 2
    with pg.connect() as c:
        got = c.execute(sa.text("SELECT recording_id, confidence FROM segments WHERE recording_id = ANY(:ids) "
                                "ORDER BY recording_id, seq"), {"ids": ids}).all()
    assert [(r, None if v is None else round(v, 4)) for r, v in got] == [(ids[0], None), (ids[1], 0.87),
                                                                          (ids[1], None)]


def test_call_metrics_and_segment_days_on_a_populated_table(pg):
    """0012 on rows loaded before it: day and agent copied onto the segments, metrics computed as the
    old view aggregated them, and back down to 0011 (the stored own-segment vector returns) and up."""
    key = "calls/2026/09/19/migrate-0012.wav"
    downgrade(pg, "0011")
    try:
        with pg.begin() as c:
            rid = c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, agent_id, status, channels, "
                "duration_s) VALUES ('calls', :k, 'e', '2026-09-19', 'migrate-0012', 'ag-12', 'done', 2, 60) "
                "RETURNING id"), {"k": key}).scalar_one()
            for ch, seq, speaker, a, b, text in [(0, 0, "agent", 0, 10, "hello and welcome"),
                                                 (1, 0, "customer", 8, 20, "I need a refund"),
                                                 (1, 1, "customer", 21, 30, "for the router")]:
                c.execute(sa.text(
                    "INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, text_redacted, "
                    "next_redacted) VALUES (:r, :ch, :s, :sp, :a, :b, :t, :t, NULL)"),
                    {"r": rid, "ch": ch, "s": seq, "sp": speaker, "a": a, "b": b, "t": text})
            old = c.execute(sa.text("SELECT talk_time_s, silence_share, overlap_s, segments FROM analytics.calls "
                                    "WHERE recording_id = :r"), {"r": rid}).one()
    finally:
        db.migrate(pg)
    with pg.connect() as c:
        new = c.execute(sa.text("SELECT talk_time_s, silence_share, overlap_s, segments, silence_s, "
                                "longest_monologue_s, longest_monologue_speaker FROM analytics.calls "
                                "WHERE recording_id = :r"), {"r": rid}).one()
        assert tuple(new[:4]) == tuple(old)  # the same figures, now read from call_metrics
        assert (float(new.silence_s), float(new.longest_monologue_s), new.longest_monologue_speaker) == (
            31.0, 22.0, "customer")
        assert c.execute(sa.text("SELECT DISTINCT call_date::text || ' ' || agent_id FROM segments "
                                 "WHERE recording_id = :r"), {"r": rid}).scalar_one() == "2026-09-19 ag-12"
        hits = c.execute(sa.text("SELECT count(*) FROM analytics.search('refund', from_date => '2026-09-19', "
                                 "to_date => '2026-09-19', agent_filter => 'ag-12')")).scalar_one()
        assert hits == 1
        # Since 0014 an insert must name its day (it picks the row's month); one that does not is
        # refused rather than filed under no day.
        with pytest.raises(sa.exc.IntegrityError):
            c.execute(sa.text("INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, "
                              "text_redacted) VALUES (:r, 0, 5, 'agent', 40, 41, 'bye', 'bye')"), {"r": rid})
        c.rollback()
    downgrade(pg, "0011")
    try:
        with pg.connect() as c:
            columns = c.execute(sa.text("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_schema = 'public' AND table_name = 'segments'")).scalars().all()
            assert "tsv" in columns and "call_date" not in columns
            assert tuple(c.execute(sa.text("SELECT talk_time_s, silence_share, overlap_s, segments "
                                           "FROM analytics.calls WHERE recording_id = :r"), {"r": rid}).one()) == old
    finally:
        db.migrate(pg)


def test_the_transcripts_words_are_backfilled_and_the_segment_trigram_index_goes(pg):
    """0013 on rows loaded before it: their words fill the lexicon (similar search finds them), the
    trigram index over every segment is dropped; down to 0012 it comes back, and up again."""
    key = "calls/2026/09/19/migrate-0013.wav"

    def indexes() -> set[str]:
        with pg.connect() as c:
            return set(c.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'segments'")).scalars())

    downgrade(pg, "0012")
    try:
        assert "segments_text_trgm_idx" in indexes()
        with pg.begin() as c:
            rid = c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels) "
                "VALUES ('calls', :k, 'e', '2026-09-19', 'migrate-0013', 'done', 1) RETURNING id"),
                {"k": key}).scalar_one()
            c.execute(sa.text(
                "INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, text_redacted, "
                "call_date) VALUES (:r, 0, 0, 'mixed', 0, 3, :t, :t, '2026-09-19')"),
                {"r": rid, "t": "the Throckmorton account, ref [redacted]"})
    finally:
        db.migrate(pg)
    assert "segments_text_trgm_idx" not in indexes()
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM lexicon WHERE word IN ('throckmorton', 'account')")
                         ).scalar_one() == 2
        hits = c.execute(sa.text("SELECT object_key, match FROM analytics.search('Throckmortin', "
                                 "from_date => '2026-09-19', to_date => '2026-09-19')")).all()
    assert [tuple(h) for h in hits] == [(key, "fuzzy")]
    downgrade(pg, "0012")
    try:
        assert "segments_text_trgm_idx" in indexes()
        with pg.connect() as c:
            assert c.execute(sa.text("SELECT to_regclass('lexicon')")).scalar_one() is None
    finally:
        db.migrate(pg)
