"""Full-text search over transcript segments."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from callscribe import db


def search(engine: Engine, query: str, speaker: str | None = None, limit: int = 20) -> list[dict]:
    """Hits for a websearch-style query; every hit carries the key, channel, speaker and times."""
    if not query.strip():
        raise ValueError("empty search query")
    with engine.connect() as conn:
        rows = conn.execute(db.q("search_segments"), {"query": query, "speaker": speaker, "limit": limit})
        return [dict(r._mapping) for r in rows]
