"""Transcripts out of the database in the usual formats: JSON lines, SubRip, WebVTT, plain text.

What is exported is what analysts see: redacted text from the ``analytics`` views, speakers
and times. One call becomes one subtitle or text file (its channels merged in time order, each
cue labelled with its speaker); JSON lines hold one call per line for the whole date range.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import Engine

from callscribe import db

FORMATS = ("jsonl", "srt", "vtt", "txt")


@dataclass(frozen=True)
class Line:
    speaker: str
    channel: int
    start: float
    end: float
    text: str


@dataclass
class Call:
    key: str
    call_date: date
    agent_id: str | None
    duration_s: float | None
    lines: list[Line] = field(default_factory=list)
    bucket: str = ""
    recording_id: int | None = None


# Calls read per statement. Each page is a query of its own: a long range is never held in memory
# at once (nor one transaction open while files are written), and a call erased while an export
# runs is not written after its erasure unless its page was read before it.
PAGE = 100


def calls_between(engine: Engine, first: date, last: date, key: str | None = None,
                  recording_id: int | None = None) -> Iterator[Call]:
    """The calls of [first, last] (or the one ``key``, or the one recording) with their redacted
    segments, in time order; a key transcribed in two buckets is two calls."""
    after: Call | None = None
    while True:
        page = list(_page(engine, first, last, key, recording_id, after))
        again = after is not None and bool(page) and (page[0].bucket, page[0].key) == (after.bucket, after.key)
        # Again: the last call written, uploaded again and transcribed since (its newer recording id
        # sorts after it): written already, as it was when its page was read; not a second call.
        yield from page[1:] if again else page
        if len(page) < PAGE:
            return
        after = page[-1]


def _page(engine: Engine, first: date, last: date, key: str | None, recording_id: int | None,
          after: Call | None) -> Iterator[Call]:
    """Up to PAGE calls after ``after`` (in the export's order), read in one statement."""
    current: Call | None = None
    with engine.connect() as conn:
        rows = conn.execute(db.q("export_segments"), {
            "first": first, "last": last, "key": key, "rid": recording_id, "page": PAGE,
            "after_date": after and after.call_date, "after_key": after and after.key,
            "after_id": after and after.recording_id})
        for r in rows:
            if current is None or current.recording_id != r.recording_id:
                if current is not None:
                    yield current
                current = Call(r.object_key, r.call_date, r.agent_id, r.duration_s, bucket=r.bucket,
                               recording_id=r.recording_id)
            if r.text is not None:
                current.lines.append(Line(r.speaker, r.channel, float(r.start_s), float(r.end_s), r.text))
    if current is not None:
        yield current


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000)) if math.isfinite(seconds) else 0
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _one_line(text: str) -> str:
    # A blank line ends a cue in both subtitle formats, and "-->" starts a timing line.
    return re.sub(r"-+>", "->", re.sub(r"\s+", " ", text)).strip()


def to_srt(call: Call) -> str:
    cues = []
    for i, line in enumerate(call.lines, start=1):
        cues.append(f"{i}\n{_clock(line.start, ',')} --> {_clock(max(line.end, line.start), ',')}\n"
                    f"{_one_line(line.speaker)}: {_one_line(line.text)}\n")
    return "\n".join(cues)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(call: Call) -> str:
    cues = [f"WEBVTT - {_one_line(call.key)}\n"]
    for line in call.lines:
        cues.append(f"{_clock(line.start, '.')} --> {_clock(max(line.end, line.start), '.')}\n"
                    f"<v {_vtt_escape(_one_line(line.speaker))}>{_vtt_escape(_one_line(line.text))}\n")
    return "\n".join(cues)


def to_txt(call: Call) -> str:
    # The key and agent too: an object key may hold a line break, and a line must not pass for another.
    head = f"{_one_line(call.key)} ({call.call_date}, agent {_one_line(call.agent_id or '-')})\n\n"
    return head + "".join(f"[{_clock(line.start, '.')[:-4]}] {_one_line(line.speaker)}: {_one_line(line.text)}\n"
                          for line in call.lines)


def to_json(call: Call) -> str:
    body = asdict(call)
    body["call_date"] = call.call_date.isoformat()
    return json.dumps(body, ensure_ascii=False)


RENDER = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt, "jsonl": to_json}
MEDIA_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt", "txt": "text/plain", "jsonl": "application/jsonl"}


def file_name(key: str, fmt: str) -> str:
    """A call's file: its object key made safe (folders joined by "__", at most 120 characters)
    and 8 hex digits of the key's hash, so two keys never share a file."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key.strip("/").replace("/", "__")).strip(".")[:120] or "call"
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.{fmt}"


def _write_whole(path: Path, write: Callable[[TextIO], None]) -> None:
    """``write`` into a file beside ``path`` that replaces it once complete: a run cut short leaves
    no file that looks whole (nor spoils the one an earlier run wrote); the process id keeps two
    exports into one folder out of each other's unfinished file."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with part.open("w", encoding="utf-8") as f:
            write(f)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def export(calls: Iterable[Call], fmt: str, out: Path) -> list[Path]:
    """Write the calls to ``out``: one JSON-lines file for them all, or one file per call."""
    if fmt not in RENDER:
        raise ValueError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path = out / "transcripts.jsonl"
        _write_whole(path, lambda f: f.writelines(to_json(call) + "\n" for call in calls))
        return [path]
    written: list[Path] = []
    taken: set[Path] = set()  # a set: a day of many thousand calls checks each name in constant time
    for call in calls:
        path = out / file_name(call.key, fmt)
        if path in taken:  # the key's call in another bucket: named by bucket and key
            path = out / file_name(f"{call.bucket}/{call.key}", fmt)
        text = RENDER[fmt](call)
        _write_whole(path, lambda f, text=text: f.write(text))
        written.append(path)
        taken.add(path)
    return written
