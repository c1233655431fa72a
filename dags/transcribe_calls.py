"""transcribe_calls: each day's call recordings, from the bucket to searchable Postgres rows.

discover -> chunk (mapped over groups of recordings) -> plan_jobs -> transcribe (mapped over
jobs) -> load -> report -> verify.

One factory builds two DAGs of the same shape that differ only in where ``transcribe`` runs:
``transcribe_calls`` runs the worker command as a child process of the Airflow task, and
``transcribe_calls_k8s`` runs it in a GPU pod per job (a deferrable KubernetesPodOperator).
Which one a deployment uses is a matter of which one is unpaused, never of the environment
the file is parsed in: ``transcribe_calls_k8s`` is always created paused, ``transcribe_calls``
as the ``[core] dags_are_paused_at_creation`` setting says. Unpause one of them only (runs of
both for the same day fail in ``discover``).

A run covers one calendar day (in ``CALLSCRIBE_TIMEZONE``, UTC unless set), its logical date
(or the ``date`` Param; a run triggered without a logical date covers the last whole day
before it was triggered), which
names the bucket prefix ``<prefix>YYYY/MM/DD/``, plus the ``lookback_days`` before it for
files that arrived late. ``prefix`` is relative to the bucket and may not lead into the
pipeline's own ``_callscribe/`` area. Backfilling days from the UI processes those days; only
recordings not yet transcribed are picked up unless ``reprocess`` is set.

The run is green only when every recording of its days is done, quarantined or failed
with a reason, and no task failed: ``verify`` checks that against the bucket and fails
the run otherwise. ``report`` always runs and records the figures either way.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Literal

from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, dag, get_current_context, task

from callscribe.alerts import deadline_alert, run_failed, task_timeout
from callscribe.config import day_zone
from callscribe.engines import DEFAULT_ENGINE, POD_ENGINES, available, pod_default_engine

# The two DAGs: where `transcribe` runs is the only difference between them.
LOCAL_DAG_ID = "transcribe_calls"
K8S_DAG_ID = "transcribe_calls_k8s"
DAG_IDS = (LOCAL_DAG_ID, K8S_DAG_ID)

# Deployment settings, read when the DAG is parsed (not secrets: those are connections).
# None of them changes the DAGs' shape.
# Local mode runs the worker on the Airflow worker itself: default_pool unless told otherwise.
LOCAL_POOL = os.environ.get("CALLSCRIBE_LOCAL_POOL", "default_pool")
# The first day a run (or backfill) may cover: Airflow creates no tasks for earlier days.
START_DATE = datetime.fromisoformat(os.environ.get("CALLSCRIBE_START_DATE", "2020-01-01T00:00:00+00:00"))
# First wait before a failed task is tried again (doubling after that): outages of the
# store or the database, and killed worker pods, are ridden out by retries.
RETRY_DELAY = timedelta(seconds=float(os.environ.get("CALLSCRIBE_RETRY_DELAY_S", 120)))
# How many days before its own a run also lists, for uploads that arrived after their day's run.
LOOKBACK_DAYS = int(os.environ.get("CALLSCRIBE_LOOKBACK_DAYS", 3))


# The Params' rules, checked by Airflow when a run is triggered and again by
# callscribe.pipeline (check_date, check_prefix) when the run derives its day.
DATE_SCHEMA = {"type": ["null", "string"], "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
PREFIX_SCHEMA = {"type": "string", "not": {"anyOf": [
    {"pattern": "^/"},  # keys are relative to the bucket
    {"pattern": "^[A-Za-z][A-Za-z0-9+.-]*://"},  # a URI, not a key prefix
    {"pattern": r"\.\."},
    {"pattern": "^_callscribe(/|$)"},  # the pipeline's work area: its speech packs look like calls
    {"pattern": "^_callscribe_erasures(/|$)"},  # the erasures' notes (check_prefix refuses them too)
]}}


def transcribe_calls_dag(dag_id: str, transcribe_in: Literal["local", "kubernetes"]):
    """One of the two DAGs; ``transcribe_in`` is fixed per DAG id, so each shape is fixed."""
    in_pods = transcribe_in == "kubernetes"
    where = ("a GPU pod per job (KubernetesPodOperator, deferrable)" if in_pods
             else "a local worker process per job on the Airflow worker")

    @dag(
        dag_id=dag_id,
        description=f"Transcribe one day of call recordings into Postgres; transcribe: {where}",
        # Each day's run starts at the midnight that ends it, where the day folders are named.
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone=day_zone().key),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=3,
        max_active_tasks=8,
        dagrun_timeout=timedelta(hours=12),
        on_failure_callback=run_failed,
        deadline=deadline_alert(),
        default_args={
            "owner": "callscribe",
            "retries": 2,
            "retry_delay": RETRY_DELAY,
            "retry_exponential_backoff": True,
        },
        tags=["callscribe", "transcription", "daily"],
        params={
            "date": Param(None, **DATE_SCHEMA,
                          description="Day to process (YYYY-MM-DD); empty: the run's logical date, or for a "
                                      "run without one the last whole day before it was triggered (days in "
                                      "CALLSCRIBE_TIMEZONE, UTC unless set)"),
            "prefix": Param("calls/", **PREFIX_SCHEMA,
                            description="Bucket prefix above the YYYY/MM/DD/ folders, relative to the bucket; not "
                                        "_callscribe/ (the work area) nor _callscribe_erasures/, no '..'"),
            # A scheduled run takes the default: the engine the image that runs `transcribe` has.
            "engine": Param(pod_default_engine() if in_pods else DEFAULT_ENGINE, type="string",
                            enum=list(POD_ENGINES) if in_pods else available(),
                            description="ASR engine" + (" (those the GPU worker image has)" if in_pods else "")),
            "max_recordings": Param(None, type=["null", "integer"], minimum=1,
                                    description="Process at most this many recordings (empty: all)"),
            "reprocess": Param(False, type="boolean",
                               description="Transcribe again recordings that are already done"),
            "lookback_days": Param(LOOKBACK_DAYS, type="integer", minimum=0, maximum=31,
                                   description="Also take late uploads and retries from this many days before"),
            "accept_mass_deletion": Param(False, type="boolean",
                                          description="Believe a listing that lacks most of the day's recordings "
                                                      "(after a real mass deletion): remove their transcripts"),
        },
        # Created paused, the Kubernetes one always: a deployment turns on the one it uses.
        is_paused_upon_creation=True if in_pods else None,
        doc_md=__doc__,
    )
    def build():
        @task(execution_timeout=task_timeout("discover"))
        def discover() -> list[list[int]]:
            from airflow.sdk.exceptions import AirflowFailException

            from callscribe import discovery, erasure, pipeline, reporting
            from callscribe.db import checked_engine
            from callscribe.storage import store

            ctx = get_current_context()
            p = ctx["params"]
            try:
                day = pipeline.call_day(ctx)  # checks the date and prefix Params as well
            except pipeline.BadParam as exc:
                raise AirflowFailException(str(exc)) from exc  # a retry would not change the Params
            refuse_twin_run(ctx)
            db, st = checked_engine(), store()
            # The days this run lists, for its verdict: a scheduled run has no conf, so each task takes
            # the lookback's default from the DAG file as its worker parses it, and reads its day in
            # CALLSCRIBE_TIMEZONE, either of which a deploy (or workers set apart) can change between
            # this task and verify.
            ctx["ti"].xcom_push(key="lookback_days", value=p["lookback_days"] or 0)
            ctx["ti"].xcom_push(key="day", value=day.isoformat())
            days = discovery.run_days(day, p["lookback_days"] or 0)
            source = reporting.run_source(st.bucket, p["prefix"])
            try:
                reporting.run_listed(db, ctx["run_id"], ctx["dag"].dag_id, day, p["engine"], source, store=st)
            except reporting.ForeignRun as exc:  # another deployment's run id: a retry would not change it
                raise AirflowFailException(str(exc)) from exc
            # What this run listed: a later task of it that reads another bucket (the S3 connection edited
            # meanwhile) is this run still, not another deployment's.
            ctx["ti"].xcom_push(key="source", value=source)
            # Erasures the database no longer remembers (restored to a point before them; the bucket
            # keeps their notes), erased again before the run's days are registered: none is
            # transcribed again, nor left searchable.
            erasure.reapply(st, db, days)
            ids = discovery.discover(
                st, db, day, p["prefix"], ctx["run_id"],
                reprocess=p["reprocess"], max_recordings=p["max_recordings"], lookback_days=p["lookback_days"],
                is_live=run_is_live(ctx), accept_mass_deletion=p["accept_mass_deletion"],
            )
            return discovery.groups(ids, pipeline.DEFAULT_GROUP_SIZE, pipeline.max_map_length())

        @task(max_active_tis_per_dagrun=4, execution_timeout=task_timeout("chunk"))
        def chunk(group: list[int]) -> str:
            from callscribe import pipeline
            from callscribe.db import checked_engine
            from callscribe.storage import store

            ctx = get_current_context()
            return pipeline.chunk_group(store(), checked_engine(), group, ctx["run_id"], ctx["ti"].map_index,
                                        ctx["params"]["engine"])

        # One chunk task failing for good must not hold back the other groups: plan what was chunked.
        @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=task_timeout("plan_jobs"))
        def plan_jobs(manifests: list[str] | None) -> list[str]:
            from callscribe import pipeline
            from callscribe.storage import store

            ctx = get_current_context()
            done = [m for m in (manifests[:] if manifests is not None else []) if m]
            engine = ctx["params"]["engine"]
            return pipeline.plan_jobs(store(), done, ctx["run_id"], engine, sizing=pipeline.job_sizing(in_pods, engine),
                                      max_jobs=pipeline.max_map_length())

        jobs = plan_jobs(chunk.expand(group=discover()))

        if in_pods:
            from callscribe.kubernetes import transcribe_pod_operator

            # The pod's result is not pushed to XCom: `load` finds the shards from the job manifests.
            transcribed = transcribe_pod_operator().expand(arguments=jobs.map(worker_arguments))
        else:

            @task(pool=LOCAL_POOL, execution_timeout=task_timeout("transcribe"))
            def transcribe(job_uri: str) -> str:
                from callscribe import pipeline
                from callscribe.config import s3_settings

                return pipeline.run_worker_local(job_uri, s3_settings())

            transcribed = transcribe.expand(job_uri=jobs)

        # Every job's shard that exists is loaded, whichever jobs failed: shard places are known
        # from the job manifests, so nothing depends on the failed tasks' return values.
        @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=task_timeout("load"))
        def load(job_uris: list[str]) -> dict:
            from callscribe.db import checked_engine
            from callscribe.loading import load_jobs
            from callscribe.storage import store

            # None when plan_jobs did not run (nothing to chunk) or failed (then `verify` says so).
            uris = list(job_uris[:]) if job_uris is not None else []
            result = load_jobs(store(), checked_engine(), uris, get_current_context()["run_id"])
            return {"shards": result.shards, "recordings": result.recordings, "segments": result.segments,
                    "failed": result.failed, "unfinished_jobs": result.unfinished_jobs}

        @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=task_timeout("report"))
        def report() -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from callscribe import pipeline, reporting
            from callscribe.db import checked_engine
            from callscribe.storage import store

            ctx = get_current_context()
            st = store()
            source = reporting.run_source(st.bucket, ctx["params"]["prefix"])
            listed_day = ctx["ti"].xcom_pull(task_ids="discover", key="day")
            listed = ctx["ti"].xcom_pull(task_ids="discover", key="source")
            try:
                # Closed as its discover listed it (its leases are its own), then red if the bucket changed since.
                figures = reporting.report_run(
                    checked_engine(), ctx["run_id"], ctx["dag"].dag_id, pipeline.call_day(ctx, listed_day),
                    ctx["params"]["engine"], store=st, source=listed or source,
                )
                reporting.check_source(ctx["run_id"], listed, source)
            except (reporting.ForeignRun, pipeline.BadParam) as exc:  # a retry would not change either
                raise AirflowFailException(str(exc)) from exc
            return {k: v for k, v in figures.items() if k != "failures"} | {"failures": len(figures["failures"])}

        # The run's verdict, and its only leaf: Airflow colours a run by its leaves.
        @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=task_timeout("verify"))
        def verify() -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from callscribe import pipeline
            from callscribe.db import checked_engine
            from callscribe.storage import store

            ctx = get_current_context()
            states = ctx["ti"].get_task_states(dag_id=ctx["dag"].dag_id, run_ids=[ctx["run_id"]])
            try:
                return pipeline.verify_run(store(), checked_engine(), ctx, states.get(ctx["run_id"], {}),
                                           run_is_live(ctx),
                                           lookback_days=ctx["ti"].xcom_pull(task_ids="discover", key="lookback_days"),
                                           listed_source=ctx["ti"].xcom_pull(task_ids="discover", key="source"),
                                           listed_day=ctx["ti"].xcom_pull(task_ids="discover", key="day"))
            except (pipeline.RunIncomplete, pipeline.BadParam) as exc:
                # A verdict is not retried (an outage while checking is: any other error), nor is a
                # run's day its Params or logical date cannot give (discover failed on it already).
                raise AirflowFailException(str(exc)) from exc

        loaded = load(jobs)
        transcribed >> loaded
        loaded >> report() >> verify()

    return build()


LIVE = ["queued", "running"]


def run_is_live(ctx):
    """Whether a run of either DAG is still queued or running (its leases are real).

    Leases name the run id only: a lease held by a live run of the other DAG is not dead.
    """
    ti = ctx["ti"]
    return lambda run_id: any(ti.get_dr_count(dag_id=d, run_ids=[run_id], states=LIVE) > 0 for d in DAG_IDS)


def refuse_twin_run(ctx) -> None:
    """Fail when the other DAG has a live run under this run's id (both unpaused: the same
    scheduled run ids), since leases name the run id only and both would take the same calls."""
    from airflow.sdk.exceptions import AirflowFailException

    dag_id, run_id = ctx["dag"].dag_id, ctx["run_id"]
    for other in DAG_IDS:
        if other != dag_id and ctx["ti"].get_dr_count(dag_id=other, run_ids=[run_id], states=LIVE) > 0:
            raise AirflowFailException(
                f"{other} has a live run {run_id} too: unpause only one of {', '.join(DAG_IDS)}")


def worker_arguments(job_uri: str) -> list[str]:
    return ["--job", job_uri]


transcribe_calls = transcribe_calls_dag(LOCAL_DAG_ID, "local")
transcribe_calls_k8s = transcribe_calls_dag(K8S_DAG_ID, "kubernetes")
