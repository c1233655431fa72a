"""The batch runner with a scripted engine: order, budget, out-of-memory splits, overlap."""

import threading
import time

import numpy as np
import pytest

from callscribe.engines import BaseEngine, EngineOutOfMemory, Segment
from callscribe.transcription import run_batches

SR = 16_000


class EchoEngine(BaseEngine):
    """Returns each chunk's length as its text; runs out of memory above max_items per batch."""

    name = "echo"

    def __init__(self, max_items: int | None = None, run_s: float = 0.0, prepare_s: float = 0.0):
        self.max_items, self.run_s, self.prepare_s = max_items, run_s, prepare_s
        self.batches: list[int] = []
        self.events: list[tuple[str, float, float]] = []
        self.prepare_threads: set[str] = set()

    def prepare(self, batch):
        t = time.perf_counter()
        time.sleep(self.prepare_s)
        self.prepare_threads.add(threading.current_thread().name)
        self.events.append(("prepare", t, time.perf_counter()))
        return batch

    def run(self, prepared):
        t = time.perf_counter()
        if self.max_items is not None and len(prepared) > self.max_items:
            raise EngineOutOfMemory("CUDA out of memory (scripted)")
        time.sleep(self.run_s)
        self.batches.append(len(prepared))
        self.events.append(("run", t, time.perf_counter()))
        return [[Segment(0.0, len(a) / SR, str(len(a)))] for a in prepared]


def _chunks(seconds: list[float]) -> list[np.ndarray]:
    return [np.zeros(int(s * SR), dtype=np.int16) for s in seconds]


def test_results_in_input_order_and_budget_respected():
    seconds = [3.0, 29.0, 0.5, 12.0, 29.0, 8.0, 1.0, 15.0]
    eng = EchoEngine()
    results, metrics = run_batches(eng, _chunks(seconds), budget_s=60)
    assert [int(r[0].text) for r in results] == [int(s * SR) for s in seconds]
    assert sum(m.n_chunks for m in metrics) == len(seconds)
    assert sum(m.audio_s for m in metrics) == pytest.approx(sum(seconds))
    assert all(m.device == "cpu" and m.model_s <= m.wall_s for m in metrics)


def test_out_of_memory_batches_are_split_and_nothing_is_dropped():
    seconds = [2.0] * 10
    eng = EchoEngine(max_items=3)
    results, metrics = run_batches(eng, _chunks(seconds), budget_s=1000)
    assert all(r and r[0].text == str(2 * SR) for r in results)
    assert max(eng.batches) <= 3 and sum(eng.batches) == 10
    assert metrics[0].oom_splits >= 2


def test_a_single_chunk_that_does_not_fit_is_an_error_not_a_silent_drop():
    with pytest.raises(EngineOutOfMemory):
        run_batches(EchoEngine(max_items=0), _chunks([1.0]), budget_s=10)


def test_the_next_batch_is_prepared_while_the_engine_runs():
    eng = EchoEngine(run_s=0.05, prepare_s=0.05)
    run_batches(eng, _chunks([1.0] * 4), budget_s=1.0)  # four batches of one chunk
    assert eng.prepare_threads and all(n.startswith("batch-reader") for n in eng.prepare_threads)
    runs = [e for e in eng.events if e[0] == "run"]
    preps = [e for e in eng.events if e[0] == "prepare"]
    # Batch k+1's preparation starts before batch k's run ends.
    overlapping = sum(1 for (_, rs, re_), (_, ps, _) in zip(runs, preps[1:], strict=False) if ps < re_)
    assert overlapping >= 2


class PickyEngine(EchoEngine):
    """Fails any batch holding a chunk of exactly ``bad_s`` seconds (a recording it cannot take): in
    its run (``fails_in="run"``), in its prepare (a failed pinned allocation, a chunk refused before it
    runs), or by returning one result too few for it (``"count"``, an engine bug)."""

    def __init__(self, bad_s: float, fails_in: str = "run", **kw):
        super().__init__(**kw)
        self.bad, self.fails_in = int(bad_s * SR), fails_in

    def _has_bad(self, batch) -> bool:
        return any(len(a) == self.bad for a in batch)

    def prepare(self, batch):
        if self.fails_in == "prepare" and self._has_bad(batch):
            raise ValueError("cannot prepare this chunk")
        return super().prepare(batch)

    def run(self, prepared):
        if self.fails_in == "run" and self._has_bad(prepared):
            raise ValueError("cannot handle this chunk\nsecond line of detail")
        out = super().run(prepared)
        return out[:-1] if self.fails_in == "count" and self._has_bad(prepared) else out


def test_a_chunk_the_engine_fails_on_fails_alone():
    seconds = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    failures: dict[int, str] = {}
    results, metrics = run_batches(PickyEngine(bad_s=5.0), _chunks(seconds), budget_s=1000, failures=failures)
    assert failures == {3: "ValueError: cannot handle this chunk"}
    assert [int(r[0].text) for i, r in enumerate(results) if i != 3] == [int(s * SR) for s in seconds if s != 5.0]
    assert results[3] == [] and sum(m.n_chunks for m in metrics) == len(seconds)


def test_without_a_failures_dict_an_engine_error_still_raises():
    with pytest.raises(ValueError):
        run_batches(PickyEngine(bad_s=1.0), _chunks([1.0, 2.0]), budget_s=1000)


def test_out_of_memory_on_a_single_chunk_is_that_chunks_failure():
    failures: dict[int, str] = {}
    results, _ = run_batches(EchoEngine(max_items=0), _chunks([1.0, 2.0]), budget_s=1000, failures=failures)
    assert sorted(failures) == [0, 1] and all("out of memory on a single chunk" in r for r in failures.values())


class StagedEngine(EchoEngine):
    """An engine that starts a batch and finishes it later (as the native Granite engine does):
    records the order of starts and finishes; out of memory at start above max_items; a chunk of
    ``bad_s`` seconds fails in the finish (host work), as a decoding error would."""

    def __init__(self, max_items: int | None = None, bad_s: float | None = None):
        super().__init__(max_items=max_items)
        self.bad = None if bad_s is None else int(bad_s * SR)
        self.order: list[tuple[str, int]] = []
        self.started = 0

    def start(self, prepared):
        if self.max_items is not None and len(prepared) > self.max_items:
            raise EngineOutOfMemory("CUDA out of memory (scripted)")
        k = self.started
        self.started += 1
        self.order.append(("start", k))

        def finish():
            self.order.append(("finish", k))
            if any(len(a) == self.bad for a in prepared):
                raise ValueError("cannot decode this chunk")
            return [[Segment(0.0, len(a) / SR, str(len(a)))] for a in prepared]

        return finish

    def run(self, prepared):
        return self.start(prepared)()


def test_the_next_batch_starts_before_the_one_before_it_finishes():
    seconds = [1.0, 2.0, 3.0, 4.0]
    eng = StagedEngine()
    results, metrics = run_batches(eng, _chunks(seconds), budget_s=4.5)  # batches of one or two chunks
    n = len(metrics)
    assert n >= 3
    assert eng.order == [("start", 0)] + [e for k in range(1, n) for e in (("start", k), ("finish", k - 1))] + [
        ("finish", n - 1)]
    assert [int(r[0].text) for r in results] == [int(s * SR) for s in seconds]
    assert [m.batch_index for m in metrics] == list(range(n))
    assert all(0 <= m.model_s <= m.wall_s for m in metrics)


def test_a_batch_that_runs_out_of_memory_at_its_start_is_halved_after_the_one_before_it_finishes():
    seconds = [2.0] * 6
    eng = StagedEngine(max_items=2)
    results, metrics = run_batches(eng, _chunks(seconds), budget_s=1000)  # one batch of six: halved twice
    assert all(r and r[0].text == str(2 * SR) for r in results)
    assert metrics[0].oom_splits >= 2 and sum(m.n_chunks for m in metrics) == 6
    starts = [k for what, k in eng.order if what == "start"]
    finishes = [k for what, k in eng.order if what == "finish"]
    assert sorted(starts) == sorted(finishes)  # every started piece was finished, none twice


def test_a_chunk_that_fails_in_the_finish_fails_alone_and_its_neighbours_are_kept():
    seconds = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    failures: dict[int, str] = {}
    results, metrics = run_batches(StagedEngine(bad_s=5.0), _chunks(seconds), budget_s=9.0, failures=failures)
    assert failures == {3: "ValueError: cannot decode this chunk"}
    assert [int(r[0].text) for i, r in enumerate(results) if i != 3] == [int(s * SR) for s in seconds if s != 5.0]
    assert sum(m.n_chunks for m in metrics) == len(seconds)
    with pytest.raises(ValueError, match="cannot decode"):
        run_batches(StagedEngine(bad_s=5.0), _chunks(seconds), budget_s=9.0)


def test_without_overlap_each_batch_finishes_before_the_next_starts():
    eng = StagedEngine()
    results, metrics = run_batches(eng, _chunks([1.0, 2.0, 3.0]), budget_s=2.5, overlap=False)
    assert eng.order == [e for k in range(len(metrics)) for e in (("start", k), ("finish", k))]
    assert [int(r[0].text) for r in results] == [int(s * SR) for s in (1.0, 2.0, 3.0)]


@pytest.mark.parametrize("fails_in", ["count", "prepare"])
@pytest.mark.parametrize("budget_s", [9.0, 1000.0])
def test_a_batch_that_cannot_be_prepared_or_miscounts_costs_only_the_chunk_behind_it(fails_in, budget_s):
    seconds = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    failures: dict[int, str] = {}
    engine = PickyEngine(bad_s=5.0, fails_in=fails_in)
    results, metrics = run_batches(engine, _chunks(seconds), budget_s=budget_s, failures=failures)
    assert list(failures) == [3]
    assert [int(r[0].text) for i, r in enumerate(results) if i != 3] == [int(s * SR) for s in seconds if s != 5.0]
    assert results[3] == [] and sum(m.n_chunks for m in metrics) == len(seconds)


class NotedEngine(StagedEngine):
    """A StagedEngine that checks, at each start and finish, that its chunks were named by the
    latest call of run_batches' ``before_batch`` (chunk i is i + 1 seconds long)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.notes: list[list[int]] = []
        self.unnamed: list[tuple[str, set[int]]] = []  # not raised: run_batches would take it for the batch's

    def _check(self, what: str, chunks: set[int]) -> None:
        if not self.notes or not chunks <= set(self.notes[-1]):
            self.unnamed.append((what, chunks))

    def start(self, prepared):
        chunks = {round(len(a) / SR) - 1 for a in prepared}
        self._check("start", chunks)
        finish = super().start(prepared)

        def checked():
            self._check("finish", chunks)
            return finish()

        return checked


@pytest.mark.parametrize("overlap", [True, False])
def test_before_batch_names_every_chunk_the_engine_holds_before_it_gets_it(overlap):
    """The worker writes its progress note from ``before_batch``: a process that dies while the engine
    holds a chunk must find that chunk in the last note, started or being finished, overlapped or not."""
    seconds = [float(i + 1) for i in range(6)]
    eng = NotedEngine()
    results, metrics = run_batches(eng, _chunks(seconds), budget_s=7.5, overlap=overlap,
                                   before_batch=eng.notes.append)
    assert eng.unnamed == []
    assert len(eng.notes) == len(metrics) >= 3  # once a batch, before its start
    assert [int(r[0].text) for r in results] == [int(s * SR) for s in seconds]
    batch_sizes = sorted(m.n_chunks for m in metrics)
    if overlap:  # the batch before it is still in the engine: up to two batches
        assert max(len(n) for n in eng.notes) > batch_sizes[-1]
        assert all(len(n) <= batch_sizes[-1] + batch_sizes[-2] for n in eng.notes)
    else:  # exactly the batch
        assert sorted(len(n) for n in eng.notes) == batch_sizes


def test_before_batch_names_each_half_of_a_failing_batch_too():
    """A batch halved (out of memory at its start, or a chunk that fails in the finish) hands each half
    to the engine again: each is named before it goes, with the batch still in flight beside it."""
    seconds = [float(i + 1) for i in range(6)]
    failures: dict[int, str] = {}
    eng = NotedEngine(max_items=2, bad_s=5.0)
    results, metrics = run_batches(eng, _chunks(seconds), budget_s=12.0, failures=failures,
                                   before_batch=eng.notes.append)
    assert eng.unnamed == []
    assert failures.keys() == {4}
    assert len(eng.notes) > len(metrics)  # the halves were named too
    assert [int(r[0].text) for i, r in enumerate(results) if i != 4] == [int(s * SR) for s in seconds if s != 5.0]


def test_an_error_in_before_batch_is_not_taken_for_the_batchs():
    """The note cannot be written (the store is gone): the job fails, its chunks are not failed one by one."""
    def gone(chunks):
        raise ConnectionError("store unreachable")

    failures: dict[int, str] = {}
    with pytest.raises(ConnectionError):
        run_batches(StagedEngine(), _chunks([1.0, 2.0]), budget_s=10, failures=failures, before_batch=gone)
    assert failures == {}


def test_after_batch_gets_each_batch_once_with_its_segments_while_the_next_is_on_the_device():
    seconds = [1.0, 2.0, 3.0, 4.0, 5.0]
    eng = StagedEngine()

    def after(idx, segments):
        eng.order.append(("after", tuple(idx)))
        assert [s[0].text for s in segments] == [str(int(seconds[i] * SR)) for i in idx]

    _, metrics = run_batches(eng, _chunks(seconds), budget_s=5.5, after_batch=after)  # batches of 1-2 chunks
    n = len(metrics)
    assert n >= 3
    handed = [idx for what, idx in eng.order if what == "after"]
    assert sorted(i for idx in handed for i in idx) == list(range(len(seconds)))  # each chunk once
    # Batch k is handed on after its finish and before batch k+1's: the host's work on k runs while the
    # device holds k+1 (started before k finished).
    kinds = [what if what != "after" else "after" for what, _ in eng.order]
    for k in range(n):
        at = eng.order.index(("finish", k))
        assert kinds[at + 1] == "after"
        if k + 1 < n:
            assert eng.order.index(("start", k + 1)) < at < eng.order.index(("finish", k + 1))


def test_after_batch_hands_on_a_failed_chunk_without_segments_and_its_reason_is_recorded_first():
    seconds = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    failures: dict[int, str] = {}
    seen: dict[int, tuple[list, bool]] = {}

    def after(idx, segments):
        seen.update((i, (s, i in failures)) for i, s in zip(idx, segments, strict=True))

    run_batches(StagedEngine(bad_s=5.0), _chunks(seconds), budget_s=9.0, failures=failures, after_batch=after)
    assert sorted(seen) == list(range(6))
    assert seen[3] == ([], True)
    assert all(segs and not failed for i, (segs, failed) in seen.items() if i != 3)
