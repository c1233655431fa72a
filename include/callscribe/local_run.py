"""One day of the transcribe_calls DAG run in this process (``dag.test()``).

Used by ``callscribe run``, ``make demo`` and the tests: the same DAG file the scheduler
parses, run without a scheduler. Apart from the command line because the demo needs it and
the command line imports the demo (one direction only).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

from callscribe.config import day_zone


def run_day(day: date, conf: dict | None = None, logical_date: datetime | None = None):
    """Run the DAG for one day in-process (dag.test); returns the DagRun.

    With a ``logical_date`` other than the day's midnight, the day goes in the ``date``
    Param, as when someone triggers a run for a day by hand.
    """
    dag = get_dag()
    conf = dict(conf or {})
    if logical_date is None:  # the day's start where its folder is named, as the schedule has it
        logical_date = datetime(day.year, day.month, day.day, tzinfo=day_zone()).astimezone(UTC)
    else:
        conf["date"] = day.isoformat()
        if logical_date.tzinfo is None:
            logical_date = logical_date.replace(tzinfo=UTC)
    if dag.start_date and logical_date < dag.start_date:
        # Airflow would create the run with no tasks at all and call it a success.
        raise ValueError(f"{day} is before the DAG's start date ({dag.start_date:%Y-%m-%d}): "
                         "set CALLSCRIBE_START_DATE earlier")
    # dag.test() in Airflow 3.3 cannot finish a run of a DAG with a deadline (it reads the
    # alert back as if the DAG had been serialised by the scheduler); the scheduler and the
    # triggerer handle it in a deployment, where it matters.
    dag.deadline = None
    return dag.test(logical_date=logical_date, run_conf=conf)


def get_dag():
    from airflow.dag_processing.dagbag import DagBag

    folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", str(Path.cwd() / "dags"))
    bag = DagBag(dag_folder=folder)
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag("transcribe_calls")
