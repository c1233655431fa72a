#!/usr/bin/env bash
# The wheels the lent GPU machine lacks for `python -m benchmarks.gpu`, into .whl/ at the repo root.
#
# That machine has Python 3.12 with torch, numpy, pandas, pyarrow, safetensors and tokenizers, and
# no package registry: the rest of the engine path's imports travel as cp312 manylinux x86-64
# wheels, at the versions constraints.txt pins, and are installed there with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
# (see docs/benchmarks.md, "GPU check (one call)").
set -euo pipefail
cd "$(dirname "$0")/.."

# The project venv when there is one (make venv), else the python3 on PATH.
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# pydantic (manifests) with its own needs; soundfile + cffi + pycparser and soxr (audio); webrtcvad (chunking).
PACKAGES=(pydantic pydantic_core annotated-types typing-inspection typing_extensions
          soundfile cffi pycparser soxr webrtcvad-wheels)
MAX_MIB=50

# NAME==VERSION for each, from constraints.txt (names compared as pip normalises them).
mapfile -t SPECS < <("$PY" - "${PACKAGES[@]}" <<'PY'
import re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
pins = {}
for line in open("constraints.txt"):
    name, sep, version = line.split("#")[0].strip().partition("==")
    if sep:
        pins[norm(name)] = f"{name}=={version}"
missing = [p for p in sys.argv[1:] if norm(p) not in pins]
if missing:
    sys.exit(f"constraints.txt pins none of: {', '.join(missing)}")
print("\n".join(pins[norm(p)] for p in sys.argv[1:]))
PY
)

# The folder stays out of git without touching the shared .gitignore.
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"

rm -rf .whl  # one version of each: two stop the install there
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${SPECS[@]}"

n=$(find .whl -type f -name '*.whl' | wc -l)
if [ "$n" -ne "${#PACKAGES[@]}" ]; then
    echo "expected ${#PACKAGES[@]} wheels, got $n" >&2
    exit 1
fi
kib=$(du -sk .whl | cut -f1)
ls -1 .whl
echo "$n wheels, $(awk "BEGIN { printf \"%.1f\", $kib / 1024 }") MiB in .whl/"
if [ "$kib" -gt $((MAX_MIB * 1024)) ]; then
    echo "over ${MAX_MIB} MiB: the device call carries at most 64 MiB with the working tree" >&2
    exit 1
fi
