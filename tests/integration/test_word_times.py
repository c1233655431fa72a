"""Word times through the real loader and the analysts' search: a hit starts at its word."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.search import SearchFilters, search
from tests.integration.helpers import load_call
from tests.integration.test_analysts import _login

pytestmark = pytest.mark.integration

DAY = date(2026, 9, 15)
KEY = "calls/2026/09/15/words-1.wav"
# (channel, speaker, start, end, text, word starts)
SEGMENTS = [
    (1, "customer", 5.0, 9.0, "Hello, I want to cancel my account now.", [5.0, 5.6, 5.8, 6.1, 6.4, 7.0, 7.3, 8.2]),
    # A redaction merges four words into one: the number keeps the time its first word had.
    (1, "customer", 10.0, 16.0, "My card is 4111 1111 1111 1111, thanks Springfield.",
     [10.0, 10.3, 10.6, 11.0, 11.6, 12.2, 12.8, 14.0, 15.0]),
    (0, "agent", 17.0, 20.0, "Your refund is on its way.", None),  # an engine without word times
    (0, "agent", 21.0, 24.0, "Have a good day David.", [21.0, 21.3, 21.5, 21.9, 22.6]),
]


@pytest.fixture(scope="module")
def words_loaded(pg, s3) -> int:
    return load_call(pg, s3, KEY, DAY, SEGMENTS)


def _hit(pg, query: str, fuzzy: bool | None = None) -> dict:
    hits = [h for h in search(pg, query, filters=SearchFilters(from_date=DAY, to_date=DAY, fuzzy=fuzzy))
            if h["object_key"] == KEY]
    assert len(hits) == 1, hits
    return hits[0]


def test_word_times_are_stored_with_their_segment(pg, words_loaded):
    with pg.connect() as c:
        stored = c.execute(sa.text("SELECT word_starts FROM segments WHERE recording_id = :r ORDER BY start_s"),
                           {"r": words_loaded}).scalars().all()
    # Stored as analysts read the text: "My card is [redacted], thanks Springfield." is six words.
    want = [s[5] for s in SEGMENTS]
    want[1] = [10.0, 10.3, 10.6, 11.0, 14.0, 15.0]
    assert [list(s) if s else None for s in stored] == [pytest.approx(w) if w else None for w in want]


def test_a_hit_starts_at_its_first_matching_word(pg, words_loaded):
    hit = _hit(pg, '"cancel my account"')
    assert (hit["start_s"], hit["end_s"]) == (5.0, 9.0)
    assert hit["hit_s"] == pytest.approx(6.4)  # "cancel", not the segment's start
    assert _hit(pg, "account")["hit_s"] == pytest.approx(7.3)
    assert _hit(pg, "accounts")["hit_s"] == pytest.approx(7.3)  # matched as the index matches: by stem


def test_a_fuzzy_hit_starts_at_its_most_similar_word(pg, words_loaded):
    hit = _hit(pg, "acount", fuzzy=True)
    assert hit["match"] == "fuzzy" and hit["hit_s"] == pytest.approx(7.3)
    hit = _hit(pg, "Springfeild", fuzzy=True)
    assert hit["match"] == "fuzzy" and hit["hit_s"] == pytest.approx(15.0)  # after a masked number too


def test_a_swapped_letter_hit_starts_at_the_word_it_matched(pg, words_loaded):
    # "day" is as similar to "Daivd" by trigrams as "David" is; the swap says which word it was.
    assert _hit(pg, "Daivd")["hit_s"] == pytest.approx(22.6)


def test_without_word_times_a_hit_starts_with_its_segment(pg, words_loaded):
    assert _hit(pg, "refund")["hit_s"] == 17.0
    assert _hit(pg, "thanks")["hit_s"] == pytest.approx(14.0)


def test_the_analyst_role_gets_times_for_the_words_it_reads(stack, pg, words_loaded):
    conn = _login(stack, pg, "analyst")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT hit_s FROM analytics.search('cancel', %s, %s)", (DAY, DAY))
            assert [r[0] for r in cur.fetchall()] == [pytest.approx(6.4)]
            cur.execute("SELECT word_starts, text FROM analytics.segments WHERE recording_id = %s AND channel = 1 "
                        "ORDER BY start_s", (words_loaded,))
            rows = cur.fetchall()
            assert rows[1][1] == "My card is [redacted], thanks Springfield."
            assert "4111" not in str(rows)
            # One time per word analysts read: how many words the number took is not told.
            assert all(len(starts) == len(text.split()) for starts, text in rows if starts)
    finally:
        conn.close()
