"""The worker pod, rendered without a cluster and validated against the Kubernetes schema."""

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from callscribe import kubernetes as kube
from callscribe.kubernetes import (
    KubeSettings,
    PodTemplateMissing,
    operator_kwargs,
    pod_template,
    render_pod,
    settings_from_env,
)

K8S_VERSION = "1.33.0"
JOB = "s3://calls/_callscribe/runs/r/jobs/job-00003.json"


@pytest.fixture(scope="module")
def pod():
    return render_pod(JOB, KubeSettings())


def _worker(pod) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


def test_rendered_pod_and_template_pass_the_schema(pod):
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    kubernetes_validate.validate(pod_template(), K8S_VERSION, strict=True)


def test_gpu_selector_tolerations(pod):
    c = _worker(pod)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert pod["spec"]["activeDeadlineSeconds"] == 4 * 3600
    assert pod["metadata"]["labels"]["callscribe/pool"] == "callscribe_gpu"


def test_model_on_a_read_only_pvc(pod):
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["models"]["persistentVolumeClaim"] == {"claimName": "granite-speech-models", "readOnly": True}
    mount = next(m for m in _worker(pod)["volumeMounts"] if m["name"] == "models")
    assert mount["readOnly"] is True
    env = {e["name"]: e.get("value") for e in _worker(pod)["env"]}
    assert env["CALLSCRIBE_GRANITE_MODEL_DIR"].startswith(mount["mountPath"])
    assert env["HF_HUB_OFFLINE"] == "1"


def test_credentials_only_by_secret_reference(pod):
    c = _worker(pod)
    assert c["envFrom"] == [{"secretRef": {"name": "callscribe-s3"}}]
    assert c["command"] == ["python", "-m", "callscribe.worker"] and c["args"] == ["--job", JOB]
    text = json.dumps(pod).lower()
    for word in ("secret_key", "password", "access_key"):
        assert word not in text


def test_non_root_read_only_and_no_xcom_sidecar(pod):
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    # One container: no sidecar pulled from Docker Hub, no /airflow/xcom volume.
    assert [c["name"] for c in spec["containers"]] == ["base"]
    c = _worker(pod)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert not any(m["mountPath"].startswith("/airflow") for m in c["volumeMounts"])


def test_a_pod_says_why_it_died_and_mounts_a_shared_cache_without_a_walk(pod):
    """A worker killed without writing its termination message (OOM-killed, SIGKILL) still shows the
    end of its log as the cause; and the compile cache, a shared volume, is not re-owned file by file
    at every pod's start (only when its root's group is not already the pod's)."""
    assert _worker(pod)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


def test_the_worker_result_file_is_on_a_writable_volume(pod):
    # The root filesystem is read-only: the worker's result file must land on the /tmp emptyDir.
    env = {e["name"]: e.get("value") for e in _worker(pod)["env"]}
    mounts = {m["mountPath"]: m["name"] for m in _worker(pod)["volumeMounts"]}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    result = env["CALLSCRIBE_XCOM_PATH"]
    mount = next(p for p in mounts if result.startswith(p.rstrip("/") + "/"))
    assert "emptyDir" in vols[mounts[mount]]


def test_torch_compile_caches_go_to_tmp_or_to_a_shared_volume(pod, monkeypatch):
    """The worker compiles the model at load: its caches need a writable place (the root filesystem
    is read-only), /tmp by default, a shared claim when one is configured (pods then compile from it)."""
    env = {e["name"]: e.get("value") for e in _worker(pod)["env"]}
    assert env["TORCHINDUCTOR_CACHE_DIR"].startswith("/tmp/") and env["TRITON_CACHE_DIR"].startswith("/tmp/")
    assert "compile-cache" not in {v["name"] for v in pod["spec"]["volumes"]}
    monkeypatch.setenv("CALLSCRIBE_K8S_COMPILE_CACHE_PVC", "callscribe-compile-cache")
    shared = render_pod(JOB, settings_from_env())
    kubernetes_validate.validate(shared, K8S_VERSION, strict=True)
    env = {e["name"]: e.get("value") for e in _worker(shared)["env"]}
    mount = next(m for m in _worker(shared)["volumeMounts"] if m["name"] == "compile-cache")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == mount["mountPath"] and not mount.get("readOnly")
    assert env["TRITON_CACHE_DIR"] == f"{mount['mountPath']}/triton"  # the depthwise kernel, launched eagerly
    vols = {v["name"]: v for v in shared["spec"]["volumes"]}
    assert vols["compile-cache"]["persistentVolumeClaim"] == {"claimName": "callscribe-compile-cache"}
    assert vols["models"]["persistentVolumeClaim"]["readOnly"] is True  # the model stays read-only


def test_the_pods_threads_are_its_cpus(pod):
    """A pod is limited to its CPUs (a CFS quota), but sees every core of the node: torch's threads and
    inductor's compile workers (up to 32 processes at a cold compile, every pod's without a shared cache)
    would be sized to the node, and throttled. They are the pod's whole CPUs."""
    env = {e["name"]: e.get("value") for e in _worker(pod)["env"]}
    assert env["OMP_NUM_THREADS"] == env["TORCHINDUCTOR_COMPILE_THREADS"] == KubeSettings().cpu == "8"
    for cpu, threads in (("7500m", "7"), ("500m", "1"), ("2.5", "2"), ("16", "16")):
        env = {e.name: e.value for e in operator_kwargs(KubeSettings(cpu=cpu))["env_vars"]}
        assert env["OMP_NUM_THREADS"] == env["TORCHINDUCTOR_COMPILE_THREADS"] == threads, cpu


def test_the_pod_demands_its_gpu(pod):
    env = {e["name"]: e.get("value") for e in _worker(pod)["env"]}
    assert env["CALLSCRIBE_DEVICE"] == "cuda"
    cpu_pod = render_pod(JOB, KubeSettings(gpus=0))
    assert {e["name"]: e.get("value") for e in _worker(cpu_pod)["env"]}["CALLSCRIBE_DEVICE"] == "cpu"


def test_operator_is_deferrable_pooled_and_cleans_up():
    kw = operator_kwargs(KubeSettings(pool="h100"))
    assert kw["deferrable"] is True and kw["pool"] == "h100"
    # Failed pods are deleted as well, after their logs and events are in the task log.
    assert kw["on_finish_action"] == "delete_pod" and kw["get_logs"] is True and kw["log_events_on_failure"]
    assert kw["do_xcom_push"] is False
    assert kw["startup_timeout_seconds"] >= 600


def test_pull_secrets_priority_class_and_deadline_from_the_environment(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_K8S_IMAGE_PULL_SECRETS", "regcred, mirror-cred")
    monkeypatch.setenv("CALLSCRIBE_K8S_PRIORITY_CLASS", "gpu-batch")
    monkeypatch.setenv("CALLSCRIBE_K8S_ACTIVE_DEADLINE_S", "7200")
    pod = render_pod(JOB, settings_from_env())
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    spec = pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-cred"}]
    assert spec["priorityClassName"] == "gpu-batch"
    assert spec["activeDeadlineSeconds"] == 7200
    assert [c["name"] for c in spec["containers"]] == ["base"]
    # Unset, neither appears (the cluster's defaults apply).
    plain = render_pod(JOB, KubeSettings())["spec"]
    assert not plain.get("imagePullSecrets") and "priorityClassName" not in plain


def test_a_missing_template_is_an_error_not_a_warning(monkeypatch, tmp_path):
    with pytest.raises(PodTemplateMissing, match="not found"):
        operator_kwargs(KubeSettings(pod_template=str(tmp_path / "absent.yaml")))
    monkeypatch.setattr(kube, "TEMPLATE_RESOURCE", "k8s/absent.yaml")
    with pytest.raises(PodTemplateMissing, match="package data"):
        render_pod(JOB, KubeSettings())
    (tmp_path / "not-a-pod.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(PodTemplateMissing, match="not a Pod"):
        pod_template(str(tmp_path / "not-a-pod.yaml"))


def test_a_template_file_from_the_environment_replaces_the_packaged_one(monkeypatch, tmp_path):
    custom = pod_template()
    custom["spec"]["securityContext"]["runAsUser"] = 20002
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(custom))
    monkeypatch.setenv("CALLSCRIBE_K8S_POD_TEMPLATE", str(path))
    assert render_pod(JOB, settings_from_env())["spec"]["securityContext"]["runAsUser"] == 20002


def test_the_template_lives_only_in_the_package():
    repo = Path(__file__).resolve().parents[2]
    copies = [p.relative_to(repo) for p in repo.rglob("worker-pod-template*.yaml")
              if not {".venv", "build", ".git"} & set(p.relative_to(repo).parts)]
    assert copies == [Path("include/callscribe/k8s/worker-pod-template.yaml")]


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("CALLSCRIBE_WORKER_IMAGE", "registry.local/worker:9")
    monkeypatch.setenv("CALLSCRIBE_K8S_NODE_SELECTOR", '{"gpu": "h100"}')
    monkeypatch.setenv("CALLSCRIBE_K8S_GPUS", "2")
    s = settings_from_env()
    assert (s.image, s.node_selector, s.gpus) == ("registry.local/worker:9", {"gpu": "h100"}, 2)


def test_pod_spec_command_prints_valid_yaml():
    out = subprocess.run([sys.executable, "-m", "callscribe.cli", "pod-spec", "--job", JOB],
                         capture_output=True, text=True, check=True, env={**os.environ})
    pod = yaml.safe_load(out.stdout)
    assert pod["kind"] == "Pod" and _worker(pod)["args"] == ["--job", JOB]
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_dockerfiles_pass_hadolint():
    repo = Path(__file__).resolve().parents[2]
    files = sorted(str(p) for p in (repo / "docker").glob("*.Dockerfile"))
    assert files
    out = subprocess.run([str(Path(sys.executable).parent / "hadolint"), *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_file_has_the_real_services_and_no_secrets():
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "docker" / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    # The triggerer runs the deferred pod waits and the run-late alert's callback.
    wanted = {"postgres", "minio", "airflow-api", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
    assert wanted <= set(compose["services"])
    for svc in compose["services"].values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port  # published on loopback only
    assert "change-me" not in text  # secrets come from docker/.env
    assert "CALLSCRIBE_TRANSCRIBE_MODE" not in text  # nothing reads it: which DAG runs is which is unpaused


def test_compose_postgres_can_run_the_migrations():
    """Migration 0015 declares a foreign key NOT ENFORCED (PostgreSQL 18); the image's data lives
    under /var/lib/postgresql from 18 on, where its volume must be mounted."""
    import re

    repo = Path(__file__).resolve().parents[2]
    pg = yaml.safe_load((repo / "docker" / "compose.yaml").read_text())["services"]["postgres"]
    major = int(re.fullmatch(r"postgres:(\d+)(\.\d+)*", pg["image"]).group(1))
    assert major >= 18, pg["image"]
    assert any(v.endswith(":/var/lib/postgresql") for v in pg["volumes"]), pg["volumes"]


def test_a_fast_engines_jobs_in_gpu_pods_hold_minutes_of_gpu_work(monkeypatch):
    """A GPU pod pays a start, a model load and a compile (15 s from the model loaded to the first batch
    on an H100, warm cache); at about 3,500x a 4 h job is 4 s of GPU work. Granite's jobs in GPU pods
    hold 200 h; whisper-tiny (tens of x), local workers and CPU pods keep 4 h."""
    from callscribe import pipeline
    from callscribe.batching import JobSizing

    monkeypatch.delenv("CALLSCRIBE_JOB_AUDIO_S", raising=False)
    monkeypatch.delenv("CALLSCRIBE_K8S_GPUS", raising=False)
    four_hours = JobSizing().cap_s
    assert pipeline.job_sizing(True, "granite-nar-native").cap_s == 200 * 3600
    assert pipeline.job_sizing(True, "granite-nar").cap_s == 200 * 3600
    assert pipeline.job_sizing(True, "whisper-tiny").cap_s == four_hours  # 200 h would outlast the task's timeout
    assert pipeline.job_sizing(False, "granite-nar-native").cap_s == four_hours
    monkeypatch.setenv("CALLSCRIBE_K8S_GPUS", "0")
    assert pipeline.job_sizing(True, "granite-nar-native").cap_s == four_hours


def test_a_fast_engines_batches_in_gpu_pods_are_the_size_its_speed_was_measured_at(monkeypatch):
    """Granite's GPU figures (docs/benchmarks.md) are batches of up to 3,840 s of audio (128 x 30 s);
    at the 240 s CPU default a GPU pod would run 8 chunks a batch. Whisper, local workers and CPU pods
    keep 240 s; CALLSCRIBE_BATCH_AUDIO_S overrides both (a smaller card)."""
    from callscribe import pipeline

    for name in ("CALLSCRIBE_BATCH_AUDIO_S", "CALLSCRIBE_K8S_GPUS"):
        monkeypatch.delenv(name, raising=False)
    assert pipeline.job_sizing(True, "granite-nar-native").batch_s == 3840
    assert pipeline.job_sizing(True, "granite-nar").batch_s == 3840
    assert pipeline.job_sizing(True, "whisper-tiny").batch_s == 240
    assert pipeline.job_sizing(False, "granite-nar-native").batch_s == 240
    monkeypatch.setenv("CALLSCRIBE_BATCH_AUDIO_S", "1920")
    assert pipeline.job_sizing(True, "granite-nar-native").batch_s == 1920
    assert pipeline.job_sizing(False, "whisper-tiny").batch_s == 1920
    monkeypatch.delenv("CALLSCRIBE_BATCH_AUDIO_S")
    monkeypatch.setenv("CALLSCRIBE_K8S_GPUS", "0")
    assert pipeline.job_sizing(True, "granite-nar-native").batch_s == 240


def test_the_native_engines_settings_reach_the_pods(monkeypatch):
    """A CALLSCRIBE_NAR_* setting (float8 products, the Triton depthwise kernel, a forced attention
    backend) set where the DAG is parsed reaches a local worker (pipeline.WORKER_ENV); a GPU pod, where
    the engine runs in production, must get it too, or an A/B there changes nothing."""
    from callscribe.kubernetes import operator_kwargs, settings_from_env

    monkeypatch.setenv("CALLSCRIBE_NAR_FP8", "editor")
    monkeypatch.setenv("CALLSCRIBE_NAR_DEPTHWISE_COMPILED", "triton")
    monkeypatch.setenv("CALLSCRIBE_S3_SECRET_KEY", "not-for-the-pod")  # only engine settings pass
    env = {e.name: e.value for e in operator_kwargs(settings_from_env())["env_vars"]}
    assert env["CALLSCRIBE_NAR_FP8"] == "editor" and env["CALLSCRIBE_NAR_DEPTHWISE_COMPILED"] == "triton"
    assert "CALLSCRIBE_S3_SECRET_KEY" not in env
    monkeypatch.delenv("CALLSCRIBE_NAR_FP8")
    env = {e.name: e.value for e in operator_kwargs(settings_from_env())["env_vars"]}
    assert "CALLSCRIBE_NAR_FP8" not in env


def test_the_workers_respawn_setting_reaches_pods_and_local_workers(monkeypatch):
    from callscribe import pipeline
    from callscribe.config import S3Settings
    from callscribe.kubernetes import operator_kwargs, settings_from_env

    monkeypatch.setenv("CALLSCRIBE_WORKER_RESPAWNS", "0")
    env = {e.name: e.value for e in operator_kwargs(settings_from_env())["env_vars"]}
    assert env["CALLSCRIBE_WORKER_RESPAWNS"] == "0"
    local = pipeline.worker_environment(S3Settings(endpoint="localhost:9000", access_key="a", secret_key="b"))
    assert local["CALLSCRIBE_WORKER_RESPAWNS"] == "0"


LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"  # Kubernetes: at most 63 characters


def test_the_pool_label_is_a_valid_label_value_whatever_the_pools_name():
    """An Airflow pool's name may be up to 256 characters of anything ("H100 GPUs (spot)"); the pod's
    `callscribe/pool` label carried it as it was, and the API server refuses a pod with an invalid
    label value (422): every try of every job would fail at its pod's creation."""
    import re

    for pool in ("callscribe_gpu", "H100 GPUs (spot)", "gpu/" + "x" * 80, "-edge-"):
        labels = render_pod(JOB, KubeSettings(pool=pool))["metadata"]["labels"]
        value = labels["callscribe/pool"]
        assert len(value) <= 63 and re.fullmatch(LABEL_VALUE, value), (pool, value)
    assert render_pod(JOB, KubeSettings())["metadata"]["labels"]["callscribe/pool"] == "callscribe_gpu"


def test_tolerations_as_kubernetes_writes_them(monkeypatch):
    """Tolerations are copied from Kubernetes manifests, camelCase (`tolerationSeconds`): the Python
    client's constructor took only snake_case, and a TypeError at parse time took both DAGs of the
    file away, the local one too."""
    monkeypatch.setenv("CALLSCRIBE_K8S_TOLERATIONS", json.dumps([
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoExecute",
         "tolerationSeconds": 30}]))
    pod = render_pod(JOB, settings_from_env())
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert pod["spec"]["tolerations"][1]["tolerationSeconds"] == 30
    monkeypatch.setenv("CALLSCRIBE_K8S_TOLERATIONS", json.dumps([{"key": "x", "bogus": 1}]))
    with pytest.raises(ValueError, match="CALLSCRIBE_K8S_TOLERATIONS"):
        operator_kwargs(settings_from_env())


def test_a_failed_pod_does_not_dump_its_whole_spec_into_the_failure():
    """The provider puts the whole pod (spec, status, every env value) into a failed task's exception
    unless told not to: several KB in the failure message and the run's alert, and whatever a custom
    pod template puts in env. The events and container states are logged; the cause goes to the job's
    failure note (callscribe.pod_task)."""
    assert operator_kwargs(KubeSettings())["log_pod_spec_on_failure"] is False


def _pod_that(waiting: str | None = None, terminated: str | None = None, scheduled: bool = True,
              restarts: int = 0, exit_code: int = 1):
    from kubernetes.client import models as k8s

    state = k8s.V1ContainerState(
        waiting=k8s.V1ContainerStateWaiting(reason=waiting) if waiting else None,
        terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code, reason=terminated) if terminated else None)
    return k8s.V1Pod(status=k8s.V1PodStatus(
        phase="Pending" if waiting or not scheduled else "Failed",
        conditions=[k8s.V1PodCondition(type="PodScheduled", status="True" if scheduled else "False")],
        container_statuses=[k8s.V1ContainerStatus(name="base", image="img", image_id="", ready=False,
                                                  restart_count=restarts, state=state)]))


@pytest.mark.parametrize(("pod", "never"), [
    (dict(scheduled=False), True),  # no free GPU, a quota
    (dict(waiting="ImagePullBackOff"), True),
    (dict(waiting="CreateContainerConfigError"), True),  # a missing secret
    # Past the startup timeout still creating its container: a volume that never attached (the model
    # PVC's Multi-Attach), an image pull slower than the timeout. Nothing of the job ran either.
    (dict(waiting="ContainerCreating"), True),
    (dict(waiting="PodInitializing"), True),  # an init container of the pod template never finished
    (dict(waiting="CrashLoopBackOff", restarts=3), False),  # the worker ran, and crashed
    (dict(waiting="ImagePullBackOff", restarts=1), False),  # it ran once before the pull failed
    (dict(terminated="OOMKilled"), False),  # a call's memory may have done it
    (dict(terminated="Error"), False),
], ids=["unscheduled", "image", "config", "creating", "initializing", "crash-loop", "ran-before", "oom", "error"])
def test_a_pod_that_never_ran_the_worker_is_the_deployments_fault(pod, never):
    from callscribe.pod_task import never_ran

    assert never_ran(_pod_that(**pod)) is never
    assert never_ran(None) is False  # gone: not known either way


@pytest.mark.parametrize(("pod", "before"), [
    # The worker's own failures: a module the image lacks, a setting it refuses, arguments it does not
    # know (2), the store out of reach for the job's manifest. With a job read, it writes its own note.
    (dict(terminated="Error", exit_code=1), True),
    (dict(terminated="Error", exit_code=2), True),
    # The container's command could not be run at all (no python in the image, a wrong entry point).
    (dict(terminated="StartError", exit_code=128), True),
    (dict(terminated="ContainerCannotRun", exit_code=127), True),
    # Killed: a call may have done it (its memory, a crash in a decoder), or stopped from outside.
    (dict(terminated="OOMKilled", exit_code=137), False),
    (dict(terminated="Error", exit_code=139), False),
    (dict(terminated="Error", exit_code=143), False),
    (dict(terminated="Completed", exit_code=0), False),
    (dict(waiting="ImagePullBackOff"), False),  # never ran: never_ran's, not this
], ids=["failed", "arguments", "start-error", "cannot-run", "oom", "segfault", "sigterm", "completed", "waiting"])
def test_a_worker_that_exited_on_its_own_before_its_job_is_the_deployments_fault(pod, before):
    """A pod whose worker exited with a status of its own (not a signal's) and left no failure note
    (job_notes.leave_cause writes one only then) never reached the job: every failure of a job it read
    leaves the worker's own note. So its calls get their attempt back, as for a pod never scheduled."""
    from callscribe.pod_task import exited_before_the_job

    assert exited_before_the_job(_pod_that(**pod)) is before
    assert exited_before_the_job(None) is False
