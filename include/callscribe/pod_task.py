"""The ``transcribe`` task of ``transcribe_calls_k8s``: the provider's KubernetesPodOperator, told
what a pod's end means for its job.

The provider judges a pod by its phase only. Two ends it cannot read:

- A pod that succeeded without this job's shard: a worker image whose command does something
  else, or, on a retry, a pod of an earlier plan of the run adopted by its labels (the operator
  reattaches to any unchecked pod of the same dag, task, run and map index, and does not compare
  its arguments). Local mode fails such a task (the worker's result file is missing) and Airflow
  retries it; here the task was green and the job's recordings were left unfinished with the
  load's generic "no shard". The task now looks for the shard the job manifest names, of the
  job's plan, and fails (a retry) without it.
- A pod the worker never spoke for: never scheduled (no free GPU, a quota), its image never
  pulled, evicted, OOM-killed as a whole container, past its active deadline, deleted by hand.
  The worker writes a failure note only when it fails on its own; without one the load told every
  recording "the worker was killed, timed out or never started", and which, and why, was only in
  one mapped try's task log. The task now writes what the cluster said as the job's failure note,
  which the load turns into the recordings' reason.

Each try starts from no note (an earlier try's cause must not stand for this one's), and a note the
worker wrote is never replaced by the pod's plainer one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.pod_manager import PodNotFoundException
from airflow.providers.common.compat.sdk import AirflowException
from kubernetes.client import models as k8s
from kubernetes.client.exceptions import ApiException

from callscribe.errors import describe, plain
from callscribe.job_notes import forget_cause, job_of, leave_cause
from callscribe.manifests import ShardInfo, parquet_meta
from callscribe.storage import Store, unavailable

log = logging.getLogger(__name__)
BASE_CONTAINER = "base"


def job_uri_of(arguments: list[str]) -> str:
    """The job manifest's URI from the worker's arguments (``--job URI``)."""
    return arguments[arguments.index("--job") + 1]


def shard_problem(store: Store, job_uri: str) -> str | None:
    """Why the job has no result of its own after its pod succeeded; None when its shard is there,
    written for this job's plan (what the load will take)."""
    job = job_of(store, job_uri)
    if not store.exists(job.shard_uri):
        return (f"the worker pod exited 0 without writing the job's shard ({job.shard_uri}): "
                "a worker image whose command does something else, or a pod of an earlier plan?")
    # The footer's facts only: the rows are the load's to decode, not the Airflow worker's that resumes
    # the task (a 200 h job's segments took over 100 MB of it in pandas, for one plan id).
    info = ShardInfo(**parquet_meta(store.get_bytes(job.shard_uri)))
    if info.plan_id != job.plan_id:
        return (f"the worker pod exited 0, but the shard at {job.shard_uri} is from an earlier plan "
                f"({info.plan_id}, the job's is {job.plan_id}): a pod of an earlier plan of this run, "
                "adopted by its labels?")
    return None


def _said(reason: str | None, message: str | None) -> str:
    return ": ".join(p.strip() for p in (reason, message) if p and p.strip())


def _last_line(text: str | None) -> str | None:
    """The last line that says something (a termination message, or a log's tail in its place); None
    when it is only white space."""
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else None


def api_said(exc: BaseException) -> str:
    """An error as a cause: for the Kubernetes API's, its status and the API server's own message
    (an ApiException's text is its status alone on the first line, then every response header
    and the raw body)."""
    if isinstance(exc, ApiException):
        message = None
        try:
            body = json.loads(exc.body) if exc.body else None
            message = body.get("message") if isinstance(body, dict) else None
        except (TypeError, ValueError):
            pass
        said = _said(f"{exc.status} {exc.reason or ''}".strip() if exc.status else exc.reason, message)
        return f"Kubernetes API: {plain(said)}" if said else describe(exc)
    return describe(exc)


def _not_found(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the pod is not there (not that the API could not be asked)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, PodNotFoundException) or (isinstance(exc, ApiException) and exc.status == 404):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def never_ran(pod: k8s.V1Pod | None) -> bool:
    """Whether the pod ended without ever running the worker: never scheduled (no free GPU, a quota)
    or its container never started: waiting, never run (restartPolicy Never: one that ran is terminated),
    for its image (ImagePullBackOff), its spec (a missing secret), or still ContainerCreating past the
    startup timeout (a volume never attached, a pull slower than it). The deployment's fault, not the job's calls': a
    pod the cluster ended while the worker ran (OOM-killed, evicted, past its deadline) may have
    been ended by a call, and an unknown end (the pod gone) is not taken for either."""
    if pod is None or pod.status is None:
        return False
    status = pod.status
    if any(c.type == "PodScheduled" and c.status != "True" for c in status.conditions or []):
        return True
    worker = [cs for cs in status.container_statuses or [] if cs.name == BASE_CONTAINER]
    return any(cs.state is not None and cs.state.waiting is not None and cs.state.terminated is None
               and not cs.restart_count and (cs.last_state is None or cs.last_state.terminated is None)
               for cs in worker)


# Exit statuses of the worker's own making (1: it failed, 2: its arguments; 126/127: the shell could not
# run its command); 128 + a signal's number is a kill. A container whose command could not be started
# at all ends with one of these reasons (and 128, say the runtimes).
_OWN_EXIT = range(1, 128)
_COULD_NOT_RUN = ("StartError", "ContainerCannotRun")


def exited_before_the_job(pod: k8s.V1Pod | None) -> bool:
    """Whether the pod's worker exited with a status of its own, not a kill's. Asked only where the
    worker left no failure note (leave_cause writes only then): a worker that read its job leaves
    one for any failure of it, so such a worker failed before the job (a module its image lacks, a
    setting it refuses, a command the container cannot run, the store out of reach): the deployment's
    fault. A kill (OOMKilled, a crash's signal, SIGTERM) may have been a call's doing."""
    if pod is None or pod.status is None:
        return False
    for cs in pod.status.container_statuses or []:
        t = cs.state.terminated if cs.name == BASE_CONTAINER and cs.state is not None else None
        if t is not None and (t.reason in _COULD_NOT_RUN or t.exit_code in _OWN_EXIT):
            return True
    return False


def pod_cause(pod: k8s.V1Pod | None, event: dict[str, Any], error: BaseException | None = None) -> str:
    """What the cluster said about a pod that ended without the worker's word: the trigger's message,
    the pod's phase and reason (Evicted, DeadlineExceeded), why it was not scheduled, and its worker
    container's state (OOMKilled and its exit code, ImagePullBackOff)."""
    name = pod.metadata.name if pod is not None and pod.metadata else event.get("name", "?")
    parts = [f"the worker pod {name} ended without the job's shard"]
    if event.get("message"):
        parts.append(f"{event.get('status')}: {str(event['message']).strip()}")
    if pod is None:
        # Not read back: gone only when the API said so; an API error (a 500, throttling past the
        # client's retries) leaves the pod where it was, and which it was is the cause.
        if error is None or _not_found(error):
            parts.append("the pod is gone (deleted by hand, or its node lost)")
        else:
            parts.append(f"its state could not be read ({api_said(error)})")
    elif pod.status is not None:
        status = pod.status
        said = _said(status.reason, status.message)
        parts.append(f"pod {status.phase}" + (f" ({said})" if said else ""))
        for cond in status.conditions or []:
            if cond.type == "PodScheduled" and cond.status != "True":
                parts.append("not scheduled" + (f" ({_said(cond.reason, cond.message)})"
                                                 if _said(cond.reason, cond.message) else ""))
        for cs in status.container_statuses or []:
            if cs.name != BASE_CONTAINER or cs.state is None:
                continue
            if cs.state.terminated is not None:
                t = cs.state.terminated
                # A message of white space only (an empty line written, a log tail of blank lines)
                # has no last line: the reason and exit code still say it.
                said = _said(t.reason, _last_line(t.message))
                parts.append(f"container {cs.name} exited {t.exit_code}" + (f" ({said})" if said else ""))
            elif cs.state.waiting is not None:
                w = cs.state.waiting
                parts.append(f"container {cs.name} waiting ({_said(w.reason, w.message)})")
    if error is not None and len(parts) < 3:  # nothing from the cluster beyond the name: the operator's error
        parts.append(api_said(error))
    return "; ".join(parts)


def _store() -> Store:
    from callscribe.storage import store

    return store()


class TranscribePodOperator(KubernetesPodOperator):
    """One job's GPU pod (callscribe.kubernetes builds its arguments), judged by the job's shard."""

    def execute(self, context):
        job_uri = job_uri_of(self.arguments)
        # Before the pod: a note an earlier try left must not stand for this try. The worker deletes
        # it too, but only once it runs; a pod that is never scheduled never does.
        forget_cause(_store(), job_uri)
        self._cause_left = False
        try:
            return super().execute(context)
        except Exception as exc:  # TaskDeferred, a BaseException, passes: the pod was created
            # No pod was made (the API server refused it: a quota, an admission webhook, a spec it
            # finds invalid; or it could not be reached): the earlier try's note is gone, and without
            # this the recordings were told the worker "was killed, timed out or never started".
            # With a pod (a terminal one found on reattach, judged here by trigger_reentry), its
            # own path has spoken, or it runs on and its worker will.
            if self.pod is None and not self._cause_left:
                self._leave(job_uri, f"the worker pod could not be created: {api_said(exc)}", deployment=True)
            raise

    def trigger_reentry(self, context, event: dict[str, Any]) -> Any:
        job_uri = job_uri_of(self.arguments)
        try:
            result = super().trigger_reentry(context, event)
        except Exception as exc:  # the pod failed (TaskDeferred, a BaseException, passes: the wait goes on)
            self._leave(job_uri, pod_cause(self.pod, event, exc),
                        deployment=never_ran(self.pod) or exited_before_the_job(self.pod))
            raise
        try:
            problem = shard_problem(_store(), job_uri)
        except Exception as exc:
            if not unavailable(exc):
                raise
            # The store is down: the pod's exit is believed, and the load (retried over outages) decides.
            log.warning("could not look for job %s's shard (%s); the load will", job_uri, describe(exc))
            return result
        if problem:
            self._leave(job_uri, problem)
            raise AirflowException(problem)
        return result

    def _leave(self, job_uri: str, cause: str, deployment: bool = False) -> None:
        self._cause_left = True
        log.error("job %s: %s", job_uri, cause)
        try:
            leave_cause(_store(), job_uri, cause, deployment)
        except Exception as exc:  # noqa: BLE001 - the task fails either way; the load's generic reason then
            log.warning("could not write job %s's failure note: %s", job_uri, describe(exc))
