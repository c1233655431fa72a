"""Similar-word search starts from the transcripts' words (the lexicon): kept by the loader,
backfilled by the migration, and an erased call's own words leave it (real Postgres and loader)."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.erasure import erase
from callscribe.search import SearchFilters, search
from tests.integration.helpers import load_call

pytestmark = pytest.mark.integration

DAY = date(2026, 12, 20)


def _words(pg, *words: str) -> set[str]:
    with pg.connect() as c:
        return set(c.execute(sa.text("SELECT word FROM lexicon WHERE word = ANY(:w)"), {"w": list(words)}).scalars())


def test_the_loader_adds_a_calls_redacted_words_and_similar_search_finds_them(pg, s3):
    key = "calls/2026/12/20/lexicon-1.wav"
    load_call(pg, s3, key, DAY, [
        (0, "agent", 0.0, 4.0, "Thanks for calling Quillsbury Gardens, this is Marguerite."),
        (1, "customer", 5.0, 9.0, "My card is 4111 1111 1111 1111 and the code is nine eight seven six five"),
    ])
    assert _words(pg, "quillsbury", "gardens", "marguerite", "card") == {"quillsbury", "gardens", "marguerite",
                                                                         "card"}
    with pg.connect() as c:  # what analysts cannot read is not a word either
        assert c.execute(sa.text("SELECT count(*) FROM lexicon WHERE word ~ '[^[:alpha:]]' "
                                 "OR word IN ('nine', 'eight', 'seven', 'six')")).scalar_one() == 0
    f = SearchFilters(from_date=DAY, to_date=DAY)
    for typed in ("Quilsbury", "Margarite", "Quillsbury Garden"):
        hits = [h for h in search(pg, typed, limit=10, filters=f) if h["object_key"] == key]
        assert hits and hits[0]["start_s"] == 0.0, typed
    # Said as two words, typed as one.
    load_call(pg, s3, "calls/2026/12/20/lexicon-2.wav", DAY, [
        (0, "agent", 0.0, 4.0, "Welcome to the Brackenhurst Oak Vale office"),
    ])
    hits = search(pg, "Oakvale", limit=10, filters=f)
    assert [h["match"] for h in hits] == ["fuzzy"] and "\x02Oak Vale\x03" in hits[0]["snippet"]


def test_an_erased_calls_own_words_leave_the_lexicon_and_shared_ones_stay(pg, s3):
    erased, kept = "calls/2026/12/20/lexicon-erased.wav", "calls/2026/12/20/lexicon-kept.wav"
    load_call(pg, s3, erased, DAY, [(0, "agent", 0.0, 4.0, "Hello Zebulonia, about the Pembertonshire gazebo")])
    load_call(pg, s3, kept, DAY, [(0, "agent", 0.0, 4.0, "Your Pembertonshire gazebo is on its way")])
    assert _words(pg, "zebulonia", "pembertonshire", "gazebo", "about") == {"zebulonia", "pembertonshire",
                                                                           "gazebo", "about"}
    erase(s3, pg, erased, actor="dpo@example.com")
    # The name said only in the erased call is gone; words other calls hold, and stop words, stay.
    assert _words(pg, "zebulonia", "pembertonshire", "gazebo", "about") == {"pembertonshire", "gazebo", "about"}
    assert search(pg, "Zebulonya", limit=10, filters=SearchFilters(from_date=DAY, to_date=DAY)) == []


def test_a_reloaded_calls_old_words_leave_the_lexicon_too(pg, s3):
    """Not only erasure: any deletion of segments (a reload, a newer version, the bucket's
    deletion) takes the words no other segment holds."""
    import pandas as pd

    from callscribe.loading import load_shards
    from callscribe.manifests import SEGMENT_COLUMNS, RecordingEntry, ShardInfo, to_parquet

    rid = load_call(pg, s3, "calls/2026/12/20/lexicon-reload.wav", DAY,
                    [(0, "agent", 0.0, 4.0, "Mister Vandersloot asked for a callback")])
    assert _words(pg, "vandersloot", "callback") == {"vandersloot", "callback"}
    with pg.begin() as c:
        c.execute(sa.text("UPDATE recordings SET status = 'chunked', last_run_id = 'lexicon-reload-2' WHERE id = :r"),
                  {"r": rid})
    info = ShardInfo(job_id="lexicon-reload-2", run_id="lexicon-reload-2", engine="test", batches=[],
                     recordings=[RecordingEntry(recording_id=rid, n_channels=2)])
    df = pd.DataFrame([(rid, 0, 0, "agent", 0.0, 4.0, "Mister Vandersmoot asked for a callback")],
                      columns=SEGMENT_COLUMNS)
    uri = s3.put_bytes(s3.uri(f"_callscribe/tests/lexicon-reload-{rid}.parquet"), to_parquet(df, info))
    assert load_shards(s3, pg, [uri]).recordings == 1
    assert _words(pg, "vandersloot", "vandersmoot", "callback") == {"vandersmoot", "callback"}
