"""Batch planning: sort chunks by length, fill batches up to a budget of audio seconds.

Sorting keeps padding small (the encoder sees batches of similar length); a budget in
seconds rather than a fixed count keeps memory use steady whatever the chunk lengths.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

# Padded seconds of audio per batch a worker gives its engine, unless its job says otherwise: a
# CPU's. A GPU pod's batches for a fast engine are larger (engines.GPU_BATCH_AUDIO_S).
DEFAULT_BATCH_AUDIO_S = 240.0


def plan_batches(lengths_s: Sequence[float], budget_s: float, max_items: int | None = None) -> list[list[int]]:
    """Group item indices, longest first, into batches whose padded size stays within budget.

    The padded size of a batch is its longest item times its count, which is what a
    padded accelerator batch costs. An item longer than the budget gets a batch alone.
    """
    if budget_s <= 0:
        raise ValueError("budget_s must be positive")
    order = sorted(range(len(lengths_s)), key=lambda i: (-lengths_s[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order:
        n = len(current) + 1
        longest_if = max(longest, lengths_s[i])
        full = max_items is not None and len(current) >= max_items
        if current and (longest_if * n > budget_s or full):
            batches.append(current)
            current, longest = [], 0.0
            longest_if = lengths_s[i]
        current.append(i)
        longest = longest_if
    if current:
        batches.append(current)
    return batches


def job_count(total_audio_s: float, n_recordings: int, slots: int, cap_s: float, min_s: float,
              max_jobs: int | None = None) -> int:
    """How many jobs a day's speech should become.

    Enough that no job holds more than ``cap_s`` (one pod's time budget), and spread over the
    ``slots`` GPUs of the pool while each job keeps at least ``min_s`` (a job pays a model load,
    which short jobs would not amortise). Past the pool's size, in whole rounds over it: five
    jobs on four GPUs would leave three idle through a second round that eight smaller jobs
    fill. Never more jobs than recordings, nor than Airflow may map (``max_jobs``): that limit
    wins over the cap.
    """
    if n_recordings <= 0:
        return 0
    slots = max(slots, 1)
    longest = math.floor(total_audio_s / min_s) if min_s > 0 else None  # jobs that still hold min_s each
    needed = math.ceil(total_audio_s / cap_s) if cap_s > 0 else 1
    if needed > slots:
        rounds = math.ceil(needed / slots) * slots
        needed = max(needed, min(rounds, longest)) if longest is not None else rounds
    spread = min(slots, longest) if longest is not None else slots
    k = max(1, needed, spread)
    k = min(k, n_recordings)
    return min(k, max_jobs) if max_jobs else k


def balance_jobs(recording_audio_s: Sequence[float], n_jobs: int) -> list[list[int]]:
    """Whole recordings (by index) into ``n_jobs`` jobs of nearly equal speech.

    Longest first, each to the job with the least speech so far: the busiest job ends at
    most one recording above the mean, so the pool's GPUs finish together.
    """
    if n_jobs <= 0:
        return []
    heap = [(0.0, j) for j in range(n_jobs)]
    jobs: list[list[int]] = [[] for _ in range(n_jobs)]
    for i in sorted(range(len(recording_audio_s)), key=lambda i: (-recording_audio_s[i], i)):
        total, j = heapq.heappop(heap)
        jobs[j].append(i)
        heapq.heappush(heap, (total + recording_audio_s[i], j))
    return [sorted(j) for j in jobs if j]


@dataclass(frozen=True)
class JobSizing:
    """How a day's speech becomes worker jobs (see :func:`job_count`)."""

    slots: int = 4  # GPUs in the pool (or local workers): a day spreads over them
    cap_s: float = 4 * 3600  # at most this much speech in one job
    min_s: float = 600  # a job is worth a model load only above this
    batch_s: float = DEFAULT_BATCH_AUDIO_S  # padded audio seconds per batch in the job's worker

    @classmethod
    def from_env(cls, default_cap_s: float | None = None, default_batch_s: float | None = None) -> JobSizing:
        """The settings (CALLSCRIBE_JOB_*, CALLSCRIBE_BATCH_AUDIO_S); ``default_cap_s`` and
        ``default_batch_s`` replace the defaults (GPU pods of a fast engine:
        engines.GPU_POD_JOB_AUDIO_S and GPU_BATCH_AUDIO_S), never a value the environment sets."""
        d = cls()
        env = os.environ.get
        return cls(slots=int(env("CALLSCRIBE_JOB_SLOTS", d.slots)),
                   cap_s=float(env("CALLSCRIBE_JOB_AUDIO_S", default_cap_s or d.cap_s)),
                   min_s=float(env("CALLSCRIBE_JOB_MIN_AUDIO_S", d.min_s)),
                   batch_s=float(env("CALLSCRIBE_BATCH_AUDIO_S", default_batch_s or d.batch_s)))
