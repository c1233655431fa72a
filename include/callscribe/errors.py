"""Errors as people read them: in `status`, in reports and in a failed task's last line."""

from __future__ import annotations

import re

# "<_io.BytesIO object at 0x7f...>" and the like: an address tells nobody anything.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def plain(text: str) -> str:
    """A message without Python object addresses, on one line."""
    lines = [ln.strip() for ln in _OBJECT_REPR.sub("the file", text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def describe(exc: BaseException) -> str:
    """'ErrorType: first line of the message', for a reason column or a log line."""
    msg = plain(str(exc))
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
