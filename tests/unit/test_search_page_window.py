"""The search page's ranking window (``recent_days``): what the page accepts and what reaches the search.

The search and the access log are stand-ins (tests/integration/test_search_page.py runs the real ones).
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from callscribe import access, search_page
from callscribe.search_page import RECENT_DAYS_HELP, create_app, parse_recent_days


@pytest.mark.parametrize(("value", "days"), [
    (None, 1), ("1", 1), ("7", 7), ("30", 30), ("0365", 365), ("3650", 3650), ("", None), ("all", None),
])
def test_accepted_windows(value, days):
    assert parse_recent_days(value) == days


@pytest.mark.parametrize("value", ["0", "-1", "3651", "99999", "1.5", "7 ", " 7", "seven", "ALL", "null",
                                   "1e3", "+7", "\u0667", "7;DROP TABLE x"])
def test_refused_windows(value):
    with pytest.raises(ValueError, match="recent_days must be a whole number of days from 1 to 3650"):
        parse_recent_days(value)


@pytest.fixture
def client(monkeypatch):
    """The app without a login (in-process use), with the search and the access log recorded."""
    seen: dict[str, list] = {"filters": [], "logged": []}

    def fake_search(engine, q, limit, filters):
        seen["filters"].append(filters)
        return []

    monkeypatch.setattr(search_page, "analyst_engine", lambda: object())
    monkeypatch.setattr(search_page, "search", fake_search)
    monkeypatch.setattr(access, "log_access", lambda engine, actor, action, detail=None, recording_id=None:
                        seen["logged"].append((action, detail)))
    monkeypatch.setattr(access, "recording_ids", lambda engine, hits: {})
    c = TestClient(create_app(require_login=False))
    c.seen = seen
    return c


@pytest.mark.parametrize(("sent", "days", "logged"), [
    ({}, 1, None), ({"recent_days": "1"}, 1, None), ({"recent_days": "30"}, 30, 30),
    ({"recent_days": "all"}, None, "all"), ({"recent_days": ""}, None, "all"),
])
def test_the_window_reaches_the_search_and_the_access_log(client, sent, days, logged):
    r = client.get("/api/search", params={"q": "refund", **sent})
    assert r.status_code == 200
    (filters,) = client.seen["filters"]
    assert filters.recent_days == days
    ((action, detail),) = client.seen["logged"]
    assert action == "search" and json.loads(detail).get("recent_days") == logged


@pytest.mark.parametrize("bad", ["0", "3651", "abc", "-7", "x" * 5000])
def test_a_bad_window_is_refused_before_anything_is_read_or_logged(client, bad):
    r = client.get("/api/search", params={"q": "refund", "recent_days": bad})
    assert r.status_code == 422 and r.json()["detail"] == RECENT_DAYS_HELP
    assert client.seen == {"filters": [], "logged": []}


def test_the_page_offers_the_windows():
    html = TestClient(create_app(require_login=False)).get("/").text
    for option in ('<option value="1" selected>newest day first</option>', '<option value="7">last 7 days first',
                   '<option value="30">last 30 days first', '<option value="all">all dates ranked together'):
        assert option in html
    assert 'name="recent_days"' in html
