"""Review of the worker's respawns, with the real store: the first death of a try is judged against
the note the try started from, as every later death is against the one before it."""

from __future__ import annotations

import signal
from datetime import date

import pytest

from callscribe import discovery
from callscribe.manifests import JobProgress, progress_uri
from tests.integration.helpers import run_pod
from tests.integration.test_worker_deaths import KILLING_ENGINE, _job, _pod

pytestmark = pytest.mark.integration


def test_a_try_whose_first_process_dies_in_the_models_load_is_not_respawned(stack, s3, pg, tmp_path):
    """An earlier try (its pod's respawns spent, or 0) left a note with chunks in flight; this try's pod
    has a GPU gone bad: its first process dies loading the model and leaves the note as it found it.
    That is a death with no chunk in the engine: no respawn (another load on the same GPU), and the
    cause says so, as it does for a respawned process that dies the same way."""
    run = "review-respawn-first-load-death"
    ids, jobs, job = _job(s3, pg, date(2029, 3, 3), run)
    killer = job.chunks[0].recording_id
    first = _pod(jobs[0], tmp_path, killer, respawns=0)  # the earlier try: dies in a batch
    assert first.returncode == -signal.SIGKILL, first.stdout[-3000:]
    before = JobProgress.model_validate_json(s3.get_bytes(progress_uri(job.shard_uri)))
    assert before.in_flight
    loads = tmp_path / "loads"
    wrapper = KILLING_ENGINE.replace("KILLERS", repr({killer})).replace("SIGNAL", "SIGKILL").replace(
        'engines._FACTORIES["whisper-tiny"] = lambda **kw: Killing()',
        f'engines._FACTORIES["whisper-tiny"] = lambda **kw: (open({str(loads)!r}, "a").write("x"), '
        'os.kill(os.getpid(), signal.SIGKILL), Killing())[-1]')
    out = run_pod(wrapper, jobs[0], tmp_path, env={"CALLSCRIBE_WORKER_RESPAWNS": "4"})
    assert out.returncode == 128 + signal.SIGKILL, out.stdout[-3000:]
    assert loads.read_text() == "x", out.stdout[-3000:]  # the first process only
    assert "no chunk in the engine" in (tmp_path / "err.txt").read_text()
    assert JobProgress.model_validate_json(s3.get_bytes(progress_uri(job.shard_uri))) == before
    discovery.release(pg, run)
