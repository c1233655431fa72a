"""The analysts' search page, served by the Airflow API server through a plugin.

A FastAPI app: ``/`` is a self-contained page (no external assets), ``/api/search``,
``/api/play`` and ``/api/export`` the JSON and files behind it. Every route needs an Airflow
login (the UI's session cookie or a bearer token) that the auth manager grants callscribe's
permission (:data:`callscribe.access.RESOURCE_NAME`); others get 403, and the refusal is logged.

The page reads through the analysts' database login (connection ``callscribe_analyst``), never
the pipeline owner's, so it shows what the analyst role sees: redacted text. Search hits carry
no link to the audio: playing asks ``/api/play``, which checks the recording is one analysts see
as transcribed, logs the play and answers with a presigned URL that works for a few minutes.
Every search, play and export is written to ``access_log`` before anything is served.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from datetime import date
from functools import cache
from importlib import resources
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from callscribe import access
from callscribe.search import MARK_CLOSE, MARK_OPEN, SearchFilters, note_for, search

log = logging.getLogger(__name__)

# The actor named in the access log when the app is used in-process without a login (tests).
LOCAL_ACTOR = "local (no login)"


@cache
def _presigner():
    """A client for presigning; it may use the endpoint browsers see (CALLSCRIBE_S3_PUBLIC_ENDPOINT),
    and signs with whatever identity the connection has (keys, or the default chain: IRSA, instance profile)."""
    from dataclasses import replace

    from callscribe.config import s3_settings
    from callscribe.storage import minio_client, store

    s = s3_settings()
    public = os.environ.get("CALLSCRIBE_S3_PUBLIC_ENDPOINT")
    endpoint, secure = (public.split("://", 1)[-1], public.startswith("https://")) if public else (s.endpoint,
                                                                                                 s.secure)
    # A region given up front: presigning then needs no request to the public endpoint (which this server
    # may not reach). Without one in the connection, the bucket's own, as the pipeline's client asks it
    # (GetBucketLocation, once): AWS refuses a link signed for us-east-1 to a bucket of another region.
    region = s.region or store(s).client._get_region(s.bucket)
    return minio_client(replace(s, region=region), endpoint, secure)


def audio_url(bucket: str, key: str, start_s: float) -> str:
    """A short-lived link to the recording that starts playing at ``start_s``."""
    url = _presigner().presigned_get_object(bucket, key, expires=access.play_url_ttl())
    return f"{url}#t={play_from(start_s):.1f}"


def play_from(start_s: float) -> float:
    """The time a link's fragment (in tenths) plays from: ``start_s`` down to its tenth, so a play never
    starts after the word it was asked for (rounding to the nearest could skip up to 50 ms of it)."""
    # Tenths counted with a little rounding first: 4.3 s (4.2999... as a float) stays 4.3.
    return max(0.0, math.floor(round(start_s * 10, 6)) / 10)


def audio_unchanged(bucket: str, key: str, etag: str) -> bool:
    """Whether the object under ``key`` is still the content transcribed as ``etag``: a key uploaded
    again keeps its older transcript searchable until the new one loads, and a deleted one until the
    next discovery, but neither is the audio of that transcript any more. An outage raises."""
    from minio.error import S3Error

    from callscribe.storage import store, unavailable

    try:
        current, _ = store().stat(bucket, key)
    except S3Error as exc:
        if unavailable(exc):
            raise
        return False
    return current == etag


def hit_json(h: dict, recording_id: int | None) -> dict:
    return {
        "key": h["object_key"], "call_date": h["call_date"].isoformat(), "agent_id": h["agent_id"],
        "channel": h["channel"], "speaker": h["speaker"], "start": round(h["start_s"], 2),
        "end": round(h["end_s"], 2), "hit": round(h["hit_s"], 2), "snippet": h["snippet"], "match": h["match"],
        # What /api/play takes; None when the call is not (or no longer) transcribed: nothing to play.
        "recording_id": recording_id,
    }


# ---------------------------------------------------------------- the ranking window

# The page's ``recent_days``: where analytics.search ranks exact matches first (the newest N days
# with calls, widening until there are enough); "all" (or empty) ranks every match together.
DEFAULT_RECENT_DAYS = SearchFilters().recent_days
MAX_RECENT_DAYS = 3650
ALL_DATES = "all"
RECENT_DAYS_HELP = (f"recent_days must be a whole number of days from 1 to {MAX_RECENT_DAYS}, "
                    f"or {ALL_DATES!r} to rank all dates together")


def parse_recent_days(value: str | None) -> int | None:
    """The first ranking window for :class:`SearchFilters`: the default when not given, None (every
    match ranked together) for "" or "all", else 1 to :data:`MAX_RECENT_DAYS` days; ValueError otherwise."""
    if value is None:
        return DEFAULT_RECENT_DAYS
    if value in ("", ALL_DATES):
        return None
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= MAX_RECENT_DAYS:
        raise ValueError(RECENT_DAYS_HELP)
    return int(value)


# ---------------------------------------------------------------- who may use the page


def _airflow_get_user():
    try:
        from airflow.api_fastapi.core_api.security import get_user
    except ImportError:  # no Airflow API server here: nobody gets in
        def get_user() -> Any:
            raise HTTPException(status_code=401, detail="Airflow login unavailable")
    return get_user


# The API server's own login dependency (session cookie or bearer token); tests override it.
get_user = _airflow_get_user()


def auth_manager() -> Any:
    """The running API server's auth manager (FAB in production, callscribe's dev manager in the
    embedded services)."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def analyst_engine() -> Engine:
    """The analysts' login, checked to be analyst-only and on a schema migrated for this code; 503
    when it is missing, not analyst-only (never a fallback to the owner's login) or behind."""
    from callscribe import db

    try:
        engine = db.analyst_engine()
        access.check_analyst_login(engine)
        # Deployed with the code, maybe before the database was migrated for it: say so, rather than
        # fail on a missing column.
        db.check_revision(db.analyst_revision(engine))
    except access.NotAnAnalystLogin as exc:
        log.error("call search refused to query: %s", exc)
        raise HTTPException(status_code=503, detail="the page's database login is not an analyst login") from None
    except db.SchemaBehind as exc:
        log.error("call search refused to query: %s", exc)
        raise HTTPException(status_code=503, detail="the database is not yet migrated for this version of the "
                            "page: the operators must run `callscribe migrate`") from None
    except Exception as exc:  # no connection, a wrong password, the database down
        # The type and message only: connection errors name host and user, never the password.
        log.error("call search has no analyst database login: %s: %s", type(exc).__name__, exc)
        raise HTTPException(status_code=503, detail="the analysts' database login is not available") from None
    return engine


# SQLSTATEs of a search the database gave up on, not an error in it: query_canceled (the login's
# statement_timeout; a DBA's pg_cancel_backend too, told apart below) and lock_not_available (the
# login's lock_timeout).
CUT_SHORT = {"57014": "ran longer than the database allows the analysts' login (its statement_timeout)",
             "55P03": "waited longer than the database allows the analysts' login for a table (its lock_timeout)"}
CANCELLED = "was cancelled in the database (by an administrator)"


def _pgcode(exc: sa.exc.OperationalError) -> str:
    return getattr(exc.orig, "pgcode", None) or ""


def _time_limit_ms(engine: Engine) -> int | None:
    """The analysts' login's statement_timeout in milliseconds (0: none); None when it cannot be read."""
    from callscribe import db

    try:
        with engine.connect() as conn:
            return int(conn.execute(db.q("search_time_limit")).scalar_one())
    except Exception as exc:  # noqa: BLE001 - the search's own error is what the analyst is told about
        log.warning("could not read the analysts' login's statement_timeout: %s", type(exc).__name__)
        return None


def _cut_short(exc: sa.exc.OperationalError, actor: str, ran_s: float, limit_ms: int | None) -> HTTPException | None:
    """A 503 the page shows for a search the database cut short (None for another error). A DBA
    sets such limits on analysts' logins against hours-long queries: a broad search can reach them.
    A cancel (pg_cancel_backend) has the limit's SQLSTATE: the search ran short of the limit then
    (``ran_s`` against ``limit_ms``; the server's words, in whatever lc_messages it has, only
    where the limit is not known)."""
    code = _pgcode(exc)
    why = CUT_SHORT.get(code)
    if why is None:
        return None
    if code == "57014":
        timed_out = ("statement timeout" in str(exc.orig) if limit_ms is None
                     else limit_ms > 0 and ran_s * 1000 >= 0.9 * limit_ms)
        why = why if timed_out else CANCELLED
    log.warning("call search by %s cut short after %.1f s: it %s", actor, ran_s, why)
    return HTTPException(status_code=503, detail=f"the search {why}: narrow the dates, the speaker or the agent, "
                                                 f"or search with fewer words, and try again")


def _actor_name(user: Any) -> str:
    name = user.get_name() if hasattr(user, "get_name") else None
    return str(name or getattr(user, "username", None) or "unknown")


def _same_site(request: Request) -> None:
    """Refuse requests another site's page makes with the user's cookie (an export link planted
    elsewhere): browsers say where a request comes from in Sec-Fetch-Site."""
    if request.headers.get("sec-fetch-site", "same-origin") == "cross-site":
        raise HTTPException(status_code=403, detail="cross-site requests are refused")


def _permitted(request: Request, user: Annotated[Any, Depends(get_user)]) -> str:
    """The caller's name, when the auth manager grants callscribe's permission; else 403 (logged)."""
    _same_site(request)
    actor = _actor_name(user)
    if auth_manager().is_authorized_custom_view(method="GET", resource_name=access.RESOURCE_NAME, user=user):
        return actor
    try:
        access.log_access(analyst_engine(), actor, "denied", f"{request.method} {request.url.path}")
    except Exception as exc:  # a refusal stays a refusal even when it cannot be logged
        log.warning("could not log a refused request by %s: %s", actor, getattr(exc, "detail", exc))
    raise HTTPException(status_code=403, detail=f"you need the {access.RESOURCE_NAME!r} permission")


def _local() -> str:
    return LOCAL_ACTOR


FORBIDDEN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Call search · callscribe</title>
</head><body style="font-family: system-ui, sans-serif; margin: 2rem"><h1>Call search</h1>
<p id="forbidden">Your Airflow account does not have the <b>Call Transcripts</b> permission, which call
search needs. Ask an Airflow administrator for the analysts' role.</p></body></html>"""


class PlayRequest(BaseModel):
    recording_id: int = Field(ge=1)
    start: float = Field(default=0.0, ge=0, le=86_400)


def create_app(require_login: bool = True) -> FastAPI:
    """The page's app. ``require_login=False`` is for in-process use only (tests): no login and no
    permission check, and the access log names the actor :data:`LOCAL_ACTOR`."""
    actor_dep = _permitted if require_login else _local
    # On the app, so that every route (and any added later) is behind the check.
    app = FastAPI(title="callscribe call search", dependencies=[Depends(actor_dep)], docs_url=None,
                  redoc_url=None, openapi_url=None)  # app dependencies do not cover the schema route

    @app.exception_handler(HTTPException)
    async def _refusal(request: Request, exc: HTTPException):
        # A browser opening the page gets a readable page; fetch() from the page gets JSON.
        if exc.status_code == 403 and "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(FORBIDDEN_PAGE, status_code=403)
        return await http_exception_handler(request, exc)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        html = resources.files("callscribe").joinpath("web", "search.html").read_text()
        return html.replace("__MARK_OPEN__", f"\\u{ord(MARK_OPEN):04x}").replace(
            "__MARK_CLOSE__", f"\\u{ord(MARK_CLOSE):04x}")

    @app.get("/api/search")
    def api_search(
        q: Annotated[str, Query(min_length=1, max_length=500)],
        speaker: Annotated[str | None, Query(max_length=100)] = None,
        agent: Annotated[str | None, Query(max_length=200)] = None,
        date_from: Annotated[date | None, Query(alias="from")] = None,
        date_to: Annotated[date | None, Query(alias="to")] = None,
        min_duration: Annotated[float | None, Query(ge=0)] = None,
        fuzzy: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        recent_days: str | None = None,  # checked by parse_recent_days, for one clear message
        actor: str = Depends(actor_dep),  # a default, not an annotation: this module's annotations are strings
    ) -> dict:
        if not q.strip():
            raise HTTPException(status_code=422, detail="empty query")
        try:
            window = parse_recent_days(recent_days)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        filters = SearchFilters(from_date=date_from, to_date=date_to, speaker=speaker or None, agent=agent or None,
                                min_duration_s=min_duration, fuzzy=fuzzy, recent_days=window)
        engine = analyst_engine()
        asked = {"q": q, "speaker": filters.speaker, "agent": filters.agent, "from": date_from, "to": date_to,
                 "min_duration": min_duration, "fuzzy": fuzzy,
                 # Like the other filters, logged when it is not the default: N days, or "all".
                 "recent_days": None if window == DEFAULT_RECENT_DAYS else (ALL_DATES if window is None else window)}
        access.log_access(engine, actor, "search",
                          json.dumps({k: v for k, v in asked.items() if v is not None}, default=str))
        started = time.monotonic()
        try:
            hits = search(engine, q, limit=limit, filters=filters)
        except sa.exc.OperationalError as exc:
            ran_s = time.monotonic() - started
            limit_ms = _time_limit_ms(engine) if _pgcode(exc) == "57014" else None
            if (cut := _cut_short(exc, actor, ran_s, limit_ms)) is None:
                raise
            raise cut from None
        ids = access.recording_ids(engine, hits)
        return {"query": q, "hits": [hit_json(h, ids.get((h["bucket"], h["object_key"]))) for h in hits],
                "note": note_for(hits, fuzzy)}

    @app.post("/api/play")
    def api_play(body: PlayRequest, actor: str = Depends(actor_dep)) -> dict:
        """A short-lived link to one transcribed recording, from ``start`` seconds; the play is logged."""
        engine = analyst_engine()
        rec = access.done_recording(engine, body.recording_id)
        if rec is None:
            raise HTTPException(status_code=404, detail="no transcribed call with that id")
        try:
            same = audio_unchanged(rec["bucket"], rec["object_key"], rec["etag"])
        except Exception as exc:  # the store unreachable: no link to audio that cannot be checked
            log.error("call search could not check %s in the bucket: %s", rec["object_key"], type(exc).__name__)
            raise HTTPException(status_code=503, detail="the recordings' bucket is not available") from None
        if not same:
            raise HTTPException(status_code=409, detail="the bucket no longer holds the audio of this transcript "
                                                        "(the call was uploaded again or deleted)")
        if not access.log_call_access(engine, actor, "play", f"from {body.start:.1f} s", rec["recording_id"]):
            raise HTTPException(status_code=404, detail="no transcribed call with that id")
        ttl = access.play_url_ttl()
        return {"url": audio_url(rec["bucket"], rec["object_key"], body.start),
                "expires_in_s": int(ttl.total_seconds())}

    @app.get("/api/export")
    def api_export(key: Annotated[str, Query(min_length=1, max_length=1024)],
                   format: Annotated[str, Query(pattern="^(srt|vtt|txt|jsonl)$")] = "srt",  # noqa: A002
                   recording_id: Annotated[int | None, Query(ge=1)] = None,
                   actor: str = Depends(actor_dep)) -> Response:
        """One call's transcript as a file, redacted as analysts see it; the export is logged. The
        key's newest transcribed recording, or the one ``recording_id`` (a hit's: a key can hold a
        call in two buckets)."""
        from callscribe.exporting import MEDIA_TYPES, RENDER, calls_between, file_name

        engine = analyst_engine()
        rec = (access.done_recording(engine, recording_id) if recording_id is not None
               else access.done_recording_by_key(engine, key))
        if rec is None or rec["object_key"] != key:
            raise HTTPException(status_code=404, detail="no transcribed call with that key")
        if not access.log_call_access(engine, actor, "export", f"format {format}", rec["recording_id"]):
            raise HTTPException(status_code=404, detail="no transcribed call with that key")
        call = next(calls_between(engine, date.min, date.max, key=key, recording_id=rec["recording_id"]), None)
        if call is None:
            raise HTTPException(status_code=404, detail="no transcribed call with that key")
        body = RENDER[format](call) + ("\n" if format == "jsonl" else "")
        return Response(body, media_type=f"{MEDIA_TYPES[format]}; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{file_name(key, format)}"'})

    return app
