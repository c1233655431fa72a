import random

import pytest

from callscribe.batching import balance_jobs, job_count, plan_batches


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


def test_jobs_keep_recordings_whole_and_balanced():
    audio = [3600.0, 1800.0, 1200.0, 900.0, 600.0, 0.0, 7200.0, 300.0]
    jobs = balance_jobs(audio, 3)
    assert sorted(i for j in jobs for i in j) == list(range(len(audio)))  # each once, whole
    totals = sorted(sum(audio[i] for i in j) for j in jobs)
    assert len(jobs) == 3 and totals[-1] == 7200.0  # the longest recording alone sets the max
    assert totals[0] >= sum(audio) / 3 - max(audio)


def test_balanced_jobs_differ_by_at_most_one_recording():
    audio = [float(x) for x in range(1, 101)]
    totals = [sum(audio[i] for i in j) for j in balance_jobs(audio, 7)]
    assert max(totals) - min(totals) <= max(audio)


def test_job_count_spreads_over_the_pool_within_the_cap_and_the_map_limit():
    hour = 3600.0
    assert job_count(0.5 * hour, 10, slots=4, cap_s=4 * hour, min_s=600) == 3  # 30 min: 3 jobs of 10 min
    assert job_count(10 * hour, 500, slots=4, cap_s=4 * hour, min_s=600) == 4  # the pool's four GPUs
    assert job_count(100 * hour, 5000, slots=4, cap_s=4 * hour, min_s=600) == 28  # the cap, in whole rounds
    assert job_count(100 * hour, 5000, slots=4, cap_s=4 * hour, min_s=600, max_jobs=16) == 16
    assert job_count(100 * hour, 3, slots=4, cap_s=4 * hour, min_s=600) == 3  # whole recordings
    assert job_count(60.0, 2, slots=4, cap_s=4 * hour, min_s=600) == 1
    assert job_count(0.0, 0, slots=4, cap_s=4 * hour, min_s=600) == 0


def test_a_default_cap_replaces_the_four_hours_but_never_the_setting(monkeypatch):
    """The pipeline passes a larger default for a fast engine's GPU pods (test_kubernetes): 200 h makes a
    day of 1,000 h of speech 8 jobs (two rounds over four GPUs) instead of 252."""
    from callscribe.batching import JobSizing

    monkeypatch.delenv("CALLSCRIBE_JOB_AUDIO_S", raising=False)
    assert JobSizing.from_env().cap_s == 4 * 3600
    assert JobSizing.from_env(720_000.0).cap_s == 720_000.0
    day = 1000 * 3600.0  # 10,000 six-minute stereo calls, half speech: 1,000 h to transcribe
    big, local = JobSizing.from_env(720_000.0), JobSizing.from_env()
    assert job_count(day, 10_000, big.slots, big.cap_s, big.min_s) == 8
    assert job_count(day, 10_000, local.slots, local.cap_s, local.min_s) == 252
    monkeypatch.setenv("CALLSCRIBE_JOB_AUDIO_S", "7200")
    assert JobSizing.from_env(720_000.0).cap_s == JobSizing.from_env().cap_s == 7200


def test_past_the_pools_size_jobs_come_in_whole_rounds_over_it():
    """Five jobs on four GPUs take two rounds, the second with three GPUs idle: eight smaller jobs take
    the same two rounds with every GPU busy, and the day ends about a third sooner."""
    hour = 3600.0
    assert job_count(1000 * hour, 10_000, slots=4, cap_s=200 * hour, min_s=600) == 8  # not 5
    assert job_count(801 * hour, 10_000, slots=4, cap_s=200 * hour, min_s=600) == 8
    assert job_count(800 * hour, 10_000, slots=4, cap_s=200 * hour, min_s=600) == 4  # exactly one full round
    assert job_count(1000 * hour, 6, slots=4, cap_s=200 * hour, min_s=600) == 6  # whole recordings still bound it
    assert job_count(1000 * hour, 10_000, slots=4, cap_s=200 * hour, min_s=600, max_jobs=6) == 6  # and the map limit
    assert job_count(5000.0, 100, slots=4, cap_s=1000.0, min_s=700) == 7  # and each job's minimum (not 8)
    audio = [hour] * 1000
    totals = [sum(audio[i] for i in j) for j in balance_jobs(audio, 8)]
    assert max(totals) <= 200 * hour and max(totals) - min(totals) <= hour
