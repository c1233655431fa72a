"""Alert lines for runs that failed or are late, and the timeouts that bound each task.

Both callbacks log one line that starts with ``CALLSCRIBE ALERT`` at ERROR level: route it
with whatever watches the logs, or add an Airflow notifier beside them in the DAG (see the
README, "Alerts").
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

log = logging.getLogger("callscribe.alerts")

# Seconds each task may run before Airflow stops it (``CALLSCRIBE_<TASK>_TIMEOUT_S``).
TASK_TIMEOUTS_S = {
    "discover": 1800,
    "chunk": 2 * 3600,
    "plan_jobs": 900,
    "transcribe": 6 * 3600,
    "load": 3600,
    "report": 900,
    "verify": 1800,
}


def task_timeout(task_id: str) -> timedelta:
    raw = os.environ.get(f"CALLSCRIBE_{task_id.upper()}_TIMEOUT_S")
    return timedelta(seconds=float(raw) if raw else TASK_TIMEOUTS_S[task_id])


def deadline_hours() -> float | None:
    """Hours after it is queued by which a run must have finished; None: no deadline."""
    raw = os.environ.get("CALLSCRIBE_DEADLINE_HOURS", "8").strip().lower()
    return None if raw in ("", "0", "off", "none") else float(raw)


def alert_line(what: str, dag_id: str | None, run_id: str | None, detail: str) -> str:
    return f"CALLSCRIBE ALERT {what}: dag {dag_id} run {run_id}: {detail}"


def run_failed(context) -> None:
    """DAG-level on_failure_callback: the run is red, with the reason Airflow gives."""
    dag_run = context.get("dag_run")
    reason = context.get("reason") or "a task failed or a recording of its days is not done"
    log.error(alert_line("run failed", getattr(dag_run, "dag_id", None), getattr(dag_run, "run_id", None), reason))


ENDED = ("success", "failed")


async def deadline_missed(**kwargs) -> None:
    """DeadlineAlert callback (runs in the triggerer): the run had not finished in time."""
    context = kwargs.get("context") or {}
    dag_run = context.get("dag_run") or {}
    get = dag_run.get if isinstance(dag_run, dict) else lambda k: getattr(dag_run, k, None)
    state = str(get("state") or "").rsplit(".", 1)[-1].lower()
    if state in ENDED:
        # Airflow drops a run's deadline only when the scheduler finds it succeeded: a failed run
        # (alerted by run_failed already) or one marked in the UI still fires it, hours later.
        log.info("run %s of %s ended %s before its deadline; not late", get("run_id"), get("dag_id"), state)
        return
    log.error(alert_line("run late", get("dag_id"), get("run_id"),
                         f"not finished {float(kwargs.get('hours') or 0):g} h after it was queued"))


def deadline_alert():
    """The DAG's DeadlineAlert: the run not finished N hours after it was queued (for the daily
    run: after its call day ended)."""
    hours = deadline_hours()
    if hours is None:
        return None
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        # A scheduled run is queued when its day ends; measuring from the queueing, not the
        # logical date, keeps a backfill of old days from being "late" the moment it starts.
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(hours=hours),
        callback=AsyncCallback(deadline_missed, kwargs={"hours": hours}),
        name="callscribe_run_late",
    )
