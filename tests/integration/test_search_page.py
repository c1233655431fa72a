"""The search page in the Airflow API server, driven in headless Chromium (Debian's, via Playwright)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date

import pytest
import sqlalchemy as sa

from callscribe.dev import services

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def api_server(stack, loaded):
    logdir = stack.airflow_home / "page-test-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    with open(logdir / "api-server.log", "ab") as out:
        proc = services.airflow_command(stack, "api-server", "--workers", "1", stdout=out, stderr=out)
    base = f"http://127.0.0.1:{stack.api_port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/callscribe/", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        proc.terminate()
        pytest.fail("API server did not serve the plugin:\n" + (logdir / "api-server.log").read_text()[-3000:])
    yield base
    services.airflow_down([proc])


def test_plugin_is_registered_in_the_ui(api_server):
    with urllib.request.urlopen(f"{api_server}/api/v2/plugins", timeout=10) as r:
        plugins = json.loads(r.read())["plugins"]
    ours = next(p for p in plugins if p["name"] == "callscribe_search")
    assert ours["external_views"][0]["href"] == "/callscribe/"
    assert ours["fastapi_apps"][0]["url_prefix"] == "/callscribe"


def _open(browser, api_server):
    """The search page, with a list that records any JavaScript dialog (an XSS would open one)."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{api_server}/callscribe/")
    return page, dialogs


def test_search_click_shows_moments_and_plays_them_through_the_app(api_server, browser, stack, pg, loaded):
    page, dialogs = _open(browser, api_server)
    page.fill("#q", '"cancel my account"')
    page.select_option("#speaker", "customer")
    page.click("#go")
    page.wait_for_selector("tr.hit")
    rows = page.locator("tr.hit")
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert any("analyst-a.wav" in t for t in texts) and any("analyst-b.wav" in t for t in texts)
    across = next(i for i, t in enumerate(texts) if "analyst-a.wav" in t)
    row = rows.nth(across)
    assert row.locator(".speaker").inner_text() == "customer"
    assert row.locator(".when").inner_text() == "0:10–0:15"
    assert row.locator("mark").count() >= 2  # "cancel" and "account" highlighted
    assert "two segments" in row.inner_text()
    assert "X-Amz" not in page.content()  # no audio link before a play is asked for (and logged)
    with page.expect_response(lambda r: r.url.endswith("/callscribe/api/play")) as played:
        row.locator("button.play").click()
    assert played.value.status == 200
    page.wait_for_function("document.getElementById('player').src.includes('X-Amz-Signature=')")
    src = page.eval_on_selector("#player", "p => p.src")
    assert src.endswith("#t=10.0") and "X-Amz-Expires=300" in src  # from the hit, for five minutes
    with urllib.request.urlopen(src.split("#")[0], timeout=10) as r:  # the link really plays the call
        assert r.status == 200 and r.read(4) == b"RIFF"
    with pg.connect() as c:  # the all-admins development login is "Anonymous"
        last = c.execute(sa.text("SELECT actor, action, recording_id FROM access_log ORDER BY id DESC LIMIT 1")).one()
    assert tuple(last) == ("Anonymous", "play", loaded["a"])
    shots = stack.root / "screenshots"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "search-page.png"), full_page=True)
    assert not dialogs
    page.close()


def test_filters_and_injection_in_the_page(api_server, browser):
    page, dialogs = _open(browser, api_server)
    page.fill("#q", "refund OR discount")
    page.fill("#agent", "a2")
    page.click("#go")
    page.wait_for_selector("tr.hit")
    assert all("analyst-b.wav" in page.locator("tr.hit").nth(i).inner_text()
               for i in range(page.locator("tr.hit").count()))
    page.fill("#agent", "")
    page.fill("#q", "<img src=x onerror=alert(1)> '; DROP TABLE segments; --")
    page.click("#go")
    page.wait_for_function("document.getElementById('status').textContent.includes('found')")
    assert page.locator("#results img").count() == 0 and not dialogs
    page.close()


def test_the_page_falls_back_to_similar_matches_and_says_so(api_server, browser):
    page, dialogs = _open(browser, api_server)
    page.fill("#q", "Siobahn")  # the transcript says "Siobhan"
    page.click("#go")
    page.wait_for_selector("tr.hit")
    assert page.locator("#status").inner_text().startswith("no exact matches; showing similar")
    row = page.locator("tr.hit").first
    assert "analyst-a.wav" in row.inner_text() and row.locator("mark").inner_text().startswith("Siobhan")
    page.check("#fuzzy")  # similar too: the same hits, nothing to explain
    page.fill("#q", "Siobahnnnnnnnn qqqqzzzz")
    page.click("#go")
    page.wait_for_function("document.getElementById('status').textContent.includes('found (')")
    assert "no matches, exact or similar" in page.locator("#status").inner_text() and not dialogs
    page.close()



RANKED_NEW, RANKED_OLD = date(2026, 5, 31), date(2026, 5, 11)


@pytest.fixture(scope="module")
def ranked_days(pg, s3) -> dict[str, int]:
    """A newest day with more plain mentions than the page asks for (50 hits: the first window holds
    enough), and a call 20 days before that says the word three times (it ranks higher)."""
    from tests.integration.helpers import load_call

    new = load_call(pg, s3, "calls/2026/05/31/page-window-new.wav", RANKED_NEW,
                    [(i % 2, "agent" if i % 2 == 0 else "customer", i * 5.0, i * 5.0 + 4, f"the wombat number {i}")
                     for i in range(120)])
    old = load_call(pg, s3, "calls/2026/05/11/page-window-old.wav", RANKED_OLD,
                    [(0, "agent", 0.0, 4.0, "wombat wombat wombat")])
    return {"new": new, "old": old}


def _search_log(pg) -> list[str]:
    with pg.connect() as c:
        return list(c.execute(sa.text("SELECT detail FROM access_log WHERE action = 'search' ORDER BY id")).scalars())


def test_the_ranking_window_control_changes_what_ranks_first(api_server, browser, pg, ranked_days):
    page, dialogs = _open(browser, api_server)
    assert page.locator("#recent_days").input_value() == "1"  # newest day first, the default
    page.fill("#q", "wombat")
    page.fill("#to", RANKED_NEW.isoformat())

    def run(window: str) -> list[str]:
        page.select_option("#recent_days", window)
        with page.expect_response(lambda r: "/callscribe/api/search?" in r.url) as resp:
            page.click("#go")
        assert resp.value.status == 200 and f"recent_days={window}" in resp.value.url
        page.wait_for_function("document.getElementById('status').textContent.includes('found')")
        return [page.locator("tr.hit .key").nth(i).inner_text().rsplit("/", 1)[1]
                for i in range(page.locator("tr.hit").count())]

    # The newest day alone holds enough plain mentions: the older, better one is not even listed.
    newest = run("1")
    assert len(newest) == 50 and set(newest) == {"page-window-new.wav"}
    # Thirty days, or all dates ranked together, reach May 11: its call ranks first.
    assert run("30")[0] == "page-window-old.wav"
    assert run("all")[0] == "page-window-old.wav"
    assert not dialogs
    page.close()
    # Each search is logged with its window (the default one is left out, like other defaults).
    logged = [json.loads(d) for d in _search_log(pg)[-3:]]
    assert [d.get("recent_days") for d in logged] == [None, 30, "all"]
    assert all(d["q"] == "wombat" and d["to"] == RANKED_NEW.isoformat() for d in logged)


def test_the_api_takes_a_window_and_refuses_a_bad_one(api_server, pg, ranked_days):
    def get(**params) -> tuple[int, dict]:
        url = f"{api_server}/callscribe/api/search?" + urllib.parse.urlencode(
            {"q": "wombat", "to": RANKED_NEW.isoformat(), "limit": 1, **params})
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def first(**params) -> str:
        status, body = get(**params)
        assert status == 200, body
        return body["hits"][0]["key"].rsplit("/", 1)[1]

    assert first() == first(recent_days=7) == "page-window-new.wav"  # a week back does not reach May 11
    assert first(recent_days=30) == first(recent_days="all") == first(recent_days="") == "page-window-old.wav"
    before = _search_log(pg)
    for bad in ("0", "3651", "-1", "1.5", "week"):
        status, body = get(recent_days=bad)
        assert status == 422 and "recent_days must be a whole number of days from 1 to 3650" in body["detail"]
    assert _search_log(pg) == before  # refused before anything was searched or logged
