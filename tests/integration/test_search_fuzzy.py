"""Search that forgives spelling: no exact hit falls back to similar ones (real Postgres, real loader)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest

from callscribe.search import FALLBACK_NOTE, SearchFilters, note_for, search
from tests.integration.helpers import load_call
from tests.integration.test_analysts import _login

pytestmark = pytest.mark.integration

DAY = date(2026, 9, 16)
KEY = "calls/2026/09/16/fuzzy-1.wav"
SEGMENTS = [
    (0, "agent", 1.0, 6.0, "Thank you for calling, this is Sarah from the Spring Field branch."),
    (1, "customer", 7.0, 9.0, "Hi Sarah, David here."),
    (0, "agent", 10.0, 14.0, "David will call you back tomorrow about the refund."),
    (1, "customer", 15.0, 18.0, "The springs of hope are high."),
]


@pytest.fixture(scope="module")
def fuzzy_loaded(pg, s3) -> int:
    return load_call(pg, s3, KEY, DAY, SEGMENTS)


def _q(pg, query: str, fuzzy: bool | None = None) -> list[dict]:
    hits = search(pg, query, limit=10, filters=SearchFilters(from_date=DAY, to_date=DAY, fuzzy=fuzzy))
    assert all(h["object_key"] == KEY for h in hits)
    return hits


def test_no_exact_hit_falls_back_to_similar_ones_and_says_so(pg, fuzzy_loaded):
    hits = _q(pg, "Springfield")
    assert hits and all(h["match"] == "fuzzy" for h in hits)
    assert note_for(hits, None) == FALLBACK_NOTE
    assert _q(pg, "Springfield", fuzzy=False) == []  # exact only, as asked
    assert note_for([], False) == "no exact matches"


def test_split_words_match_and_are_marked_together_and_near_exact_ranks_first(pg, fuzzy_loaded):
    top, *rest = _q(pg, "Springfield")
    assert top["start_s"] == 1.0 and "\x02Spring Field\x03" in top["snippet"]
    # "springs of hope" is also similar, but less so: it comes after.
    later = [h for h in rest if h["start_s"] == 15.0]
    assert later and later[0]["rank"] < top["rank"]


def test_misspelled_names_and_swapped_letters(pg, fuzzy_loaded):
    sarah = _q(pg, "Sarrah")
    assert {h["start_s"] for h in sarah} >= {1.0, 7.0} and all(h["match"] == "fuzzy" for h in sarah)
    assert "\x02Sarah" in sarah[0]["snippet"]
    assert {h["start_s"] for h in _q(pg, "Davd")} >= {7.0, 10.0}  # a letter missing
    david = _q(pg, "Daivd")  # a transposition: too few shared trigrams, found through the swap
    assert {h["start_s"] for h in david} == {7.0, 10.0}
    assert all("\x02David\x03" in h["snippet"] for h in david) and all(h["rank"] >= 0.9 for h in david)


def test_exact_hits_keep_similar_ones_out_unless_asked(pg, fuzzy_loaded):
    assert {h["match"] for h in _q(pg, "David")} == {"text"}
    both = _q(pg, "David", fuzzy=True)
    assert both[0]["match"] == "text" and note_for(both, True) is None


def test_the_fallback_runs_as_the_analyst(stack, pg, fuzzy_loaded):
    conn = _login(stack, pg, "analyst")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT match, snippet FROM analytics.search('Daivd', %s, %s)", (DAY, DAY))
            rows = cur.fetchall()
            assert rows and all(m == "fuzzy" and "\x02David\x03" in s for m, s in rows)
    finally:
        conn.close()


def test_the_cli_says_it_shows_similar_matches(stack, fuzzy_loaded):
    cli = [sys.executable, "-m", "callscribe.cli", "search", "--from", str(DAY), "--to", str(DAY)]
    out = subprocess.run([*cli, "Springfield"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == FALLBACK_NOTE and "[Spring Field]" in out
    out = subprocess.run([*cli, "--exact", "Springfield"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "no exact matches"


def test_excluded_words_stay_excluded_in_the_fallback(pg, fuzzy_loaded):
    # "Davd" has no exact match; of the similar segments, the one with "refund" is excluded.
    assert {h["start_s"] for h in _q(pg, "Davd -refund")} == {7.0}
    assert {h["start_s"] for h in _q(pg, "Daivd -refund")} == {7.0}
    # OR stays OR: either word, each forgiven its swap.
    assert {h["start_s"] for h in _q(pg, "Daivd OR Srpingfield")} >= {7.0, 10.0}


def test_stop_words_and_short_words_do_not_fall_back_to_everything(pg, fuzzy_loaded):
    for query in ("the", "a", "is the", "an oh"):
        assert _q(pg, query) == [], query


def test_a_huge_query_is_just_not_found(pg, fuzzy_loaded):
    word = "".join(chr(ord("a") + i % 26) for i in range(1100))  # no letter next to itself
    for fuzzy in (None, True, False):
        assert _q(pg, f"{word} {word[::-1]} {word}", fuzzy=fuzzy) == []



def test_a_multi_word_similar_query_wants_a_like_of_each_word_unless_it_says_or(pg, fuzzy_loaded):
    import sqlalchemy as sa

    with pg.connect() as c:
        both = c.execute(sa.text("SELECT analytics.similar_query('Sarrah Davd')::text")).scalar_one()
        either = c.execute(sa.text("SELECT analytics.similar_query('Sarrah OR Davd')::text")).scalar_one()
        lone = c.execute(sa.text("SELECT analytics.similar_query('Sarrah qwxzvbnm')::text")).scalar_one()
    assert " & " in both and "'sarah'" in both and "'david'" in both
    assert " & " not in either and "'sarah'" in either and "'david'" in either
    assert " & " not in lone and "'sarah'" in lone  # a word with no like in the transcripts is left out


def test_similar_matches_are_checked_among_a_bounded_number_of_candidates(pg):
    """A query of common words makes most segments candidates: the search checks 4,000 of them,
    newest days first, and stops widening there (it used to check a year's: 15 s)."""
    import sqlalchemy as sa

    newest, older = date(2033, 6, 10), date(2033, 6, 5)

    def day_of(n: int, day: date) -> None:
        # n candidates that fail the check: the like word is only in the pair (the next text).
        with pg.begin() as c:
            c.execute(sa.text("DELETE FROM recordings WHERE object_key LIKE 'calls/2033/06/10/bound-%'"))
            rid = c.execute(sa.text(
                "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels) "
                "VALUES ('calls', :k, 'e', :d, :k, 'done', 1) RETURNING id"),
                {"k": f"calls/2033/06/10/bound-{n}.wav", "d": day}).scalar_one()
            c.execute(sa.text(
                "INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, text_redacted, "
                "next_redacted, call_date) SELECT :r, 0, g, 'mixed', g, g + 0.5, 'filler words here', "
                "'filler words here', 'zorbax', :d FROM generate_series(0, :n - 1) AS g"), {"r": rid, "n": n, "d": day})

    with pg.begin() as c:
        rid = c.execute(sa.text(
            "INSERT INTO recordings (bucket, object_key, etag, call_date, call_id, status, channels) "
            "VALUES ('calls', 'calls/2033/06/05/bound-hit.wav', 'e', :d, 'bound-hit', 'done', 1) RETURNING id"),
            {"d": older}).scalar_one()
        c.execute(sa.text(
            "INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, text_redacted, "
            "call_date) VALUES (:r, 0, 0, 'mixed', 0, 2, 'the zorbax thing', 'the zorbax thing', :d)"),
            {"r": rid, "d": older})
        c.execute(sa.text("INSERT INTO lexicon (word) VALUES ('zorbax') ON CONFLICT DO NOTHING"))

    def found() -> set:
        hits = search(pg, "zorbaxian", limit=10, filters=SearchFilters(from_date=older, to_date=newest, fuzzy=True))
        return {h["object_key"] for h in hits}

    day_of(3900, newest)  # under the budget: the window widens to the older day and finds it
    assert found() == {"calls/2033/06/05/bound-hit.wav"}
    day_of(4100, newest)  # over it: the newest day's candidates use it up
    assert found() == set()
