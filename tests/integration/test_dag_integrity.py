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
    assert {t.task_id for t in dag.tasks} == {"discover", "chunk", "plan_jobs", "transcribe", "load", "report"}
    assert set(dag.params.keys()) >= {"prefix", "engine", "max_recordings", "reprocess"}
    assert dag.timetable.expression == "0 0 * * *"
    assert not dag.catchup
    assert dag.get_task("report").trigger_rule == "all_done"
    # The benchmark-only engines must never be selectable from the UI.
    assert set(dag.params.get_param("engine").schema["enum"]) == {"whisper-tiny", "granite-nar", "granite-nar-native"}


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
