"""callscribe_maintenance: keep the pipeline's work area ``_callscribe/`` from growing for ever,
and the months of ``segments`` made before their loads.

Once a day, delete the intermediates (speech packs, chunk and job manifests,
transcript shards) older than ``retention_days`` that no live run of ``transcribe_calls``
holds. Transcripts in Postgres are not touched. A task of a transcription run cleared after
its intermediates are gone fails with the missing file named; clear the whole run instead.
A bucket lifecycle rule on the ``_callscribe/`` prefix is the alternative (README).

``keep_erasure_notes`` keeps erasures and their notes in the bucket in step: it re-applies an
erasure a database restore undid (the runbook's ``callscribe erase --reapply``, for an operator who
skipped it), writes the note of an erasure that has none (the store refused it), and finishes the
clean-up of a recent erasure whose speech packs the store kept.

``make_months`` makes the current and next month's partitions of ``segments``, so the first
load of a month needs no table change (which waits for analysts' long queries), and the months
whose rows wait in ``segments_default`` (a load's making of them was held off).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from callscribe.alerts import run_failed
from callscribe.config import DEFAULT_RETENTION_DAYS, MIN_RETENTION_DAYS

START_DATE = datetime(2020, 1, 1, tzinfo=UTC)


@dag(
    dag_id="callscribe_maintenance",
    description="Delete the pipeline's intermediates older than the retention time",
    schedule=CronDataIntervalTimetable("30 3 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    # A sweep failing day after day lets the work area grow unseen: a red run alerts too.
    on_failure_callback=run_failed,
    default_args={"owner": "callscribe", "retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["callscribe", "maintenance"],
    params={
        "retention_days": Param(DEFAULT_RETENTION_DAYS, type="number", minimum=MIN_RETENTION_DAYS,
                                description="Delete work-area files last written more than this many days ago"),
        "dry_run": Param(False, type="boolean", description="Count what would be deleted, delete nothing"),
    },
    doc_md=__doc__,
)
def callscribe_maintenance():
    @task(execution_timeout=timedelta(hours=1))
    def sweep_work_area() -> dict:
        from callscribe.db import checked_engine
        from callscribe.retention import sweep
        from callscribe.storage import store

        p = get_current_context()["params"]
        return sweep(store(), checked_engine(), timedelta(days=float(p["retention_days"])),
                     dry_run=bool(p["dry_run"])).as_dict()

    @task(execution_timeout=timedelta(minutes=10))
    def make_months() -> list[str]:
        from callscribe import partitions
        from callscribe.db import checked_engine

        # Ahead of today's loads, whatever the run's logical date (a manual run may have none).
        engine = checked_engine()
        made = partitions.ensure_ahead(engine, datetime.now(UTC).date()) + partitions.ensure_waiting(engine)
        return [m.isoformat() for m in made]

    @task(execution_timeout=timedelta(minutes=30))
    def keep_erasure_notes() -> dict:
        from callscribe.db import checked_engine
        from callscribe.erasure import keep_notes
        from callscribe.storage import store

        # After a restore whose runbook step was skipped, the erased calls of days no run lists again
        # stay searchable: this takes them out within a day, and notes each erasure that lacks one.
        return keep_notes(store(), checked_engine(), dry_run=bool(get_current_context()["params"]["dry_run"])).as_dict()

    sweep_work_area()
    make_months()
    keep_erasure_notes()


callscribe_maintenance()
