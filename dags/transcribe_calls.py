"""transcribe_calls: each day's call recordings, from the bucket to searchable Postgres rows.

discover -> chunk (mapped over groups of recordings) -> plan_jobs -> transcribe (mapped over
jobs; a Kubernetes pod per job, or the same command as a local process) -> load -> report.

A run covers one calendar day (UTC), its logical date (or the ``date`` Param), which
names the bucket prefix ``<prefix>YYYY/MM/DD/``. Backfilling days from the UI processes those days; only
recordings not yet transcribed are picked up unless ``reprocess`` is set.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, dag, get_current_context, task

from callscribe.engines import DEFAULT_ENGINE, available

# Deployment settings, read when the DAG is parsed (not secrets: those are connections).
TRANSCRIBE_MODE = os.environ.get("CALLSCRIBE_TRANSCRIBE_MODE", "local")  # local | kubernetes
# Local mode runs the worker on the Airflow worker itself: default_pool unless told otherwise.
LOCAL_POOL = os.environ.get("CALLSCRIBE_LOCAL_POOL", "default_pool")
# The first day a run (or backfill) may cover: Airflow creates no tasks for earlier days.
START_DATE = datetime.fromisoformat(os.environ.get("CALLSCRIBE_START_DATE", "2026-11-01T00:00:00+00:00"))
# First wait before a failed task is tried again (doubling after that): outages of the
# store or the database, and killed worker pods, are ridden out by retries.
RETRY_DELAY = timedelta(seconds=float(os.environ.get("CALLSCRIBE_RETRY_DELAY_S", 120)))


@dag(
    dag_id="transcribe_calls",
    description="Transcribe one day of call recordings into Postgres",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=3,
    max_active_tasks=8,
    dagrun_timeout=timedelta(hours=12),
    default_args={
        "owner": "callscribe",
        "retries": 2,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
    },
    tags=["callscribe", "transcription", "daily"],
    params={
        "date": Param(None, type=["null", "string"], format="date",
                      description="Day to process (YYYY-MM-DD); empty: the run's logical date"),
        "prefix": Param("calls/", type="string", description="Bucket prefix above the YYYY/MM/DD/ folders"),
        "engine": Param(DEFAULT_ENGINE, type="string", enum=available(), description="ASR engine"),
        "max_recordings": Param(None, type=["null", "integer"], minimum=1,
                                description="Process at most this many recordings (empty: all)"),
        "reprocess": Param(False, type="boolean",
                           description="Transcribe again recordings that are already done"),
    },
    doc_md=__doc__,
)
def transcribe_calls():
    @task
    def discover() -> list[list[int]]:
        from callscribe import discovery, pipeline
        from callscribe.db import engine_from_env
        from callscribe.storage import store

        ctx = get_current_context()
        p = ctx["params"]
        ids = discovery.discover(
            store(), engine_from_env(), pipeline.call_day(ctx), p["prefix"],
            ctx["run_id"], reprocess=p["reprocess"], max_recordings=p["max_recordings"],
        )
        return discovery.groups(ids, pipeline.DEFAULT_GROUP_SIZE)

    @task(max_active_tis_per_dagrun=4)
    def chunk(group: list[int]) -> str:
        from callscribe import pipeline
        from callscribe.db import engine_from_env
        from callscribe.storage import store

        ctx = get_current_context()
        return pipeline.chunk_group(store(), engine_from_env(), group, ctx["run_id"], ctx["ti"].map_index)

    @task
    def plan_jobs(manifests: list[str]) -> list[str]:
        from callscribe import pipeline
        from callscribe.storage import store

        ctx = get_current_context()
        return pipeline.plan_jobs(store(), list(manifests[:]), ctx["run_id"], ctx["params"]["engine"])

    jobs = plan_jobs(chunk.expand(group=discover()))

    if TRANSCRIBE_MODE == "kubernetes":
        from callscribe.kubernetes import transcribe_pod_operator

        shards = transcribe_pod_operator().expand(arguments=jobs.map(worker_arguments)).output
    else:

        @task(pool=LOCAL_POOL)
        def transcribe(job_uri: str) -> str:
            from callscribe import pipeline
            from callscribe.config import s3_settings

            return pipeline.run_worker_local(job_uri, s3_settings())

        shards = transcribe.expand(job_uri=jobs)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def load(shard_uris: list[str]) -> dict:
        from callscribe.db import engine_from_env
        from callscribe.loading import load_shards
        from callscribe.storage import store

        # A slice reads the mapped results in one call instead of probing item by item.
        result = load_shards(store(), engine_from_env(), [u for u in shard_uris[:] if u])
        return {"shards": result.shards, "recordings": result.recordings, "segments": result.segments}

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(_loaded: dict | None = None) -> dict:
        from callscribe import pipeline, reporting
        from callscribe.db import engine_from_env

        ctx = get_current_context()
        figures = reporting.report_run(
            engine_from_env(), ctx["run_id"], ctx["dag"].dag_id, pipeline.call_day(ctx),
            ctx["params"]["engine"],
        )
        return {k: v for k, v in figures.items() if k != "failures"} | {"failures": len(figures["failures"])}

    report(load(shards))


def worker_arguments(job_uri: str) -> list[str]:
    return ["--job", job_uri]


transcribe_calls()
