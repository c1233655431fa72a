"""Transcripts out of the database in the usual formats: JSON lines, SubRip, WebVTT, plain text.

What is exported is what analysts see: redacted text from the ``analytics`` views, speakers
and times. One call becomes one subtitle or text file (its channels merged in time order, each
cue labelled with its speaker); JSON lines hold one call per line for the whole date range.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

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


def calls_between(engine: Engine, first: date, last: date, key: str | None = None,
                  recording_id: int | None = None) -> Iterator[Call]:
    """The calls of [first, last] (or the one ``key``, or the one recording) with their redacted
    segments, in time order; a key transcribed in two buckets is two calls."""
    current: Call | None = None
    with engine.connect() as conn:
        rows = conn.execute(db.q("export_segments"), {"first": first, "last": last, "key": key,
                                                      "rid": recording_id})
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
    head = f"{call.key} ({call.call_date}, agent {call.agent_id or '-'})\n\n"
    return head + "".join(f"[{_clock(line.start, '.')[:-4]}] {line.speaker}: {_one_line(line.text)}\n"
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


def export(calls: Iterable[Call], fmt: str, out: Path) -> list[Path]:
    """Write the calls to ``out``: one JSON-lines file for them all, or one file per call."""
    if fmt not in RENDER:
        raise ValueError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path = out / "transcripts.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for call in calls:
                f.write(to_json(call) + "\n")
        return [path]
    written = []
    for call in calls:
        path = out / file_name(call.key, fmt)
        if path in written:  # the key's call in another bucket: named by bucket and key
            path = out / file_name(f"{call.bucket}/{call.key}", fmt)
        path.write_text(RENDER[fmt](call), encoding="utf-8")
        written.append(path)
    return written
