"""The transcribe step as a KubernetesPodOperator (``CALLSCRIBE_TRANSCRIBE_MODE=kubernetes``).

The pod runs the same command as local mode (``python -m callscribe.worker --job URI``);
object-store credentials reach it from a Kubernetes secret, never through arguments.
"""

from __future__ import annotations

import os


def transcribe_pod_operator(pool: str):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    return KubernetesPodOperator.partial(
        task_id="transcribe",
        name="callscribe-worker",
        namespace=os.environ.get("CALLSCRIBE_K8S_NAMESPACE", "callscribe"),
        image=os.environ.get("CALLSCRIBE_WORKER_IMAGE", "callscribe-worker:latest"),
        cmds=["python", "-m", "callscribe.worker"],
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(
            name=os.environ.get("CALLSCRIBE_K8S_S3_SECRET", "callscribe-s3")))],
        container_resources=k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": "1"}),
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        startup_timeout_seconds=900,
        pool=pool,
    )
