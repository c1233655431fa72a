"""The search page refuses callers without an Airflow login."""

from fastapi.testclient import TestClient

from callscribe.search import highlight
from callscribe.search_page import create_app


def test_page_and_api_need_a_login():
    client = TestClient(create_app())
    assert client.get("/").status_code == 401
    assert client.get("/api/search", params={"q": "refund"}).status_code == 401


def test_page_is_self_contained_and_escapes_results():
    html = TestClient(create_app(require_login=False)).get("/").text
    assert "<script src" not in html and "http" not in html.split("<script>")[1]  # nothing fetched from outside
    assert "\\u0002" in html and "esc(h.key)" in html


def test_terminal_highlighting():
    assert highlight("to \x02cancel\x03 my") == "to [cancel] my"


def test_the_note_says_when_only_similar_matches_were_found():
    from callscribe.search import FALLBACK_NOTE, note_for

    similar, exact = {"match": "fuzzy"}, {"match": "text"}
    assert note_for([similar, similar], None) == FALLBACK_NOTE  # the automatic fallback
    assert note_for([exact, similar], None) is None
    assert note_for([similar], True) is None  # similar matches asked for: nothing to explain
    assert note_for([], None) == "no matches, exact or similar"
    assert note_for([], False) == "no exact matches"
