"""A transcription job's failure note, written for the worker by whoever ran it.

The worker writes the note itself when it fails on a job it has read (``worker._report_failure``).
Where it could not (its pod never scheduled, killed from outside, its process failed before it
read the job), the task that ran it writes what it saw, which the load turns into the job's
calls' reason; ``deployment`` says the calls were never at fault, so their attempt is given back.
"""

from __future__ import annotations

from callscribe.manifests import JobFailure, JobManifest, failure_uri
from callscribe.storage import Store

CAUSE_MAX = 2000  # the load keeps 2,000 characters of a reason


def job_of(store: Store, job_uri: str) -> JobManifest:
    return JobManifest.model_validate_json(store.get_bytes(job_uri))


# The note each job is planned with (plan_jobs): every try of the job's task deletes it first
# (forget_cause), and the worker once it has read the job. One still there when the load looks is from a
# job no try of which reached the store (its credentials rotated, the store down for all its tries) or
# that never ran: none of its speech was heard, so its calls get their attempt back.
UNTRIED = ("no try of the transcribe task reached the object store (its credentials refused, or the store "
           "down, on every try) or the task never ran: the worker never read the job")


def plan_note(job: JobManifest) -> tuple[str, bytes]:
    """Where a job's planned note goes and what it says (:data:`UNTRIED`, the deployment's fault)."""
    note = JobFailure(job_id=job.job_id, run_id=job.run_id, error=UNTRIED, deployment=True)
    return failure_uri(job.shard_uri), note.model_dump_json().encode()


def forget_cause(store: Store, job_uri: str) -> None:
    """Delete the job's failure note before a try: what an earlier try left is not this one's cause."""
    store.delete(failure_uri(job_of(store, job_uri).shard_uri))


def leave_cause(store: Store, job_uri: str, cause: str, deployment: bool = False) -> bool:
    """Write ``cause`` as the job's failure note unless the worker left its own (it knows better);
    returns whether it was written. ``deployment``: the worker never reached the job (JobFailure)."""
    job = job_of(store, job_uri)
    note = failure_uri(job.shard_uri)
    if store.exists(note):
        return False
    failure = JobFailure(job_id=job.job_id, run_id=job.run_id, error=cause[:CAUSE_MAX], deployment=deployment)
    store.put_bytes(note, failure.model_dump_json().encode(), "application/json")
    return True
