"""Full-text search over transcript segments, through the analysts' `analytics.search`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.engine import Engine

from callscribe import db

# analytics.search marks matched words with these control characters; each interface
# turns them into its own highlighting (brackets in a terminal, <mark> in the page).
MARK_OPEN, MARK_CLOSE = "\x02", "\x03"


@dataclass(frozen=True)
class SearchFilters:
    from_date: date | None = None
    to_date: date | None = None
    speaker: str | None = None
    agent: str | None = None
    min_duration_s: float | None = None
    # None: exact matches, or similar ones when nothing matches exactly; True: exact, then similar;
    # False: exact only.
    fuzzy: bool | None = None
    # Exact matches are ranked in the newest `recent_days` days with calls first, widened to 7, 30,
    # 90 and 365 days and then the whole range until enough are found; None ranks every match.
    recent_days: int | None = 1


def search(engine: Engine, query: str, limit: int = 20, filters: SearchFilters | None = None) -> list[dict]:
    """Hits for a websearch-style query; each carries the key, channel, speaker, the segment's times,
    ``hit_s`` (when the first matching word starts) and a snippet."""
    if not query.strip():
        raise ValueError("empty search query")
    f = filters or SearchFilters()
    params = {
        "query": query, "from_date": f.from_date, "to_date": f.to_date, "speaker": f.speaker,
        "agent": f.agent, "min_duration_s": f.min_duration_s, "fuzzy": f.fuzzy, "limit": limit,
        "recent_days": f.recent_days,
    }
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(db.q("search_segments"), params)]


FALLBACK_NOTE = "no exact matches; showing similar"


def note_for(hits: list[dict], fuzzy: bool | None) -> str | None:
    """What to tell the user besides the hits: no matches at all, or only similar ones found by
    the automatic fallback (the transcript's spelling was not the query's)."""
    if not hits:
        return "no matches, exact or similar" if fuzzy is not False else "no exact matches"
    if fuzzy is None and all(h["match"] == "fuzzy" for h in hits):
        return FALLBACK_NOTE
    return None


def highlight(snippet: str, open_: str = "[", close: str = "]") -> str:
    return snippet.replace(MARK_OPEN, open_).replace(MARK_CLOSE, close)
