"""The analysts' search page, served by the Airflow API server through a plugin.

A FastAPI app: ``/`` is a self-contained page (no external assets), ``/api/search`` the
JSON behind it. Both require an Airflow login (the UI's session cookie or a bearer token).
Every hit links to the recording through a short-lived presigned URL that starts playing
at the hit (``#t=<seconds>``). Text shown is what analysts may see: redacted.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from callscribe.search import MARK_CLOSE, MARK_OPEN, SearchFilters, note_for, search

PRESIGN_TTL = timedelta(hours=1)


@cache
def _presigner():
    """A client for presigning; it may use the endpoint browsers see (CALLSCRIBE_S3_PUBLIC_ENDPOINT),
    and signs with whatever identity the connection has (keys, or the default chain: IRSA, instance profile)."""
    from dataclasses import replace

    from callscribe.config import s3_settings
    from callscribe.storage import minio_client

    s = s3_settings()
    public = os.environ.get("CALLSCRIBE_S3_PUBLIC_ENDPOINT")
    endpoint, secure = (public.split("://", 1)[-1], public.startswith("https://")) if public else (s.endpoint,
                                                                                                 s.secure)
    # A region given up front: presigning then needs no request to the store.
    return minio_client(replace(s, region=s.region or "us-east-1"), endpoint, secure)


def audio_url(bucket: str, key: str, start_s: float) -> str:
    url = _presigner().presigned_get_object(bucket, key, expires=PRESIGN_TTL)
    return f"{url}#t={max(0.0, start_s):.1f}"


def hit_json(h: dict) -> dict:
    return {
        "key": h["object_key"], "call_date": h["call_date"].isoformat(), "agent_id": h["agent_id"],
        "channel": h["channel"], "speaker": h["speaker"], "start": round(h["start_s"], 2),
        "end": round(h["end_s"], 2), "hit": round(h["hit_s"], 2), "snippet": h["snippet"], "match": h["match"],
        # Playback starts at the matched word (a segment can be many seconds long).
        "audio_url": audio_url(h["bucket"], h["object_key"], h["hit_s"]),
    }


def _auth_dependency():
    try:
        from airflow.api_fastapi.core_api.security import get_user
    except ImportError:  # outside the Airflow API server (unit use)
        return []
    return [Depends(get_user)]


def create_app(require_login: bool = True) -> FastAPI:
    deps = _auth_dependency() if require_login else []
    app = FastAPI(title="callscribe call search", dependencies=deps, docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        html = resources.files("callscribe").joinpath("web", "search.html").read_text()
        return html.replace("__MARK_OPEN__", f"\\u{ord(MARK_OPEN):04x}").replace(
            "__MARK_CLOSE__", f"\\u{ord(MARK_CLOSE):04x}")

    @app.get("/api/search")
    def api_search(
        q: Annotated[str, Query(min_length=1, max_length=500)],
        speaker: str | None = None,
        agent: str | None = None,
        date_from: Annotated[date | None, Query(alias="from")] = None,
        date_to: Annotated[date | None, Query(alias="to")] = None,
        min_duration: Annotated[float | None, Query(ge=0)] = None,
        fuzzy: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict:
        from callscribe.db import engine_from_env

        if not q.strip():
            raise HTTPException(status_code=422, detail="empty query")
        filters = SearchFilters(from_date=date_from, to_date=date_to, speaker=speaker or None, agent=agent or None,
                                min_duration_s=min_duration, fuzzy=fuzzy)
        hits = search(engine_from_env(), q, limit=limit, filters=filters)
        return {"query": q, "hits": [hit_json(h) for h in hits], "note": note_for(hits, fuzzy)}

    @app.get("/api/export")
    def api_export(key: Annotated[str, Query(min_length=1, max_length=1024)],
                   format: Annotated[str, Query(pattern="^(srt|vtt|txt|jsonl)$")] = "srt") -> Response:  # noqa: A002
        """One call's transcript as a file, redacted as analysts see it."""
        from callscribe.db import engine_from_env
        from callscribe.exporting import MEDIA_TYPES, RENDER, calls_between, file_name

        call = next(calls_between(engine_from_env(), date.min, date.max, key=key), None)
        if call is None:
            raise HTTPException(status_code=404, detail="no transcribed call with that key")
        body = RENDER[format](call) + ("\n" if format == "jsonl" else "")
        return Response(body, media_type=f"{MEDIA_TYPES[format]}; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{file_name(key, format)}"'})

    return app
