"""Batch planning: sort chunks by length, fill batches up to a budget of audio seconds.

Sorting keeps padding small (the encoder sees batches of similar length); a budget in
seconds rather than a fixed count keeps memory use steady whatever the chunk lengths.
"""

from __future__ import annotations

from collections.abc import Sequence


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


def plan_jobs(recording_audio_s: Sequence[float], job_audio_s: float) -> list[list[int]]:
    """Group whole recordings (by index) into jobs of at most job_audio_s of speech each.

    Recordings stay whole so a shard replaces complete transcripts; first-fit over the
    recordings sorted longest first keeps jobs balanced.
    """
    order = sorted(range(len(recording_audio_s)), key=lambda i: (-recording_audio_s[i], i))
    jobs: list[list[int]] = []
    totals: list[float] = []
    for i in order:
        d = recording_audio_s[i]
        for j, t in enumerate(totals):
            if t + d <= job_audio_s:
                jobs[j].append(i)
                totals[j] += d
                break
        else:
            jobs.append([i])
            totals.append(d)
    return [sorted(j) for j in jobs]
