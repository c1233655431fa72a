"""The worker pod as the shipped package renders it: wheel built, installed (not editable)
into a fresh virtualenv, run from outside the checkout.

The Airflow image installs the package the same way, so a setting that lives only in the
source tree (a file found by walking up from the package) shows up here as missing. The
new environment reuses the project venv's third-party packages through a ``.pth`` line,
because nothing may be downloaded; that line is a plain path, so the editable install's own
``.pth`` there is not processed and the checkout's ``include/`` never reaches ``sys.path``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"
JOB = "s3://calls/_callscribe/runs/r/jobs/job-00007.json"
TEMPLATE_IN_WHEEL = "callscribe/k8s/worker-pod-template.yaml"


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("wheel")
    # Build from a copy of the files git would see (tracked and new, not ignored): an in-tree
    # build reuses build/lib, where a module deleted from the source still sits and ships.
    src = work / "src"
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO).split("\0")
    for rel in filter(None, listed):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(dist), "."], src)
    wheel = next(dist.glob("callscribe-*.whl"))

    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).strip())
    (site / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("CALLSCRIBE_K8S_")
           and k not in ("CALLSCRIBE_WORKER_IMAGE", "CALLSCRIBE_GPU_POOL")}
    env["AIRFLOW_HOME"] = str(work / "airflow")  # nothing of the test profile's Airflow needed
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # --ignore-installed: the project venv's editable callscribe is visible and must not count.
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], work, env)
    return {"work": work, "venv": venv, "py": py, "wheel": wheel, "env": env}


def _worker(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


def assert_shipped_pod(pod: dict) -> None:
    """What the base template and the operator settings must give every worker pod."""
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    spec, c = pod["spec"], _worker(pod)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    vols = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "emptyDir" in vols[mounts["/tmp"]["name"]]
    assert vols["models"]["persistentVolumeClaim"]["readOnly"] is True and mounts["/models"]["readOnly"] is True
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1" and env["HOME"] == "/tmp"
    assert env["CALLSCRIBE_DEVICE"] == "cuda"
    assert env["CALLSCRIBE_GRANITE_MODEL_DIR"].startswith("/models/")
    assert [x["name"] for x in spec["containers"]] == ["base"]  # no XCom sidecar
    assert c["args"] == ["--job", JOB]


def test_the_wheel_carries_the_pod_template(installed):
    with zipfile.ZipFile(installed["wheel"]) as whl:
        assert TEMPLATE_IN_WHEEL in whl.namelist()


def test_the_venv_imports_the_installed_package_not_the_checkout(installed):
    out = _run([str(installed["py"]), "-c", "import callscribe, json, sys; print(json.dumps("
                "{'file': callscribe.__file__, 'path': sys.path}))"], installed["work"], installed["env"])
    seen = json.loads(out)
    assert Path(seen["file"]).is_relative_to(installed["venv"]), seen["file"]
    assert str(REPO / "include") not in seen["path"]


def test_pod_spec_command_from_the_installed_package(installed):
    out = _run([str(installed["venv"] / "bin" / "callscribe"), "pod-spec", "--job", JOB],
               installed["work"], installed["env"])
    assert_shipped_pod(yaml.safe_load(out))


def test_operator_dry_run_from_the_installed_package(installed):
    code = ("import json, callscribe.kubernetes as k; "
            f"print(json.dumps({{'module': k.__file__, 'pod': k.render_pod({JOB!r})}}))")
    out = _run([str(installed["py"]), "-c", code], installed["work"], installed["env"])
    seen = json.loads(out.strip().splitlines()[-1])
    assert Path(seen["module"]).is_relative_to(installed["venv"])
    assert_shipped_pod(seen["pod"])


def test_the_installed_package_refuses_to_build_a_pod_without_its_template(installed):
    # The provider would warn and build a bare pod; the shipped package must raise instead.
    site = Path(_run([str(installed["py"]), "-c", "import callscribe, os; print(os.path.dirname(callscribe.__file__))"],
                     installed["work"], installed["env"]).strip())
    template = site / "k8s" / "worker-pod-template.yaml"
    moved = template.with_suffix(".moved")
    template.rename(moved)
    try:
        out = subprocess.run([str(installed["venv"] / "bin" / "callscribe"), "pod-spec", "--job", JOB],
                             cwd=installed["work"], env=installed["env"], capture_output=True, text=True, timeout=300)
    finally:
        moved.rename(template)
    assert out.returncode != 0
    assert "PodTemplateMissing" in out.stderr and "worker pod template not found" in out.stderr
    assert "kind: Pod" not in out.stdout


def test_the_installed_package_works_without_its_development_package(installed):
    # The images delete callscribe/dev after installing (docker/*.Dockerfile); here the same
    # is done to the installed wheel, then put back for the other tests of this module.
    cli = str(installed["venv"] / "bin" / "callscribe")
    site = Path(_run([str(installed["py"]), "-c", "import callscribe, os; print(os.path.dirname(callscribe.__file__))"],
                     installed["work"], installed["env"]).strip())
    dev = site / "dev"
    assert (dev / "services.py").is_file()  # the wheel ships it; the images remove it
    aside = installed["work"] / "dev-aside"
    dev.rename(aside)
    try:
        # Every runtime module imports (an import of callscribe.dev at module level fails here).
        code = ("import importlib, pkgutil, callscribe; "
                "names = [m.name for m in pkgutil.walk_packages(callscribe.__path__, 'callscribe.')]; "
                "[importlib.import_module(n) for n in names]; print(' '.join(names))")
        names = set(_run([str(installed["py"]), "-c", code], installed["work"], installed["env"]).split())
        assert {"callscribe.worker", "callscribe.pipeline", "callscribe.kubernetes", "callscribe.cli",
                "callscribe.engines.granite_native"} <= names, names
        assert not any(n.startswith("callscribe.dev") for n in names)

        out = _run([cli, "pod-spec", "--job", JOB], installed["work"], installed["env"])
        assert_shipped_pod(yaml.safe_load(out))

        for command in (["demo"], ["services", "up"], ["bench"], ["ui"]):
            res = subprocess.run([cli, *command], cwd=installed["work"], env=installed["env"],
                                 capture_output=True, text=True, timeout=300)
            assert res.returncode == 1, (command, res.stdout, res.stderr)
            assert res.stderr.strip() == (f"callscribe {command[0]} needs the development install: "
                                          "pip install -e '.[dev]'"), res.stderr
            assert not (installed["work"] / ".callscribe").exists()  # no embedded state made on the way
    finally:
        aside.rename(dev)
