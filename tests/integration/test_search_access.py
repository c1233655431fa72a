"""Access control on the search page, with real logins: an API server without all-admins, two
Viewers of whom only one is an analyst (CALLSCRIBE_DEV_ANALYSTS), logged in through Airflow's
own login form in headless Chromium. And the analysts' database login underneath it."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from callscribe import access, db
from callscribe.dev import services
from callscribe.search import SearchFilters, search
from tests.integration.conftest import CALLS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
USERS = {"viewer": "viewer", "analyst": "viewer"}  # name: SimpleAuthManager role; both mere Viewers


def _key(name: str) -> str:
    return f"calls/{CALLS[name]['day']:%Y/%m/%d}/analyst-{name}.wav"


# ---------------------------------------------------------------- the analysts' login underneath


def test_the_page_login_is_analyst_only_and_the_owner_is_refused(stack, pg):
    access.check_analyst_login(db.analyst_engine())
    with pytest.raises(access.NotAnAnalystLogin, match="not an analyst-only login"):
        access.check_analyst_login(pg)


def test_search_export_and_the_log_work_as_the_analyst_role(stack, pg, loaded):
    from callscribe.exporting import calls_between

    analyst = db.analyst_engine()
    # The fixture's days only: other tests load the same phrase on theirs.
    hits = search(analyst, '"cancel my account"', limit=10,
                  filters=SearchFilters(from_date=date(2026, 10, 1), to_date=date(2026, 10, 3)))
    assert {h["object_key"] for h in hits} >= {_key("a"), _key("b")}
    ids = access.recording_ids(analyst, hits)
    assert ids[("calls", _key("a"))] == loaded["a"]
    call = next(calls_between(analyst, date.min, date.max, key=_key("a")))
    assert call.lines and all("4111" not in line.text for line in call.lines)  # redacted, as analysts see it
    assert access.done_recording(analyst, loaded["a"])["object_key"] == _key("a")
    access.log_access(analyst, "unit-check", "search", "role check", None)
    with analyst.connect() as c, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        c.execute(sa.text("SELECT * FROM access_log"))  # analysts append; they cannot read the log
    with analyst.begin() as c, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        c.execute(sa.text("DELETE FROM access_log"))
    with pg.connect() as c:
        assert c.execute(sa.text("SELECT db_user FROM access_log WHERE actor = 'unit-check'")).scalar_one() == "analyst"


def test_an_analysts_own_login_cannot_write_to_the_access_log(stack, pg, loaded):
    """Only the page's login holds callscribe_access_writer: a personal analyst login cannot forge rows."""
    import secrets

    from callscribe.config import pg_settings

    password = secrets.token_urlsafe(12)
    with pg.begin() as c:
        c.exec_driver_sql("DROP ROLE IF EXISTS personal_analyst")
        c.exec_driver_sql(f"CREATE ROLE personal_analyst LOGIN PASSWORD '{password}' IN ROLE callscribe_analyst")
    s = pg_settings()
    own = sa.create_engine(sa.engine.URL.create("postgresql+psycopg2", username="personal_analyst", password=password,
                                                host=s.host, port=s.port, database=s.dbname))
    try:
        with own.connect() as c:  # an analyst's own login reads the calls
            assert c.execute(sa.text("SELECT status FROM analytics.calls WHERE object_key = :k"),
                             {"k": _key("a")}).scalar_one() == "done"
        with own.begin() as c, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            c.execute(sa.text("SELECT analytics.log_access('someone else', 'play', NULL, NULL)"))
    finally:
        own.dispose()


# ---------------------------------------------------------------- the page behind real logins


@pytest.fixture(scope="module")
def guarded_server(stack, loaded, tmp_path_factory):
    """A second API server, on the next port, with real logins and callscribe's dev auth manager."""
    folder = tmp_path_factory.mktemp("logins")
    passwords = {name: secrets.token_urlsafe(12) for name in USERS}
    (folder / "passwords.json").write_text(json.dumps(passwords))
    port = stack.api_port + 1
    env = {
        **os.environ, **services.environment(stack),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(folder / "passwords.json"),
        "CALLSCRIBE_DEV_ANALYSTS": "analyst",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = stack.airflow_home / "page-test-logs" / "guarded-api-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = services.start_component([str(Path(sys.executable).parent / "airflow"), "api-server", "--port",
                                         str(port), "--workers", "1"], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/callscribe/", timeout=5)
            proc.terminate()
            pytest.fail("the page answered without a login")
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up, plugin mounted, and no one let in without a login
                break
            time.sleep(1)
        except OSError:
            time.sleep(1)
    else:
        proc.terminate()
        pytest.fail("API server did not serve the plugin:\n" + log.read_text()[-3000:])
    yield base, passwords
    services.airflow_down([proc])


def _log_in(browser, base: str, user: str, password: str):
    """A fresh browser session, logged in through Airflow's login form, sent on to the search page."""
    context = browser.new_context(viewport={"width": 1280, "height": 720}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{base}/auth/login?next=/callscribe/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/callscribe/")
    return context, page


def _log_rows(pg, since: int) -> list:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT actor, action, detail, recording_id, key_sha256 FROM access_log "
                                 "WHERE id > :since ORDER BY id"), {"since": since}).all()


def _last_id(pg) -> int:
    with pg.connect() as c:
        return c.execute(sa.text("SELECT COALESCE(max(id), 0) FROM access_log")).scalar_one()


def test_a_viewer_without_the_permission_is_refused_and_the_refusal_logged(guarded_server, browser, pg,
                                                                           loaded):
    base, passwords = guarded_server
    since = _last_id(pg)
    context, page = _log_in(browser, base, "viewer", passwords["viewer"])
    reply = page.goto(f"{base}/callscribe/")
    assert reply.status == 403 and "Call Transcripts" in page.locator("#forbidden").inner_text()
    status = page.evaluate("fetch('/callscribe/api/search?q=refund', {credentials: 'same-origin'}).then(r => r.status)")
    assert status == 403
    played = page.evaluate("""id => fetch('/callscribe/api/play', {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({recording_id: id})})
        .then(async r => [r.status, await r.text()])""", loaded["a"])
    assert played[0] == 403 and "X-Amz" not in played[1]
    context.close()
    rows = _log_rows(pg, since)
    assert [(r.actor, r.action) for r in rows] == [("viewer", "denied")] * 4  # the redirect's load, then ours
    assert {r.detail for r in rows} == {"GET /callscribe/", "GET /callscribe/api/search", "POST /callscribe/api/play"}


def test_an_analyst_searches_plays_and_exports_and_each_is_logged(guarded_server, browser, pg, loaded):
    base, passwords = guarded_server
    since = _last_id(pg)
    context, page = _log_in(browser, base, "analyst", passwords["analyst"])
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    assert page.locator("#q").count() == 1  # the page itself, not a refusal
    page.fill("#q", '"cancel my account"')
    page.select_option("#speaker", "customer")
    page.fill("#from", "2026-10-01")  # the fixture's days: other tests load the same phrase on theirs
    page.fill("#to", "2026-10-03")
    page.click("#go")
    page.wait_for_selector("tr.hit")
    row = page.locator("tr.hit", has_text="analyst-a.wav").first
    assert "X-Amz" not in page.content()
    with page.expect_response(lambda r: r.url.endswith("/callscribe/api/play")) as played:
        row.locator("button.play").click()
    assert played.value.status == 200
    page.wait_for_function("document.getElementById('player').src.includes('X-Amz-Signature=')")
    assert page.eval_on_selector("#player", "p => p.src").endswith("#t=10.0")
    # Chromium fetches and decodes the start of the call through the short-lived link.
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=20_000)
    with page.expect_download() as download:
        row.locator("a.download").click()
    assert "customer:" in Path(download.value.path()).read_text()
    assert not dialogs
    context.close()

    rows = _log_rows(pg, since)
    assert [(r.actor, r.action) for r in rows] == [("analyst", "search"), ("analyst", "play"), ("analyst", "export")]
    searched, play, export = rows
    assert json.loads(searched.detail) == {"q": '"cancel my account"', "speaker": "customer", "from": "2026-10-01",
                                           "to": "2026-10-03"}
    assert play.recording_id == export.recording_id == loaded["a"] and play.detail == "from 10.0 s"
    assert play.key_sha256 == hashlib.sha256(_key("a").encode()).hexdigest()  # the key itself is never logged
    assert _key("a") not in " ".join(str(v) for r in rows for v in r)
