"""The DAG folder imports cleanly and the DAG carries what operations expects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag(stack):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "transcribe_calls" in dagbag.dag_ids


def test_every_dag_has_owner_retries_and_tags(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner"
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


def test_transcribe_calls_shape(dagbag):
    dag = dagbag.get_dag("transcribe_calls")
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
    # The benchmark-only engines must never be selectable from the UI.
    assert set(dag.params.get_param("engine").schema["enum"]) == {"whisper-tiny", "granite-nar", "granite-nar-native"}


def test_every_task_has_a_timeout_and_the_run_alerts(dagbag):
    dag = dagbag.get_dag("transcribe_calls")
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


def test_kubernetes_mode_wires_the_pod_operator(stack, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    monkeypatch.setenv("CALLSCRIBE_TRANSCRIBE_MODE", "kubernetes")
    monkeypatch.setenv("CALLSCRIBE_GPU_POOL", "h100_gpus")
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    t = bag.get_dag("transcribe_calls").get_task("transcribe")
    assert t.operator_class is KubernetesPodOperator or issubclass(t.operator_class, KubernetesPodOperator)
    assert t.pool == "h100_gpus"
    assert t.partial_kwargs["deferrable"] is True
