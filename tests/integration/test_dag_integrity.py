"""The DAG folder imports cleanly and the DAG carries what operations expects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_run_params import BAD_PREFIXES, GOOD_PREFIXES

REPO = Path(__file__).resolve().parents[2]
DAG_IDS = ("transcribe_calls", "transcribe_calls_k8s")
MAINTENANCE_DAG_ID = "callscribe_maintenance"
# Each DAG, as the file gives it: tasks with their operator and upstream tasks, pools, and
# whether it is created paused. Printed by a fresh interpreter per environment.
DESCRIBE = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=DAGS)
print(json.dumps({"errors": sorted(bag.import_errors), "dags": {
    d.dag_id: {"paused": d.is_paused_upon_creation, "tasks": {
        t.task_id: [t.operator_name, sorted(t.upstream_task_ids), t.pool] for t in d.tasks}}
    for d in bag.dags.values()}}))
"""


@pytest.fixture(scope="module")
def dagbag(stack):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(DAG_IDS) <= set(dagbag.dag_ids)


def test_maintenance_dag_sweeps_daily_with_a_retention_param(dagbag):
    dag = dagbag.get_dag(MAINTENANCE_DAG_ID)
    assert sorted(t.task_id for t in dag.tasks) == ["keep_erasure_notes", "make_months", "sweep_work_area"]
    assert dag.timetable.expression == "30 3 * * *" and not dag.catchup
    assert dag.params.get_param("retention_days").resolve() == 14


def test_every_dag_has_owner_retries_and_tags(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner"
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_transcribe_calls_shape(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert {t.task_id for t in dag.tasks} == {"discover", "chunk", "plan_jobs", "transcribe", "load", "report",
                                              "verify"}
    assert set(dag.params.keys()) >= {"prefix", "engine", "max_recordings", "reprocess", "lookback_days"}
    assert dag.timetable.expression == "0 0 * * *"
    assert not dag.catchup
    assert dag.get_task("report").trigger_rule == "all_done"
    # Airflow colours a run by its leaves: the verdict must be the only one, and run after everything.
    assert [t.task_id for t in dag.tasks if not t.downstream_list] == ["verify"]
    verify = dag.get_task("verify")
    assert verify.trigger_rule == "all_done"
    assert set(verify.get_flat_relative_ids(upstream=True)) == {t.task_id for t in dag.tasks} - {"verify"}
    assert dag.get_task("load").trigger_rule == "all_done"  # every shard that exists is loaded
    # The benchmark-only engines must never be selectable from the UI, nor in pods one the GPU image lacks.
    offered = {"granite-nar", "granite-nar-native"} | (set() if dag_id.endswith("_k8s") else {"whisper-tiny"})
    assert set(dag.params.get_param("engine").schema["enum"]) == offered


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_task_has_a_timeout_and_the_run_alerts(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    for t in dag.tasks:
        assert t.execution_timeout is not None, t.task_id
    assert dag.get_task("transcribe").execution_timeout.total_seconds() == 6 * 3600
    assert dag.on_failure_callback
    assert dag.deadline, "no DeadlineAlert"


def test_the_deadline_is_configurable_and_the_alert_lines_are_clear(monkeypatch, caplog):
    import asyncio
    import logging

    from callscribe import alerts

    monkeypatch.setenv("CALLSCRIBE_DEADLINE_HOURS", "6")
    alert = alerts.deadline_alert()
    assert alert.interval.total_seconds() == 6 * 3600
    monkeypatch.setenv("CALLSCRIBE_DEADLINE_HOURS", "off")
    assert alerts.deadline_alert() is None
    with caplog.at_level(logging.ERROR, logger="callscribe.alerts"):
        asyncio.run(alerts.deadline_missed(hours=6, context={"dag_run": {"dag_id": "transcribe_calls",
                                                                         "run_id": "scheduled__x"}}))
        alerts.run_failed({"reason": "task_failure"})
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("CALLSCRIBE ALERT run late: dag transcribe_calls run scheduled__x: "
                        "not finished 6 h after it was queued")
    assert lines[1].startswith("CALLSCRIBE ALERT run failed") and "task_failure" in lines[1]


def test_ruff_air_rules_clean():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "AIR", str(REPO)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_k8s_dag_wires_the_pod_operator(stack, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    monkeypatch.setenv("CALLSCRIBE_GPU_POOL", "h100_gpus")
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    t = bag.get_dag("transcribe_calls_k8s").get_task("transcribe")
    assert t.operator_class is KubernetesPodOperator or issubclass(t.operator_class, KubernetesPodOperator)
    assert t.pool == "h100_gpus"
    assert t.partial_kwargs["deferrable"] is True  # the triggerer waits for the pod, not a worker slot
    assert t.partial_kwargs["do_xcom_push"] is False  # `load` reads the job manifests, not the pod's XCom
    assert t.partial_kwargs["on_finish_action"] == "delete_pod"
    local = bag.get_dag("transcribe_calls").get_task("transcribe")
    assert not issubclass(local.operator_class, KubernetesPodOperator)


def _describe(env_update: dict[str, str | None]) -> dict:
    env = dict(os.environ)
    for k, v in env_update.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    out = subprocess.run([sys.executable, "-c", f"DAGS = {str(REPO / 'dags')!r}\n" + DESCRIBE],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_shape_does_not_depend_on_the_parsing_environment():
    """A worker whose environment differs from the DAG processor's must get the same DAGs."""
    shapes = [_describe({"CALLSCRIBE_TRANSCRIBE_MODE": mode})
              for mode in (None, "local", "kubernetes", "something-else")]
    assert shapes[0]["errors"] == [] and set(shapes[0]["dags"]) == {*DAG_IDS, MAINTENANCE_DAG_ID}
    for shape in shapes[1:]:
        assert shape == shapes[0]
    dags = shapes[0]["dags"]
    assert dags["transcribe_calls"]["tasks"]["transcribe"][0] == "@task"
    assert dags["transcribe_calls_k8s"]["tasks"]["transcribe"][0] == "TranscribePodOperator"  # a KubernetesPodOperator
    # Same tasks and wiring in both; only where `transcribe` runs differs.
    wiring = {d: {t: v[1] for t, v in dags[d]["tasks"].items()} for d in DAG_IDS}
    assert wiring["transcribe_calls"] == wiring["transcribe_calls_k8s"]
    # The Kubernetes one never starts scheduling on its own.
    assert dags["transcribe_calls_k8s"]["paused"] is True


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_params_refuse_prefixes_and_dates_the_package_refuses(dagbag, dag_id):
    from airflow.sdk.exceptions import ParamValidationError

    from callscribe.pipeline import BadParam, check_date, check_prefix

    params = dagbag.get_dag(dag_id).params
    prefix, day = params.get_param("prefix"), params.get_param("date")
    for good in GOOD_PREFIXES:
        assert prefix.resolve(good) == check_prefix(good)
    for bad in BAD_PREFIXES:
        with pytest.raises(ParamValidationError):
            prefix.resolve(bad)
        with pytest.raises(BadParam):
            check_prefix(bad)
    assert day.resolve(None) is None and str(check_date(day.resolve("2026-11-24"))) == "2026-11-24"
    for bad in ("20261124", "2026-W48-2", "2026-02-30", "2026-11-24T00:00:00"):
        with pytest.raises(ParamValidationError):
            day.resolve(bad)


class _RunCounts:
    """A task instance's ``get_dr_count`` over a fixed set of live (dag id, run id) pairs."""

    def __init__(self, live: set[tuple[str, str]]):
        self.live = live

    def get_dr_count(self, dag_id, run_ids, states):
        assert set(states) == {"queued", "running"}
        return sum((dag_id, r) in self.live for r in run_ids)


def test_the_two_dags_never_share_a_day_silently():
    """Leases name the run id only: a live run of the other DAG holds its leases, and a run of
    the other DAG under the same id (both unpaused: same scheduled ids) stops discover."""
    import importlib.util
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    spec = importlib.util.spec_from_file_location("transcribe_calls_dag_file", REPO / "dags" / "transcribe_calls.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    run = "scheduled__2026-11-24T00:00:00+00:00"

    def ctx(live):
        return {"dag": SimpleNamespace(dag_id="transcribe_calls"), "run_id": run, "ti": _RunCounts(live)}

    with pytest.raises(AirflowFailException, match="unpause only one"):
        mod.refuse_twin_run(ctx({("transcribe_calls_k8s", run)}))
    mod.refuse_twin_run(ctx({("transcribe_calls", run), ("transcribe_calls_k8s", "manual__x")}))
    is_live = mod.run_is_live(ctx({("transcribe_calls_k8s", "manual__x"), ("transcribe_calls", "manual__y")}))
    assert is_live("manual__x") and is_live("manual__y") and not is_live("manual__z")


@pytest.mark.parametrize(("dag_id", "engine", "cap_h", "batch_s"), [
    ("transcribe_calls_k8s", "granite-nar-native", 200, 3840),
    ("transcribe_calls_k8s", "whisper-tiny", 4, 240),
    ("transcribe_calls", "granite-nar-native", 4, 240)])
def test_each_dags_plan_jobs_sizes_jobs_for_where_they_run(dagbag, monkeypatch, dag_id, engine, cap_h, batch_s):
    """A run triggered from the UI with an engine Param: the pod DAG's Granite jobs are minutes of GPU
    work (200 h), whisper's and the local DAG's keep 4 h. Checked on the DAG's own task, so the wiring
    between the DAG and pipeline.job_sizing is what is tested (the pipeline's plan is not run here)."""
    from callscribe import pipeline, storage

    for name in ("CALLSCRIBE_JOB_AUDIO_S", "CALLSCRIBE_BATCH_AUDIO_S", "CALLSCRIBE_K8S_GPUS"):
        monkeypatch.delenv(name, raising=False)
    task = dagbag.get_dag(dag_id).get_task("plan_jobs")
    monkeypatch.setitem(task.python_callable.__globals__, "get_current_context",
                        lambda: {"run_id": "manual__ui", "params": {"engine": engine}})
    planned = {}

    def plan_jobs(store, manifests, run_id, engine_name, sizing=None, max_jobs=None):
        planned.update(manifests=manifests, engine=engine_name, cap_s=sizing.cap_s if sizing else None,
                       batch_s=sizing.batch_s if sizing else None)
        return []

    monkeypatch.setattr(pipeline, "plan_jobs", plan_jobs)
    monkeypatch.setattr(storage, "store", lambda: None)
    assert task.python_callable(["s3://b/m.parquet", None]) == []
    assert planned == {"manifests": ["s3://b/m.parquet"], "engine": engine, "cap_s": cap_h * 3600,
                       "batch_s": batch_s}


def test_a_deployment_picks_the_pod_dags_engine_without_a_code_change(stack, monkeypatch):
    """Scheduled runs have no conf: CALLSCRIBE_POD_ENGINE is how a deployment runs the reference engine
    in its pods (before `callscribe parity` has been run on its checkpoint, say); a name no engine
    has fails the parse, not every night's run."""
    from airflow.dag_processing.dagbag import DagBag

    from callscribe import engines

    def pod_engine_default(value: str | None):
        if value is None:
            monkeypatch.delenv("CALLSCRIBE_POD_ENGINE", raising=False)
        else:
            monkeypatch.setenv("CALLSCRIBE_POD_ENGINE", value)
        bag = DagBag(dag_folder=str(REPO / "dags"))
        if bag.import_errors:
            return next(iter(bag.import_errors.values()))
        return (bag.get_dag("transcribe_calls_k8s").params.get_param("engine").value,
                bag.get_dag("transcribe_calls").params.get_param("engine").value)

    assert pod_engine_default(None) == (engines.POD_DEFAULT_ENGINE, engines.DEFAULT_ENGINE)
    assert pod_engine_default("granite-nar") == ("granite-nar", engines.DEFAULT_ENGINE)
    assert "CALLSCRIBE_POD_ENGINE" in pod_engine_default("granite-nar-fast")
    # Whisper is an engine, but not one the GPU worker image has: refused at the parse too.
    assert "GPU worker image" in pod_engine_default("whisper-tiny")


def test_the_pod_dags_form_offers_only_the_engines_its_image_has(stack):
    """A run triggered with whisper-tiny in pods failed every job (the GPU image has no Whisper) and
    spent an attempt of each call: the form refuses it, as the Param's schema is checked at trigger."""
    from airflow.dag_processing.dagbag import DagBag

    from callscribe import engines

    bag = DagBag(dag_folder=str(REPO / "dags"))
    pods = bag.get_dag("transcribe_calls_k8s").params.get_param("engine")
    local = bag.get_dag("transcribe_calls").params.get_param("engine")
    assert sorted(pods.schema["enum"]) == sorted(engines.POD_ENGINES)
    assert "whisper-tiny" in local.schema["enum"]
    with pytest.raises(Exception, match="whisper-tiny"):
        pods.resolve("whisper-tiny")
