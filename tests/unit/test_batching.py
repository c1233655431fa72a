import random

import pytest

from callscribe.batching import plan_batches, plan_jobs


def test_every_item_once_longest_first():
    lengths = [3.0, 29.5, 12.0, 0.4, 29.5, 7.5, 18.0]
    batches = plan_batches(lengths, budget_s=60)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


@pytest.mark.parametrize("seed", range(5))
def test_padded_budget_respected(seed):
    rng = random.Random(seed)
    lengths = [rng.uniform(0.3, 30) for _ in range(500)]
    budget = 240.0
    for b in plan_batches(lengths, budget):
        padded = max(lengths[i] for i in b) * len(b)
        assert padded <= budget or len(b) == 1


def test_item_over_budget_gets_its_own_batch():
    assert plan_batches([100.0, 1.0, 1.0], budget_s=10) == [[0], [1, 2]]


def test_max_items():
    assert [len(b) for b in plan_batches([1.0] * 10, budget_s=100, max_items=4)] == [4, 4, 2]


def test_bad_budget():
    with pytest.raises(ValueError):
        plan_batches([1.0], 0)


def test_jobs_keep_recordings_whole_and_bounded():
    audio = [3600.0, 1800.0, 1200.0, 900.0, 600.0, 0.0, 7200.0]
    jobs = plan_jobs(audio, job_audio_s=3600)
    assert sorted(i for j in jobs for i in j) == list(range(len(audio)))
    for j in jobs:
        total = sum(audio[i] for i in j)
        assert total <= 3600 or len(j) == 1
    assert [6] in jobs  # longer than a job: alone
