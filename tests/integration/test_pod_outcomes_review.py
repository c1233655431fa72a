"""Ends of a worker pod the transcribe task of `transcribe_calls_k8s` misread (found in a review of the
task that judges a pod by its job's shard): the real operator, the test session's real object store and
database, a stand-in for the Kubernetes API only (the helpers of test_pod_outcomes)."""

from __future__ import annotations

import json
import tracemalloc
from datetime import date
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowException
from kubernetes.client import models as k8s
from kubernetes.client.exceptions import ApiException

from callscribe import discovery, pod_task
from callscribe.manifests import (
    CONFIDENCE,
    SEGMENT_COLUMNS,
    WORD_STARTS,
    JobFailure,
    ShardInfo,
    failure_uri,
    to_parquet,
)
from tests.integration.test_pod_outcomes import _api, _job, _loaded_reasons, _operator, _pod, _resume

pytestmark = pytest.mark.integration


def _context(run: str):
    ti = mock.MagicMock(map_index=0, try_number=2, dag_id="transcribe_calls_k8s", task_id="transcribe")
    return {"ti": ti, "run_id": run, "dag": mock.MagicMock(parent_dag=None), "params": {}}


def test_a_pod_the_cluster_refuses_to_create_leaves_the_refusal_as_the_cause(stack, s3, pg):
    """The API server refuses the pod itself (a ResourceQuota on GPUs or pods, an admission webhook, a
    spec it finds invalid): the try deleted the earlier try's note and raised before any pod existed,
    and the recordings got 'no shard (the worker was killed, timed out or never started)'. The cause
    is the cluster's refusal, which says what to fix."""
    run = "review2-pod-refused"
    job_uri, job, ids = _job(s3, pg, date(2041, 7, 1), run)
    s3.put_bytes(failure_uri(job.shard_uri), JobFailure(job_id=job.job_id, run_id=run, error="an earlier try's cause")
                 .model_dump_json().encode(), "application/json")
    op = _operator(job_uri)
    api = _api(_pod("Pending"))
    body = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": 'pods "callscribe-worker-abcd1234" is forbidden: exceeded quota: gpu, requested: '
                       "requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=4, limited: requests.nvidia.com/gpu=4"}
    refusal = ApiException(status=403, reason="Forbidden")
    refusal.body = json.dumps(body)
    api["client"].create_namespaced_pod.side_effect = refusal
    op.__dict__.update(api)
    with pytest.raises(ApiException):
        op.execute(_context(run))
    reasons = _loaded_reasons(s3, pg, job_uri, run, ids)
    assert all("exceeded quota" in r and "earlier try" not in r for r in reasons), reasons
    discovery.release(pg, run)


def test_an_api_error_at_resume_is_not_told_as_a_pod_that_is_gone(stack, s3, pg):
    """The trigger saw the pod fail; reading it again at resume fails on the API server (a 500, a
    429 past the client's retries). The pod is there: the note must not say it was deleted by hand or
    lost with its node, but that its state could not be read, and why."""
    run = "review2-pod-api-500"
    job_uri, job, ids = _job(s3, pg, date(2041, 7, 2), run)
    pod = _pod("Failed", reason="Evicted", message="The node was low on resource: memory.")
    op = _operator(job_uri)
    api = _api(pod)
    api["hook"].get_pod.side_effect = ApiException(status=500, reason="Internal Server Error")
    op.__dict__.update(api)
    with pytest.raises(ApiException):
        op.trigger_reentry(_context(run), {"name": pod.metadata.name, "namespace": "callscribe", "status": "failed",
                                           "message": "pod failed"})
    reasons = _loaded_reasons(s3, pg, job_uri, run, ids)
    assert all("gone" not in r and "500" in r for r in reasons), reasons
    discovery.release(pg, run)


def test_a_blank_termination_message_still_leaves_the_pods_cause(stack, s3, pg):
    """A container whose termination message is only white space (an empty line written to
    /dev/termination-log, a log tail of blank lines): the cause is still written, not an IndexError
    in its place."""
    run = "review2-pod-blank-message"
    job_uri, job, ids = _job(s3, pg, date(2041, 7, 3), run)
    pod = _pod("Failed", terminated=k8s.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled", message="\n"))
    with pytest.raises(AirflowException):
        _resume(job_uri, pod, {"status": "failed", "message": "Container state failed"})
    reasons = _loaded_reasons(s3, pg, job_uri, run, ids)
    assert all("OOMKilled" in r for r in reasons), reasons
    discovery.release(pg, run)


def test_the_shard_check_reads_the_shards_facts_not_its_rows(stack, s3, pg):
    """After a pod succeeds the task only needs the shard's plan id, in its key-value metadata; it decoded
    every row into pandas on the Airflow worker (a 200 h job's shard: about 150,000 segments, some
    130 MB of Python objects, per resumed task). Here 40,000 segments: the check's allocations stay
    near the shard's own bytes."""
    run = "review2-pod-shard-cost"
    job_uri, job, ids = _job(s3, pg, date(2041, 7, 4), run)
    n = 40_000
    rng = np.random.default_rng(7)
    words = np.array(["hello", "account", "balance", "thank", "you", "please", "transfer", "card"])
    df = pd.DataFrame({
        "recording_id": np.repeat([r.recording_id for r in job.recordings], n // 2), "channel": 0,
        "seq": np.arange(n) % (n // 2), "speaker": "agent",
        "start_s": np.arange(n) * 5.0, "end_s": np.arange(n) * 5.0 + 4,
        "text": [" ".join(rng.choice(words, 12)) for _ in range(n)],
        WORD_STARTS: [np.linspace(0, 4, 12).tolist() for _ in range(n)], CONFIDENCE: rng.random(n)},
        columns=[*SEGMENT_COLUMNS, WORD_STARTS, CONFIDENCE])
    info = ShardInfo(job_id=job.job_id, run_id=run, engine="whisper-tiny", recordings=job.recordings, batches=[],
                     plan_id=job.plan_id)
    data = to_parquet(df, info)
    del df
    s3.put_bytes(job.shard_uri, data)
    tracemalloc.start()
    try:
        assert pod_task.shard_problem(s3, job_uri) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The shard's bytes as fetched, and little else (decoded, the rows took some five times that here).
    assert peak < len(data) + 1_500_000, (peak, len(data))
    discovery.release(pg, run)
