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
