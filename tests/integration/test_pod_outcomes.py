"""How a worker pod's end reaches the run, with the provider's real operator and a stand-in for the
Kubernetes API only: the transcribe task of `transcribe_calls_k8s` resumed from its trigger's event
(``trigger_reentry``), against the test session's real object store and database, then the real load.

A cluster ends pods in ways the worker never sees: never scheduled (no free H100, a quota), an image
that cannot be pulled, evicted, OOM-killed as a whole container, past its active deadline, or a pod
that says it succeeded without the job's shard (another plan's pod adopted on a retry, a wrong
image). Each must fail the task (so it is retried) and leave a cause the load gives the recordings.
"""

from __future__ import annotations

from datetime import date
from unittest import mock

import pandas as pd
import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from callscribe import discovery, loading
from callscribe.config import run_area
from callscribe.kubernetes import KubeSettings, transcribe_pod_operator
from callscribe.manifests import (
    SEGMENT_COLUMNS,
    JobFailure,
    JobManifest,
    RecordingEntry,
    ShardInfo,
    failure_uri,
    to_parquet,
)
from tests.integration.helpers import chunked_calls

pytestmark = pytest.mark.integration


def _job(s3, pg, day: date, run: str, plan_id: str = "plan-b") -> tuple[str, JobManifest, list[int]]:
    """Two calls chunked by ``run`` and one job of them, as plan_jobs leaves it."""
    ids = chunked_calls(pg, day, run, 2, name=run)
    job = JobManifest(job_id="job-00000", run_id=run, engine="whisper-tiny", batch_audio_s=240, plan_id=plan_id,
                      shard_uri=s3.uri(f"{run_area(run)}shards/job-00000.parquet"),
                      recordings=[RecordingEntry(recording_id=i, n_channels=1) for i in ids], chunks=[])
    uri = s3.uri(f"{run_area(run)}jobs/job-00000.json")
    s3.put_bytes(uri, job.model_dump_json().encode(), "application/json")
    return uri, job, ids


def _shard(s3, job: JobManifest, plan_id: str | None) -> None:
    rows = [(r.recording_id, 0, 0, "agent", 0.0, 1.0, "hello there") for r in job.recordings]
    info = ShardInfo(job_id=job.job_id, run_id=job.run_id, engine="whisper-tiny", recordings=job.recordings,
                     batches=[], plan_id=plan_id)
    s3.put_bytes(job.shard_uri, to_parquet(pd.DataFrame(rows, columns=SEGMENT_COLUMNS), info))


def _pod(phase: str, *, reason: str | None = None, message: str | None = None, terminated=None,
         waiting=None, scheduled: bool = True) -> k8s.V1Pod:
    state = k8s.V1ContainerState(terminated=terminated, waiting=waiting)
    statuses = None if terminated is None and waiting is None else [
        k8s.V1ContainerStatus(name="base", image="img", image_id="", ready=False, restart_count=0, state=state)]
    conditions = [k8s.V1PodCondition(type="PodScheduled", status="True" if scheduled else "False",
                                     reason=None if scheduled else "Unschedulable",
                                     message=None if scheduled else "0/4 nodes are available: 4 Insufficient "
                                                                    "nvidia.com/gpu.")]
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="callscribe-worker-abcd1234", namespace="callscribe",
                                               labels={"app.kubernetes.io/name": "callscribe-worker"}),
                     spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", image="img")]),
                     status=k8s.V1PodStatus(phase=phase, reason=reason, message=message, conditions=conditions,
                                            container_statuses=statuses))


def _operator(job_uri: str):
    """One mapped transcribe task as the DAG builds it: its partial's class and arguments, one job."""
    partial = transcribe_pod_operator(KubeSettings())
    partial._expand_called = True  # built by hand here, not expanded: no "never mapped" warning
    kwargs = {k: v for k, v in partial.kwargs.items() if k not in ("dag", "task_group")}
    return partial.operator_class(arguments=["--job", job_uri], **kwargs)


def _api(pod: k8s.V1Pod):
    """A stand-in for the Kubernetes API (the client and the hook's calls), answering with ``pod``."""
    api = mock.MagicMock()
    api.api_client = ApiClient()  # the pod is serialised for real
    api.read_namespaced_pod.return_value = pod
    api.read_namespaced_pod_log.return_value = iter([])
    api.list_namespaced_event.return_value = k8s.CoreV1EventList(items=[])
    api.create_namespaced_pod.return_value = pod
    api.list_namespaced_pod.return_value = k8s.V1PodList(items=[])
    hook = mock.MagicMock()
    hook.get_pod.return_value = pod
    hook.is_in_cluster = False
    return {"client": api, "hook": hook}  # the operator's cached properties: no cluster, no kube config


def _resume(job_uri: str, pod: k8s.V1Pod, event: dict):
    """The transcribe task resumed from its trigger's event, the Kubernetes API answering with ``pod``."""
    op = _operator(job_uri)
    op.__dict__.update(_api(pod))
    context = {"ti": mock.MagicMock(), "run_id": "r", "dag": mock.MagicMock(), "params": {}}
    return op, op.trigger_reentry(context, {"name": pod.metadata.name, "namespace": "callscribe", **event})


def _attempts(pg, ids: list[int]) -> set[int]:
    with pg.connect() as c:
        return set(c.execute(sa.text("SELECT attempts FROM recordings WHERE id = ANY(:ids)"), {"ids": ids}).scalars())


def _reasons(pg, ids: list[int]) -> dict[int, tuple[str, str | None]]:
    with pg.connect() as c:
        return {r.id: (r.status, r.last_error) for r in c.execute(sa.text(
            "SELECT id, status, last_error FROM recordings WHERE id = ANY(:ids)"), {"ids": ids})}


def _loaded_reasons(s3, pg, job_uri: str, run: str, ids: list[int]) -> set[str]:
    loading.load_jobs(s3, pg, [job_uri], run)
    rows = _reasons(pg, ids)
    assert {status for status, _ in rows.values()} == {"chunked"}, rows  # claimable again: a retry, the next run
    return {reason for _, reason in rows.values()}


def test_a_pod_that_succeeds_without_its_jobs_shard_fails_the_task(stack, s3, pg):
    """The container exits 0 and no shard of this job's plan is at the job's place (a pod of an earlier
    plan adopted on a retry by its labels, a worker image whose command does something else). Local
    mode fails such a task (the worker's result file is missing) and retries it; a pod's task was green,
    and the load then told the recordings the worker 'was killed, timed out or never started'."""
    run = "review2-pod-exit-0"
    job_uri, job, ids = _job(s3, pg, date(2041, 5, 1), run)
    succeeded = _pod("Succeeded", terminated=k8s.V1ContainerStateTerminated(exit_code=0, reason="Completed"))
    with pytest.raises(AirflowException, match="exited 0 without"):
        _resume(job_uri, succeeded, {"status": "success"})
    assert any("exited 0 without" in r for r in _loaded_reasons(s3, pg, job_uri, run, ids))

    _shard(s3, job, "plan-a")  # an earlier plan's shard at the same place: not this job's result
    with pytest.raises(AirflowException, match="earlier plan"):
        _resume(job_uri, succeeded, {"status": "success"})

    _shard(s3, job, job.plan_id)  # this plan's: the task is green and the load takes it
    _resume(job_uri, succeeded, {"status": "success"})
    assert loading.load_jobs(s3, pg, [job_uri], run).recordings == 2
    discovery.release(pg, run)


@pytest.mark.parametrize("case", ["unschedulable", "image", "oom", "evicted", "deadline"])
def test_a_pod_the_worker_never_spoke_for_leaves_the_clusters_cause(stack, s3, pg, case):
    """The worker writes a failure note when it fails on its own; a pod that never ran it, or that the
    cluster ended (the whole container OOM-killed, evicted, past its active deadline), leaves none,
    and every recording of the job got 'no shard (the worker was killed, timed out or never started)':
    which of those, and why, only in one mapped try's task log. The task now writes what the cluster
    said as the job's cause."""
    day = {"unschedulable": 2, "image": 3, "oom": 4, "evicted": 5, "deadline": 6}[case]
    run = f"review2-pod-{case}"
    job_uri, job, ids = _job(s3, pg, date(2041, 5, day), run)
    if case == "unschedulable":
        pod = _pod("Pending", scheduled=False)
        event = {"status": "timeout", "message": "Pod took too long to be scheduled on the cluster, giving up. "
                                                 "More than 1800s. Check the pod events in kubernetes."}
        wanted = "too long to be scheduled"
    elif case == "image":
        pod = _pod("Pending", waiting=k8s.V1ContainerStateWaiting(
            reason="ImagePullBackOff", message='Back-off pulling image "callscribe/worker-gpu:0.1.0"'))
        event = {"status": "error", "message": "Pod failed before containers started"}
        wanted = "ImagePullBackOff"
    elif case == "oom":
        pod = _pod("Failed", terminated=k8s.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled"))
        event = {"status": "failed", "message": "Container state failed"}
        wanted = "OOMKilled"
    elif case == "evicted":
        pod = _pod("Failed", reason="Evicted", message="The node was low on resource: memory.")
        event = {"status": "failed", "message": "pod failed"}
        wanted = "Evicted"
    else:
        pod = _pod("Failed", reason="DeadlineExceeded",
                   message="Pod was active on the node longer than the specified deadline")
        event = {"status": "failed", "message": "pod failed"}
        wanted = "DeadlineExceeded"
    with pytest.raises(AirflowException):
        _resume(job_uri, pod, event)
    reasons = _loaded_reasons(s3, pg, job_uri, run, ids)
    assert all(wanted in r for r in reasons), reasons
    # A pod that never ran the worker (no GPU free, its image not pulled) is the deployment's fault:
    # the calls get their attempt back (nights of it left them all `failed` for good). A pod the
    # cluster ended while the worker ran may have been ended by a call (its memory, its length).
    assert _attempts(pg, ids) == ({0} if case in ("unschedulable", "image") else {1}), case
    discovery.release(pg, run)


def test_the_workers_own_cause_is_kept(stack, s3, pg):
    """A worker that failed on its own wrote its cause (the engine's error): the task does not put the
    pod's plainer one over it."""
    run = "review2-pod-own-cause"
    job_uri, job, ids = _job(s3, pg, date(2041, 5, 7), run)
    note = JobFailure(job_id=job.job_id, run_id=run, error="CUDA error: an illegal memory access was encountered")
    s3.put_bytes(failure_uri(job.shard_uri), note.model_dump_json().encode(), "application/json")
    pod = _pod("Failed", terminated=k8s.V1ContainerStateTerminated(exit_code=1, reason="Error",
                                                                   message="CUDA error: an illegal memory access"))
    with pytest.raises(AirflowException):
        _resume(job_uri, pod, {"status": "failed", "message": "Container state failed"})
    assert all("CUDA error" in r for r in _loaded_reasons(s3, pg, job_uri, run, ids))
    discovery.release(pg, run)


def test_a_new_try_does_not_inherit_the_last_tries_cause(stack, s3, pg):
    """Each try of the task starts from no note: a pod that never starts on the retry must not leave the
    first try's cause standing as if it were this one's."""
    run = "review2-pod-fresh-try"
    job_uri, job, ids = _job(s3, pg, date(2041, 5, 8), run)
    note = JobFailure(job_id=job.job_id, run_id=run, error="an earlier try's cause")
    s3.put_bytes(failure_uri(job.shard_uri), note.model_dump_json().encode(), "application/json")
    op = _operator(job_uri)
    op.__dict__.update(_api(_pod("Pending", scheduled=False)))
    ti = mock.MagicMock(map_index=0, try_number=2, dag_id="transcribe_calls_k8s", task_id="transcribe")
    context = {"ti": ti, "run_id": run, "dag": mock.MagicMock(parent_dag=None), "params": {}}
    with pytest.raises(TaskDeferred):  # the pod created, the task hands over to the triggerer
        op.execute(context)
    assert not s3.exists(failure_uri(job.shard_uri))
    discovery.release(pg, run)


def test_a_pod_that_never_ran_gives_back_the_attempt_of_a_transcript_owed_again(stack, s3, pg):
    """A transcribed call a metadata fix owes a new transcript (a mono call's speakers renamed:
    redo_since) is claimed while `done`, with attempts anew, and counts one a run. A pod that never
    ran its job (no free GPU, its image not pulled) is the deployment's fault for it as for a call
    never transcribed: its attempt is given back. Spent, three such nights left the fix owed for good
    (the claim takes a `done` call's redo only under max_attempts) with the old speakers' transcript."""
    run = "review4-pod-redo-never-ran"
    job_uri, job, ids = _job(s3, pg, date(2099, 5, 9), run)
    with pg.begin() as c:  # as the claim and chunking leave a redo: `done`, its old transcript kept
        c.execute(sa.text("UPDATE recordings SET status = 'done', redo_since = now(), loaded_run_id = NULL, "
                          "loads = 1 WHERE id = ANY(:ids)"), {"ids": ids})
    with pytest.raises(AirflowException):
        _resume(job_uri, _pod("Pending", scheduled=False),
                {"status": "timeout", "message": "Pod took too long to be scheduled on the cluster, giving up."})
    assert loading.load_jobs(s3, pg, [job_uri], run).recordings == 0
    assert _attempts(pg, ids) == {0}
    assert loading.load_jobs(s3, pg, [job_uri], run).recordings == 0  # the load's retry: given back once
    assert _attempts(pg, ids) == {0}
    with pg.connect() as c:
        rows = c.execute(sa.text("SELECT status, redo_since FROM recordings WHERE id = ANY(:ids)"),
                         {"ids": ids}).all()
    assert all(r.status == "done" and r.redo_since is not None for r in rows), rows  # still owed, still shown
    discovery.release(pg, run)
