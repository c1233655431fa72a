"""The transcribe step as a KubernetesPodOperator (the ``transcribe_calls_k8s`` DAG).

The pod runs the same command as local mode (``python -m callscribe.worker --job URI``) on
one H100: a GPU limit, an H100 node selector and tolerations, the model on a read-only
PVC, object-store credentials from a Kubernetes secret (``envFrom``: never in arguments,
never in logs), a non-root read-only container. The base pod (security context, /tmp,
offline settings) is package data, ``callscribe/k8s/worker-pod-template.yaml``, read from
the installed package; a missing template is an error, never a pod without it.

Deferrable, so waiting pods hold no worker slot; the GPU pool counts deferred tasks so its
slots match the GPUs. No XCom sidecar: the shard's place is fixed by the job manifest,
which is what ``load`` reads. All of it is configuration: ``CALLSCRIBE_K8S_*`` variables,
read by :func:`settings_from_env`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from callscribe.alerts import task_timeout

TEMPLATE_RESOURCE = "k8s/worker-pod-template.yaml"  # inside the callscribe package
MODEL_MOUNT = "/models"
# The worker writes the shard URI to a result file; without the sidecar's /airflow/xcom
# volume the only writable place is the /tmp emptyDir (the root filesystem is read-only).
RESULT_PATH = "/tmp/callscribe-result.json"
# torch.compile's caches (inductor's compiled graphs and Triton kernels). On a shared volume a pod
# compiles from the cache in about 10 s instead of about 16 s cold (docs/benchmarks.md); without
# one they go to the pod's /tmp and every pod compiles once.
COMPILE_CACHE_MOUNT = "/cache/torch-compile"


class PodTemplateMissing(FileNotFoundError):
    """The worker pod's base template is not where it should be: refuse to build a pod without it."""


@dataclass(frozen=True)
class KubeSettings:
    image: str = "callscribe/worker-gpu:0.1.0"
    namespace: str = "callscribe"
    pool: str = "callscribe_gpu"
    gpus: int = 1
    cpu: str = "8"
    memory: str = "64Gi"
    node_selector: dict[str, str] = field(default_factory=lambda: {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    tolerations: list[dict] = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    model_pvc: str = "granite-speech-models"
    model_subdir: str = "granite-speech-4.1-2b-nar"
    compile_cache_pvc: str | None = None  # a ReadWriteMany claim for torch.compile's caches; None: /tmp
    s3_secret: str = "callscribe-s3"
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    priority_class: str | None = None
    startup_timeout_s: int = 1800  # image pulls of several GB and GPU node scale-up
    active_deadline_s: int = 4 * 3600
    pod_template: str | None = None  # a file replacing the packaged template; None: the packaged one
    kubernetes_conn_id: str = "kubernetes_default"
    # The native engine's settings (CALLSCRIBE_NAR_*) and the worker's own (WORKER_SETTINGS) where the
    # DAG is parsed: a local worker gets them through pipeline.WORKER_ENV, a pod through its
    # environment. None is a secret.
    engine_settings: tuple[tuple[str, str], ...] = ()


# The worker's settings that follow it into a pod, beside the engine's.
WORKER_SETTINGS = frozenset({"CALLSCRIBE_WORKER_RESPAWNS"})


def _json_env(name: str, default):
    raw = os.environ.get(name)
    return json.loads(raw) if raw else default


def _list_env(name: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in os.environ.get(name, "").split(",") if x.strip())


def settings_from_env() -> KubeSettings:
    d = KubeSettings()
    env = os.environ.get
    return KubeSettings(
        image=env("CALLSCRIBE_WORKER_IMAGE", d.image),
        namespace=env("CALLSCRIBE_K8S_NAMESPACE", d.namespace),
        pool=env("CALLSCRIBE_GPU_POOL", d.pool),
        gpus=int(env("CALLSCRIBE_K8S_GPUS", d.gpus)),
        cpu=env("CALLSCRIBE_K8S_CPU", d.cpu),
        memory=env("CALLSCRIBE_K8S_MEMORY", d.memory),
        node_selector=_json_env("CALLSCRIBE_K8S_NODE_SELECTOR", d.node_selector),
        tolerations=_json_env("CALLSCRIBE_K8S_TOLERATIONS", d.tolerations),
        model_pvc=env("CALLSCRIBE_K8S_MODEL_PVC", d.model_pvc),
        model_subdir=env("CALLSCRIBE_K8S_MODEL_SUBDIR", d.model_subdir),
        compile_cache_pvc=env("CALLSCRIBE_K8S_COMPILE_CACHE_PVC") or None,
        s3_secret=env("CALLSCRIBE_K8S_S3_SECRET", d.s3_secret),
        service_account=env("CALLSCRIBE_K8S_SERVICE_ACCOUNT") or None,
        image_pull_secrets=_list_env("CALLSCRIBE_K8S_IMAGE_PULL_SECRETS"),
        priority_class=env("CALLSCRIBE_K8S_PRIORITY_CLASS") or None,
        startup_timeout_s=int(env("CALLSCRIBE_K8S_STARTUP_TIMEOUT_S", d.startup_timeout_s)),
        active_deadline_s=int(env("CALLSCRIBE_K8S_ACTIVE_DEADLINE_S", d.active_deadline_s)),
        pod_template=env("CALLSCRIBE_K8S_POD_TEMPLATE") or None,
        kubernetes_conn_id=env("CALLSCRIBE_K8S_CONN_ID", d.kubernetes_conn_id),
        engine_settings=tuple(sorted((k, v) for k, v in os.environ.items()
                                     if k.startswith("CALLSCRIBE_NAR_") or k in WORKER_SETTINGS)),
    )


def pod_template(path: str | None = None) -> dict:
    """The base pod as a dict: the packaged template, or the file at ``path``.

    The provider only logs a warning for a template file it cannot find and builds the pod
    without it (no security context, the token mounted); here that is an error.
    """
    where = path or f"callscribe/{TEMPLATE_RESOURCE} (package data)"
    try:
        text = Path(path).read_text() if path else resources.files("callscribe").joinpath(TEMPLATE_RESOURCE).read_text()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise PodTemplateMissing(f"worker pod template not found: {where}") from exc
    pod = yaml.safe_load(text)
    if not isinstance(pod, dict) or pod.get("kind") != "Pod":
        raise PodTemplateMissing(f"worker pod template {where} is not a Pod manifest")
    return pod


def whole_cpus(cpu: str) -> int:
    """The whole CPUs of a Kubernetes CPU quantity ("8", "7500m", "2.5"), at least 1."""
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(value))


def label_value(value: str) -> str:
    """``value`` as a valid Kubernetes label value (at most 63 of [A-Za-z0-9_.-], alphanumeric at both
    ends), as the provider makes its own labels (run ids of backfills, long ones): an Airflow pool's
    name may be anything, and the API server refuses the whole pod for one invalid label."""
    from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value

    return make_safe_label_value(value)


def tolerations(raw: list[dict]) -> list:
    """CALLSCRIBE_K8S_TOLERATIONS as client objects. The entries are written as in a manifest
    (camelCase: ``tolerationSeconds``); the client's constructors take snake_case only. A key
    neither knows is an error that names the setting."""
    from kubernetes.client import models as k8s

    attrs = k8s.V1Toleration.attribute_map  # snake_case -> camelCase
    camel = {v: k for k, v in attrs.items()}
    out = []
    for t in raw:
        unknown = sorted(k for k in t if k not in attrs and k not in camel)
        if unknown:
            raise ValueError(f"CALLSCRIBE_K8S_TOLERATIONS: unknown toleration field(s) {unknown} in {t}")
        out.append(k8s.V1Toleration(**{camel.get(k, k): v for k, v in t.items()}))
    return out


def operator_kwargs(s: KubeSettings) -> dict:
    """Everything the operator needs except the task id and the per-job arguments."""
    from kubernetes.client import models as k8s

    resources_ = {"nvidia.com/gpu": str(s.gpus), "cpu": s.cpu, "memory": s.memory}
    env = {
        "CALLSCRIBE_GRANITE_MODEL_DIR": f"{MODEL_MOUNT}/{s.model_subdir}",
        # A pod that asked for a GPU must not quietly run the model on its CPU: the engine
        # raises when CALLSCRIBE_DEVICE names cuda and torch sees no GPU.
        "CALLSCRIBE_DEVICE": "cuda" if s.gpus > 0 else "cpu",
        "CALLSCRIBE_XCOM_PATH": RESULT_PATH,
        "TORCHINDUCTOR_CACHE_DIR": COMPILE_CACHE_MOUNT if s.compile_cache_pvc else "/tmp/torch-compile",
        # Triton's own cache: kernels launched outside inductor's graphs (the depthwise kernel).
        "TRITON_CACHE_DIR": f"{COMPILE_CACHE_MOUNT}/triton" if s.compile_cache_pvc else "/tmp/triton-cache",
        # The container is held to its CPUs (a quota) but sees every core of the node: torch's threads and
        # inductor's compile workers (up to 32 processes) would be sized to the node, and throttled.
        "OMP_NUM_THREADS": str(whole_cpus(s.cpu)),
        "TORCHINDUCTOR_COMPILE_THREADS": str(whole_cpus(s.cpu)),
    } | dict(s.engine_settings)
    volumes = [k8s.V1Volume(name="models", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
        claim_name=s.model_pvc, read_only=True))]
    mounts = [k8s.V1VolumeMount(name="models", mount_path=MODEL_MOUNT, read_only=True)]
    if s.compile_cache_pvc:
        volumes.append(k8s.V1Volume(name="compile-cache", persistent_volume_claim=(
            k8s.V1PersistentVolumeClaimVolumeSource(claim_name=s.compile_cache_pvc))))
        mounts.append(k8s.V1VolumeMount(name="compile-cache", mount_path=COMPILE_CACHE_MOUNT))
    return dict(
        kubernetes_conn_id=s.kubernetes_conn_id,
        namespace=s.namespace,
        name="callscribe-worker",
        image=s.image,
        cmds=["python", "-m", "callscribe.worker"],
        # A dict read here, when the DAG is parsed, not a path the provider reads later:
        # a missing template fails the parse instead of yielding a pod without it.
        pod_template_dict=pod_template(s.pod_template),
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in env.items()],
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=s.s3_secret))],
        container_resources=k8s.V1ResourceRequirements(requests=resources_, limits=resources_),
        node_selector=s.node_selector,
        tolerations=tolerations(s.tolerations),
        volumes=volumes,
        volume_mounts=mounts,
        service_account_name=s.service_account,
        image_pull_secrets=[k8s.V1LocalObjectReference(name=n) for n in s.image_pull_secrets] or None,
        priority_class_name=s.priority_class,
        labels={"app.kubernetes.io/name": "callscribe-worker", "callscribe/pool": label_value(s.pool)},
        # No sidecar (its image comes from Docker Hub without resource requests): the shard's
        # URI is fixed by the job manifest, and `load` reads the manifests, not this XCom.
        do_xcom_push=False,
        get_logs=True,
        logging_interval=30,
        deferrable=True,
        # Failed pods are deleted too: their logs and, on failure, their events and container
        # states are copied into the task log before the clean-up, and a kept pod only holds
        # the namespace's pod quota until someone deletes it by hand.
        on_finish_action="delete_pod",
        log_events_on_failure=True,
        # Not the whole pod (spec, status, every env value) in the task's failure message: the events
        # and container states above say why it failed, and the job's failure note carries the cause.
        log_pod_spec_on_failure=False,
        # A worker killed before it writes its cause (OOM-killed, SIGKILL) shows its log's end instead.
        termination_message_policy="FallbackToLogsOnError",
        startup_timeout_seconds=s.startup_timeout_s,
        active_deadline_seconds=s.active_deadline_s,
        pool=s.pool,
        retries=2,
        # On timeout the operator's on_kill deletes the pod, so no GPU keeps working for nobody.
        execution_timeout=task_timeout("transcribe"),
    )


def transcribe_pod_operator(settings: KubeSettings | None = None):
    """A partial operator for the DAG, mapped over job arguments."""
    from callscribe.pod_task import TranscribePodOperator

    return TranscribePodOperator.partial(task_id="transcribe", **operator_kwargs(settings or settings_from_env()))


def render_pod(job_uri: str, settings: KubeSettings | None = None) -> dict:
    """The pod manifest the operator would create for one job, as a Kubernetes dict (camelCase)."""
    from kubernetes.client import ApiClient

    from callscribe.pod_task import TranscribePodOperator

    transcribe = TranscribePodOperator(task_id="transcribe", arguments=["--job", job_uri],
                                       **operator_kwargs(settings or settings_from_env()))
    pod = transcribe.build_pod_request_obj(dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)
