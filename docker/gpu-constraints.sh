#!/bin/sh
# Prints the GPU worker image's pip constraints: constraints.txt, then docker/gpu-constraints.txt.
# constraints.txt pins torch's CPU build ("2.13.0+cpu", what development and CI install);
# the image needs the CUDA build of the same version, which is PyPI's Linux wheel, so the
# "+cpu" label is dropped ("torch==2.13.0" accepts that wheel, and nothing else).
# Usage: gpu-constraints.sh constraints.txt gpu-constraints.txt > constraints-gpu.txt
set -eu
sed -E 's/^(torch==[^+[:space:]]+)\+cpu[[:space:]]*$/\1/' "$1"
cat "$2"
