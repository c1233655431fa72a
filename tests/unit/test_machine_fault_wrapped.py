"""A full compile cache as the engine really reports it: wrapped by torch.compile.

errors.machine_fault looked at the raised exception alone, for an OSError with a machine's errno. But
the engine that compiles (granite_native, torch.compile into TORCHINDUCTOR_CACHE_DIR) never raises the
OSError itself: Inductor catches it and raises its own InductorError (a RuntimeError, the OSError only
its context). So on a really full disk each new batch shape still failed its chunks, and their calls
ended `failed` with "InductorError: OSError: [Errno 28] No space left on device", an attempt spent each
run, the very thing the machine-fault check was added for.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from callscribe.engines import BaseEngine, Segment
from callscribe.errors import machine_fault
from callscribe.transcription import run_batches

SR = 16_000


def _compile_on_a_full_disk(monkeypatch, tmp_path):
    """A compiled function whose first call writes its kernel into a cache on a full disk."""
    torch = pytest.importorskip("torch")
    codecache = pytest.importorskip("torch._inductor.codecache")
    if not hasattr(codecache, "write_atomic"):
        pytest.skip("this torch writes its compile cache some other way")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(codecache, "write_atomic", full)
    torch._dynamo.reset()
    return torch, torch.compile(lambda x: torch.sin(x) * 2 + 1, dynamic=True)


class CompilingEngine(BaseEngine):
    name = "compiling"

    def __init__(self, torch, fn):
        self.torch, self.fn = torch, fn

    def run(self, prepared):
        self.fn(self.torch.zeros(len(prepared)))
        return [[Segment(0.0, 1.0, "hello")] for _ in prepared]


def test_a_full_compile_cache_fails_the_job_not_its_chunks(monkeypatch, tmp_path):
    torch, fn = _compile_on_a_full_disk(monkeypatch, tmp_path)
    try:
        with pytest.raises(Exception) as raised:
            fn(torch.zeros(4))
        assert not isinstance(raised.value, OSError)  # what torch raises: its own error, the OSError inside
        assert machine_fault(raised.value), repr(raised.value)

        failures: dict[int, str] = {}
        chunks = [np.zeros(SR, dtype=np.int16) for _ in range(3)]
        with pytest.raises(Exception) as job:
            run_batches(CompilingEngine(torch, fn), chunks, 60, failures)
        assert machine_fault(job.value) and failures == {}, failures
    finally:
        torch._dynamo.reset()


def test_an_input_error_is_not_the_machines_for_what_its_handler_met():
    """An error of the input's own, raised while handling another of its own, stays the input's;
    one raised from (or while handling) a machine's errno is the machine's."""
    try:
        try:
            raise OSError(errno.ENOENT, "no such file")
        except OSError:
            raise ValueError("bad audio") from None
    except ValueError as exc:
        assert not machine_fault(exc)
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as inner:
            raise RuntimeError("could not start the decoder") from inner
    except RuntimeError as exc:
        assert machine_fault(exc)
