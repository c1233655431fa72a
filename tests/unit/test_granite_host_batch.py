"""A batch's chunks in one host buffer (HostBatch): int16 chunks travel as int16 and are scaled on the
device, exactly as run_batches' float conversion would have done on the host."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from callscribe.audio import as_float
from callscribe.engines import BaseEngine, EngineOutOfMemory, Segment
from callscribe.engines.nar.host import HostBatch
from callscribe.transcription import run_batches

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "granite-nar-tiny"
RNG = np.random.default_rng(7)


def _int16(seconds: list[float]) -> list[np.ndarray]:
    return [RNG.integers(-32768, 32768, int(s * 16_000)).astype(np.int16) for s in seconds]


def test_int16_chunks_stay_int16_and_reach_the_device_as_the_host_conversion_would_make_them():
    chunks = _int16([1.0, 0.25, 0.0, 2.0]) + [np.array([-32768, 32767, 0, 1], dtype=np.int16)]
    batch = HostBatch.of(chunks)
    assert batch.samples.dtype == torch.int16 and batch.samples.numel() == sum(c.size for c in chunks)
    assert batch.lengths == tuple(c.size for c in chunks)
    assert batch.durations == [c.size / 16_000 for c in chunks]
    waves = batch.waves("cpu")
    assert [w.dtype for w in waves] == [torch.float32] * len(chunks)
    for w, c in zip(waves, chunks, strict=True):
        assert np.array_equal(w.numpy(), as_float(c))  # bit for bit: the scale is a power of two
    assert waves[-1].tolist() == [-1.0, 32767 / 32768, 0.0, 1 / 32768]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_chunks_and_mixed_batches_go_as_float32(dtype):
    floats = [RNG.uniform(-1, 1, n).astype(dtype) for n in (300, 0, 17)]
    batch = HostBatch.of(floats)
    assert batch.samples.dtype == torch.float32
    for w, c in zip(batch.waves("cpu"), floats, strict=True):
        assert np.array_equal(w.numpy(), as_float(c))
    mixed = _int16([0.01]) + floats
    got = HostBatch.of(mixed)
    assert got.samples.dtype == torch.float32
    for w, c in zip(got.waves("cpu"), mixed, strict=True):
        assert np.array_equal(w.numpy(), as_float(c))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_chunk_with_non_finite_samples_is_refused_by_its_place(bad):
    floats = [RNG.uniform(-1, 1, n).astype(np.float32) for n in (300, 40, 17)]
    floats[1][7] = bad
    with pytest.raises(ValueError, match=r"chunk 1 of 3 holds non-finite samples"):
        HostBatch.of(floats)


def test_run_batches_fails_only_the_chunk_with_non_finite_samples():
    """Through the batch runner the refusal is that chunk's failure, with its reason; the rest run."""
    floats = [RNG.uniform(-0.5, 0.5, 16_000).astype(np.float32) for _ in range(4)]
    floats[2][100] = np.nan

    class Engine(BaseEngine):
        name = "host-batch"

        def prepare(self, batch):
            return HostBatch.of(batch)

        def run(self, prepared):
            return [[Segment(0.0, n / 16_000, "ok")] for n in prepared.lengths]

    failures: dict[int, str] = {}
    results, _ = run_batches(Engine(), floats, budget_s=100, failures=failures)
    assert failures == {2: "ValueError: the chunk holds non-finite samples (NaN or inf)"}
    assert [bool(r) for r in results] == [True, True, False, True]


def test_an_empty_batch():
    batch = HostBatch.of([])
    assert batch.samples.numel() == 0 and batch.lengths == () and batch.waves("cpu") == []


class _Recorder(BaseEngine):
    name = "recorder"

    def __init__(self, takes_int16: bool):
        self.takes_int16 = takes_int16
        self.dtypes: list[str] = []

    def prepare(self, batch):
        self.dtypes += [str(a.dtype) for a in batch]
        return batch

    def run(self, prepared):
        return [[Segment(0.0, 1.0, str(len(a)))] for a in prepared]


@pytest.mark.parametrize(("takes_int16", "dtype"), [(True, "int16"), (False, "float32")])
def test_run_batches_converts_only_for_engines_that_do_not_take_int16(takes_int16, dtype):
    engine = _Recorder(takes_int16)
    results, _ = run_batches(engine, _int16([0.5, 1.5, 0.2]), budget_s=10)
    assert engine.dtypes == [dtype] * 3 and [r[0].text for r in results] == ["8000", "24000", "3200"]


class _RunsOutOfMemory(_Recorder):
    """Takes int16, and has room for one chunk at a time: run_batches halves its batches down to one."""

    def run(self, prepared):
        if len(prepared) > 1:
            raise EngineOutOfMemory("CUDA out of memory (scripted)")
        return super().run(prepared)


def test_the_halves_of_a_batch_that_ran_out_of_memory_are_handed_over_as_int16_too():
    engine = _RunsOutOfMemory(takes_int16=True)
    results, metrics = run_batches(engine, _int16([0.5, 1.5, 0.2, 0.3]), budget_s=10)
    assert [r[0].text for r in results] == ["8000", "24000", "3200", "4800"]  # nothing lost, in order
    assert metrics[0].oom_splits >= 1 and set(engine.dtypes) == {"int16"}


def test_the_native_engine_transcribes_int16_chunks_exactly_as_their_float_copies():
    from callscribe.engines import create

    engine = create("granite-nar-native", path=FIXTURE, device="cpu")
    assert engine.takes_int16
    chunks = [np.round(np.sin(np.arange(int(s * 16_000)) * f) * 12_000).astype(np.int16) + RNG.integers(-900, 900,
              int(s * 16_000)).astype(np.int16) for s, f in ((2.2, 0.03), (0.7, 0.11), (3.4, 0.007))]
    from_int16, _ = run_batches(engine, chunks, budget_s=20)
    from_float, _ = run_batches(engine, [as_float(c) for c in chunks], budget_s=20)
    assert from_int16 == from_float
    assert any(segments for segments in from_int16)  # the tiny checkpoint says something
