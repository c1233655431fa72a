"""benchmarks.worker_host on a tiny job: it runs the worker's own path and its figures add up."""

from benchmarks.worker_host import measure


def test_the_host_benchmark_measures_a_whole_job():
    report = measure(recordings=3, chunks_per_recording=2, rtfx=4000.0, runs=1)
    m = report["median"]
    assert report["chunks"] == 6 and report["audio_s"] == 6 * 28.0
    assert m["device_busy_s"] == 6 * 28.0 / 4000.0
    assert 0.0 <= m["tail_s"] <= m["wall_s"] and m["wall_s"] >= m["device_busy_s"]
