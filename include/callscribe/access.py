"""Who may use the analysts' page, and the record of what they did with it.

The page asks Airflow's auth manager for one permission of callscribe's own, ``RESOURCE_NAME``
(read on a custom view; with the FAB auth manager a role holding ``can_read`` on
"Call Transcripts"). Everything the page reads it reads through the analysts' login, and every
search, play and export (and every refusal) is appended to ``access_log`` through
``analytics.log_access``: the analyst role can add rows there and do nothing else with them.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache

from sqlalchemy.engine import Engine

from callscribe import db

RESOURCE_NAME = "Call Transcripts"
ACTIONS = ("search", "play", "export", "erase", "dataset", "denied")  # access_log's check

DEFAULT_PLAY_MINUTES = 5
MAX_PLAY_MINUTES = 60


class NotAnAnalystLogin(RuntimeError):
    """The page's database login could read more than analysts may (or is not an analyst)."""


def log_access(engine: Engine, actor: str, action: str, detail: str | None = None,
               recording_id: int | None = None) -> None:
    """One row in access_log, committed before the caller serves anything."""
    if action not in ACTIONS:
        raise ValueError(f"unknown access action {action!r}")
    with engine.begin() as conn:
        conn.execute(db.q("access_log_write"),
                     {"actor": actor, "action": action, "detail": detail, "rid": recording_id})


def log_call_access(engine: Engine, actor: str, action: str, detail: str | None, recording_id: int) -> bool:
    """Log a play or download of one recording, committed before the caller serves it; False (and
    nothing logged) when the recording is no longer transcribed: an erasure or a new upload came
    between the caller's lookup and now, and nothing of the call may be served."""
    if action not in ACTIONS:
        raise ValueError(f"unknown access action {action!r}")
    with engine.begin() as conn:
        return bool(conn.execute(db.q("access_log_call"), {"actor": actor, "action": action, "detail": detail,
                                                           "rid": recording_id}).scalar_one())


def done_recording(engine: Engine, recording_id: int) -> dict | None:
    """The recording, when the analyst views show it as transcribed (status done); else None."""
    with engine.connect() as conn:
        row = conn.execute(db.q("access_recording"), {"rid": recording_id, "key": None}).first()
    return dict(row._mapping) if row else None


def done_recording_by_key(engine: Engine, key: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(db.q("access_recording"), {"rid": None, "key": key}).first()
    return dict(row._mapping) if row else None


def recording_ids(engine: Engine, hits: list[dict]) -> dict[tuple[str, str], int]:
    """(bucket, key) -> the id of its transcribed recording, for the hits' calls (one query)."""
    keys = sorted({h["object_key"] for h in hits})
    if not keys:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(db.q("access_recording_ids"), {"keys": keys})
        return {(r.bucket, r.object_key): r.recording_id for r in rows}


@lru_cache(maxsize=4)
def check_analyst_login(engine: Engine) -> None:
    """Refuse a login that is not an analyst, or that could read the unredacted tables (the owner, a
    superuser, callscribe_privileged): pointing the page at one would show analysts more than their
    role allows. Only a good result is cached; a refusal is checked again on the next request."""
    with engine.connect() as conn:
        row = conn.execute(db.q("access_login_check")).one()
    if not row.analyst or row.raw or row.super:
        raise NotAnAnalystLogin(f"database login {row.login!r} is not an analyst-only login (member of "
                                f"callscribe_analyst: {row.analyst}, reads raw tables: {row.raw}, "
                                f"superuser: {row.super})")


def play_url_ttl() -> timedelta:
    """How long a play link works (CALLSCRIBE_PLAY_URL_MINUTES, 1 to 60; default 5)."""
    raw = os.environ.get("CALLSCRIBE_PLAY_URL_MINUTES", "").strip()
    try:
        minutes = float(raw) if raw else DEFAULT_PLAY_MINUTES
    except ValueError:
        minutes = DEFAULT_PLAY_MINUTES
    if minutes != minutes:  # nan: a typo must not make every play fail
        minutes = DEFAULT_PLAY_MINUTES
    return timedelta(minutes=min(max(minutes, 1), MAX_PLAY_MINUTES))
