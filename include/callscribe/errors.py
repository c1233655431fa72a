"""Errors as people read them: in `status`, in reports and in a failed task's last line."""

from __future__ import annotations

import errno
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


# What a full or read-only local disk, or a process out of file handles, raises: the machine's state,
# never its input's (a chunk, a recording). A retry elsewhere or later succeeds.
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE})


def machine_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's (MACHINE_ERRNOS), not what it was working on: raised as such,
    or from or while handling such an error (torch.compile raises its own InductorError for the
    OSError of a full kernel cache, the OSError only its context and ``inner_exception``)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > 32:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in MACHINE_ERRNOS:
            return True
        inner = getattr(e, "inner_exception", None)
        todo += [e.__cause__, e.__context__, inner if isinstance(inner, BaseException) else None]
    return False
