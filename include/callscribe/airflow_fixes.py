"""A fix for an Airflow bug that the transcription DAGs hit, applied where it bites.

Airflow 3.3.0 to 3.3.2 store a DeadlineAlert's interval as JSON (a serialised timedelta), but
clearing a run still reads it as a number of seconds when it moves the run's queued-at deadline
to the new queue time: every clear of a run whose ``DAGRUN_QUEUED_AT`` deadline is still ahead
(a run going, failed, or marked in the UI within ``CALLSCRIBE_DEADLINE_HOURS`` of being queued)
fails with a TypeError, an HTTP 500 in the UI, and so does a backfill that reprocesses such a
run (apache/airflow#70368, fix pending in #70370). That is exactly when an operator clears a red
run. The transcription DAGs set such a deadline (callscribe.alerts), so the recalculation is
replaced by one that decodes the interval first, on the affected versions only, by the Airflow
plugin in plugins/: in the API server (the UI's clears and backfills), and in a command line
that loads plugins (``AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False airflow tasks clear ...``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

AFFECTED = ("3.3.0", "3.3.1", "3.3.2")
_TARGET = "_recalculate_dagrun_queued_at_deadlines"


def deadline_interval(raw: Any) -> timedelta:
    """A stored DeadlineAlert interval as a timedelta: seconds (before 3.3) or serde's JSON
    envelope (3.3 on), a variable-backed interval resolved now."""
    if isinstance(raw, (int, float)):
        return timedelta(seconds=raw)
    from airflow.sdk.serde import deserialize

    value = deserialize(raw)
    if isinstance(value, timedelta):
        return value
    resolve = getattr(value, "resolve", None)  # a VariableInterval
    if callable(resolve):
        return resolve()
    raise TypeError(f"a deadline interval of type {type(value).__name__}")


def move_queued_at_deadlines(dagrun, new_queued_at: datetime, session) -> None:
    """Airflow's recalculation on a clear, with the interval decoded: each of the run's deadlines
    still to come that count from its queue time moves to the new queue time plus its interval
    (the caller commits)."""
    from airflow.models.deadline import Deadline, ReferenceModels
    from airflow.models.deadline_alert import DeadlineAlert
    from sqlalchemy import false, select

    queued_at = ReferenceModels.DagRunQueuedAtDeadline.__name__
    pending = session.execute(
        select(Deadline, DeadlineAlert)
        .join(DeadlineAlert, Deadline.deadline_alert_id == DeadlineAlert.id)
        .where(Deadline.dagrun_id == dagrun.id, Deadline.missed == false(),
               DeadlineAlert.reference[ReferenceModels.REFERENCE_TYPE_FIELD].as_string() == queued_at)
    ).all()
    for deadline, alert in pending:
        deadline.deadline_time = new_queued_at + deadline_interval(alert.interval)


def apply() -> bool:
    """Put the fix in place if this Airflow has the bug; returns whether it is in place."""
    try:
        import airflow
        from airflow.models import taskinstance
    except ImportError:  # the Task SDK alone, without Airflow's core: nothing here clears
        return False
    current = getattr(taskinstance, _TARGET, None)
    if current is move_queued_at_deadlines:
        return True
    if airflow.__version__ not in AFFECTED or current is None:
        return False
    setattr(taskinstance, _TARGET, move_queued_at_deadlines)
    log.info("callscribe: Airflow %s's clear of a run with a queued-at deadline fixed (apache/airflow#70368)",
             airflow.__version__)
    return True
