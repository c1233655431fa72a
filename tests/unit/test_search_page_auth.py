"""Who may use the search page, what it reads with, and what it writes to the access log.

The database and the auth manager are stand-ins here (tests/integration/test_search_access.py
runs the real ones): a fake Airflow user, an auth manager that grants callscribe's permission to
the names it is given, and recorders in place of the access-log and recording queries.
"""

from __future__ import annotations

import json
import socket
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from callscribe import access, search_page
from callscribe.search import highlight
from callscribe.search_page import create_app


class FakeUser:
    def __init__(self, name: str, role: str | None = "viewer"):
        self.username, self.role = name, role

    def get_name(self) -> str:
        return self.username


class FakeAuthManager:
    def __init__(self, allowed: set[str]):
        self.allowed, self.asked = allowed, []

    def is_authorized_custom_view(self, *, method, resource_name, user) -> bool:
        self.asked.append((method, resource_name, user.get_name()))
        return resource_name == access.RESOURCE_NAME and user.get_name() in self.allowed


HIT = {"object_key": "calls/2026/10/01/a.wav", "bucket": "calls", "call_date": date(2026, 10, 1), "agent_id": "a1",
       "channel": 1, "speaker": "customer", "start_s": 10.0, "end_s": 15.0, "hit_s": 10.25,
       "snippet": "to \x02cancel\x03", "rank": 0.5, "match": "text"}
RECORDING = {"recording_id": 7, "bucket": "calls", "object_key": HIT["object_key"], "etag": "e7"}
ENGINE = object()  # stands for the analysts' engine: every query below is faked


class FakePresigner:
    def __init__(self):
        self.calls = []

    def presigned_get_object(self, bucket, key, expires):
        self.calls.append((bucket, key, expires))
        return f"http://store.example/{bucket}/{key}?X-Amz-Expires={int(expires.total_seconds())}&X-Amz-Signature=s"


@pytest.fixture
def page(monkeypatch):
    """A client on the app as a named user (``page.login("name")``), with the log and queries recorded."""
    logged: list[tuple] = []
    manager = FakeAuthManager({"analyst", "Anonymous"})
    presigner = FakePresigner()
    searched: list[str] = []

    def fake_search(engine, q, limit, filters):
        assert engine is ENGINE
        searched.append(q)
        return [HIT]

    monkeypatch.setattr(search_page, "auth_manager", lambda: manager)
    monkeypatch.setattr(search_page, "analyst_engine", lambda: ENGINE)
    monkeypatch.setattr(search_page, "search", fake_search)
    monkeypatch.setattr(search_page, "_presigner", lambda: presigner)
    monkeypatch.setattr(search_page, "audio_unchanged", lambda bucket, key, etag: True)
    monkeypatch.setattr(access, "log_access", lambda engine, actor, action, detail=None, recording_id=None:
                        logged.append((actor, action, detail, recording_id)))
    # A play or download is logged only while its call is transcribed (here: always).
    monkeypatch.setattr(access, "log_call_access", lambda engine, actor, action, detail, recording_id:
                        logged.append((actor, action, detail, recording_id)) or True)
    monkeypatch.setattr(access, "done_recording", lambda engine, rid: RECORDING if rid == 7 else None)
    monkeypatch.setattr(access, "done_recording_by_key",
                        lambda engine, key: RECORDING if key == RECORDING["object_key"] else None)
    monkeypatch.setattr(access, "recording_ids", lambda engine, hits: {("calls", HIT["object_key"]): 7})
    monkeypatch.delenv("CALLSCRIBE_PLAY_URL_MINUTES", raising=False)
    app = create_app()

    class Page:
        def login(self, name: str | None) -> TestClient:
            app.dependency_overrides.clear()
            if name is not None:
                app.dependency_overrides[search_page.get_user] = lambda: FakeUser(name)
            return TestClient(app)

    p = Page()
    p.logged, p.manager, p.presigner, p.searched = logged, manager, presigner, searched
    return p


def test_page_and_api_need_a_login():
    client = TestClient(create_app())
    assert client.get("/").status_code == 401
    assert client.get("/api/search", params={"q": "refund"}).status_code == 401
    assert client.post("/api/play", json={"recording_id": 7, "start": 1}).status_code == 401
    assert client.get("/api/export", params={"key": "k"}).status_code == 401


def test_a_login_without_the_permission_gets_403_everywhere_and_each_refusal_is_logged(page):
    client = page.login("viewer")
    assert client.get("/").status_code == 403
    r = client.get("/api/search", params={"q": "refund"})
    assert r.status_code == 403 and "Call Transcripts" in r.json()["detail"]
    assert client.post("/api/play", json={"recording_id": 7, "start": 1}).status_code == 403
    assert client.get("/api/export", params={"key": RECORDING["object_key"]}).status_code == 403
    assert page.searched == [] and page.presigner.calls == []  # nothing was read or signed
    assert [(a, act) for a, act, _, _ in page.logged] == [("viewer", "denied")] * 4
    assert [d for _, _, d, _ in page.logged] == ["GET /", "GET /api/search", "POST /api/play", "GET /api/export"]
    assert {m for m, _, _ in page.manager.asked} == {"GET"}
    assert {r for _, r, _ in page.manager.asked} == {"Call Transcripts"}


def test_a_browser_refused_gets_a_readable_page(page):
    r = page.login("viewer").get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert 'id="forbidden"' in r.text and "Call Transcripts" in r.text


def test_a_refusal_stays_a_refusal_when_it_cannot_be_logged(page, monkeypatch):
    def down(*a, **k):
        raise RuntimeError("database down")

    monkeypatch.setattr(access, "log_access", down)
    assert page.login("viewer").get("/api/search", params={"q": "x"}).status_code == 403


def test_with_the_permission_search_answers_and_is_logged_without_audio_links(page):
    client = page.login("analyst")
    assert client.get("/").status_code == 200
    r = client.get("/api/search", params={"q": '"cancel my account"', "speaker": "customer", "from": "2026-10-01"})
    assert r.status_code == 200
    hit = r.json()["hits"][0]
    assert hit["recording_id"] == 7 and hit["hit"] == 10.25
    assert "audio_url" not in hit and "X-Amz" not in r.text and page.presigner.calls == []
    (actor, action, detail, rid), = page.logged
    assert (actor, action, rid) == ("analyst", "search", None)
    assert json.loads(detail) == {"q": '"cancel my account"', "speaker": "customer", "from": "2026-10-01"}


def test_play_checks_the_recording_logs_and_returns_a_short_lived_link(page):
    client = page.login("analyst")
    r = client.post("/api/play", json={"recording_id": 7, "start": 10.25})
    assert r.status_code == 200
    body = r.json()
    assert body["url"].endswith("#t=10.2") or body["url"].endswith("#t=10.3")
    assert "X-Amz-Signature=" in body["url"] and body["expires_in_s"] == 300
    assert page.presigner.calls == [("calls", RECORDING["object_key"], timedelta(minutes=5))]
    assert page.logged == [("analyst", "play", "from 10.2 s", 7)]


def test_a_call_gone_by_the_time_the_access_is_logged_gets_no_link_and_no_file(page, monkeypatch):
    monkeypatch.setattr(access, "log_call_access", lambda engine, actor, action, detail, recording_id: False)
    client = page.login("analyst")
    assert client.post("/api/play", json={"recording_id": 7, "start": 1}).status_code == 404
    assert client.get("/api/export", params={"key": RECORDING["object_key"]}).status_code == 404
    assert page.presigner.calls == []


def test_play_refuses_a_recording_analysts_do_not_see_as_done(page):
    client = page.login("analyst")
    assert client.post("/api/play", json={"recording_id": 8, "start": 0}).status_code == 404
    assert client.post("/api/play", json={"recording_id": 0, "start": 0}).status_code == 422
    assert client.post("/api/play", json={"recording_id": 7, "start": -1}).status_code == 422
    assert page.logged == [] and page.presigner.calls == []


def test_the_link_lifetime_is_configurable_in_minutes(page, monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_PLAY_URL_MINUTES", "2")
    assert page.login("analyst").post("/api/play", json={"recording_id": 7}).json()["expires_in_s"] == 120
    monkeypatch.setenv("CALLSCRIBE_PLAY_URL_MINUTES", "100000")
    assert access.play_url_ttl() == timedelta(hours=1)  # never longer than an hour
    monkeypatch.setenv("CALLSCRIBE_PLAY_URL_MINUTES", "0")
    assert access.play_url_ttl() == timedelta(minutes=1)
    for typo in ("five", "nan"):  # a bad setting falls back to the default, plays keep working
        monkeypatch.setenv("CALLSCRIBE_PLAY_URL_MINUTES", typo)
        assert access.play_url_ttl() == timedelta(minutes=access.DEFAULT_PLAY_MINUTES)


def test_other_sites_cannot_use_the_login_cookie_and_the_schema_is_not_served(page):
    client = page.login("analyst")
    planted = client.get("/api/export", params={"key": RECORDING["object_key"]},
                         headers={"Sec-Fetch-Site": "cross-site"})
    assert planted.status_code == 403 and page.logged == []
    assert client.get("/api/search", params={"q": "x"}, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.get("/openapi.json").status_code == 404


def test_export_is_logged_with_the_recording(page, monkeypatch):
    from callscribe import exporting

    call = exporting.Call(RECORDING["object_key"], date(2026, 10, 1), "a1", 30.0,
                          [exporting.Line("customer", 1, 1.0, 2.0, "hello")])
    monkeypatch.setattr(exporting, "calls_between", lambda engine, first, last, key, recording_id: iter([call]))
    client = page.login("analyst")
    r = client.get("/api/export", params={"key": RECORDING["object_key"], "format": "txt"})
    assert r.status_code == 200 and "customer: hello" in r.text
    assert page.logged == [("analyst", "export", "format txt", 7)]
    assert client.get("/api/export", params={"key": "calls/nope.wav"}).status_code == 404
    assert len(page.logged) == 1


def test_without_the_analyst_login_the_page_serves_nothing(monkeypatch):
    """No fallback to the owner's login: a missing analyst connection is a 503."""
    from callscribe import db

    monkeypatch.setattr(search_page, "auth_manager", lambda: FakeAuthManager({"analyst"}))
    monkeypatch.setattr(db, "analyst_engine", lambda: (_ for _ in ()).throw(LookupError("no callscribe_analyst")))
    monkeypatch.setattr(db, "engine_from_env", lambda: pytest.fail("the owner's login was used"))
    app = create_app()
    app.dependency_overrides[search_page.get_user] = lambda: FakeUser("analyst")
    r = TestClient(app).get("/api/search", params={"q": "refund"})
    assert r.status_code == 503 and "analysts' database login" in r.json()["detail"]


def test_the_analyst_connection_is_its_own(monkeypatch):
    from callscribe.config import analyst_pg_settings

    monkeypatch.delenv("CALLSCRIBE_ANALYST_CONN_ID", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_CALLSCRIBE_ANALYST", json.dumps({
        "conn_type": "postgres", "host": "db.internal", "port": 5432, "login": "page_reader",
        "password": "s3cret!", "schema": "callscribe", "extra": {"sslmode": "verify-full"}}))
    pg = analyst_pg_settings()
    assert (pg.host, pg.user, pg.password, dict(pg.options)) == ("db.internal", "page_reader", "s3cret!",
                                                                  {"sslmode": "verify-full"})
    assert "s3cret" not in repr(pg)
    monkeypatch.setenv("CALLSCRIBE_ANALYST_CONN_ID", "other_reader")
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_READER", "postgres://reader:pw@h:6432/callscribe")
    assert analyst_pg_settings().user == "reader"


def test_the_dev_auth_manager_grants_transcripts_to_admins_and_listed_users_only(monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser as User

    from callscribe.dev.auth_manager import CallscribeDevAuthManager

    am = CallscribeDevAuthManager()
    monkeypatch.setenv("CALLSCRIBE_DEV_ANALYSTS", "ann, bob")

    def can(name, role, resource=access.RESOURCE_NAME):
        return am.is_authorized_custom_view(method="GET", resource_name=resource, user=User(username=name, role=role))

    assert can("root", "admin") and can("Anonymous", "ADMIN")
    assert can("ann", "viewer") and can("bob", "op")
    assert not can("viewer", "viewer") and not can("op", "op") and not can("ann", None)
    assert can("viewer", "viewer", resource="Some other plugin")  # SimpleAuthManager's answer elsewhere
    monkeypatch.delenv("CALLSCRIBE_DEV_ANALYSTS")
    assert not can("ann", "viewer")


def test_the_embedded_services_use_the_dev_auth_manager_and_an_analyst_connection(tmp_path, monkeypatch):
    from callscribe.dev import services

    monkeypatch.delenv("CALLSCRIBE_DEV_LOGINS", raising=False)
    # Ports nothing listens on: the suite's own test services may be up (no new secrets beside them).
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        p = services.Profile("test", tmp_path / "test", a.getsockname()[1], b.getsockname()[1], 1)
    env = services.environment(p, repo_root=tmp_path)
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == "callscribe.dev.auth_manager.CallscribeDevAuthManager"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "True"  # the demo's and tests' default
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" not in env
    analyst, owner = (json.loads(env[f"AIRFLOW_CONN_CALLSCRIBE_{n}"]) for n in ("ANALYST", "POSTGRES"))
    assert analyst["login"] == "analyst" and analyst["password"] == env["CALLSCRIBE_ANALYST_PASSWORD"]
    assert analyst["password"] != owner["password"] and analyst["port"] == owner["port"]
    monkeypatch.setenv("CALLSCRIBE_DEV_LOGINS", "viewer:viewer,analyst:viewer")  # real logins, to try it out
    env = services.environment(p, repo_root=tmp_path)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "viewer:viewer,analyst:viewer"


def test_page_is_self_contained_and_escapes_results():
    html = TestClient(create_app(require_login=False)).get("/").text
    assert "<script src" not in html and "http" not in html.split("<script>")[1]  # nothing fetched from outside
    assert "\\u0002" in html and "esc(h.key)" in html
    assert "audio_url" not in html and 'fetch("api/play"' in html


def test_the_plugin_serves_the_checked_app():
    text = (Path(__file__).resolve().parents[2] / "plugins" / "callscribe_search_plugin.py").read_text()
    assert "create_app()" in text and "require_login=False" not in text


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


def test_a_play_link_starts_at_or_just_before_its_time(monkeypatch):
    # The link's fragment is in tenths: rounded to the nearest, a hit at 10.29 s played from 10.3 s,
    # after its word began. Down to the tenth (a time given in tenths stays as it is).
    presigner = FakePresigner()
    monkeypatch.setattr(search_page, "_presigner", lambda: presigner)
    fragments = [search_page.audio_url("calls", "k.wav", t).rsplit("#", 1)[1] for t in (10.29, 10.25, 4.3, 0.06, -1.0)]
    assert fragments == ["t=10.2", "t=10.2", "t=4.3", "t=0.0", "t=0.0"]
