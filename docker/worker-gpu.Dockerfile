# The Granite transcription worker for H100 nodes:
#   python -m callscribe.worker --job s3://...
#   docker build -f docker/worker-gpu.Dockerfile -t callscribe/worker-gpu:0.1.0 .
#
# Versions come from three files, each version in one of them, checked against each other
# by tests/unit/test_images.py: docker/versions.env (CUDA, torch, transformers: the ARG
# defaults below), constraints.txt (every Python package the project uses) and
# docker/gpu-constraints.txt (what only this image installs: flash-attn, its build tools).
# Every pip command runs with both, merged by docker/gpu-constraints.sh.
#
# torch: PyPI's Linux wheel of the version constraints.txt pins is the CUDA 13.0 build,
# so no PyTorch index is needed (constraints.txt names the CPU build, "+cpu", that
# development uses; gpu-constraints.sh drops that label). It needs an NVIDIA driver
# >= 580 on the node. flash-attn is compiled in a builder stage for exactly that torch and
# CUDA, for Hopper only (FLASH_ATTN_CUDA_ARCHS=90: minutes, not hours).
#
# The model is not in the image: it is mounted read-only at /models (a PVC); see the
# worker pod template (package data, `callscribe pod-spec` renders it).

ARG CUDA_VERSION=13.0.1

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS flash-attn
ARG TORCH_VERSION=2.13.0
ENV FLASH_ATTN_CUDA_ARCHS=90 FLASH_ATTENTION_FORCE_BUILD=TRUE MAX_JOBS=8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12=3.12.* python3.12-venv=3.12.* python3.12-dev=3.12.* git=1:2.43.* \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY constraints.txt docker/gpu-constraints.txt docker/gpu-constraints.sh ./
# --no-build-isolation: flash-attn compiles against the torch installed here, not a fresh one.
RUN sh gpu-constraints.sh constraints.txt gpu-constraints.txt > constraints-gpu.txt \
    && python3.12 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir -c constraints-gpu.txt \
        "torch==${TORCH_VERSION}" packaging psutil ninja setuptools wheel \
    && /opt/build/bin/pip wheel --no-cache-dir --no-build-isolation --no-deps -c constraints-gpu.txt \
        -w /wheels flash-attn

# CUDA's libraries come with torch's wheels; the base image adds only what the NVIDIA
# container runtime needs to expose the GPU. The native engine compiles on CUDA (torch.compile),
# and Triton builds its launcher with a C compiler against Python's headers when the pod first runs
# a kernel: gcc, libc6-dev and python3.12-dev are for that (without them every compiled warm-up fails).
FROM nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG TRANSFORMERS_VERSION=5.24.0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12=3.12.* python3.12-venv=3.12.* libsndfile1=1.2.* \
        gcc=4:13.2.* libc6-dev=2.39-* python3.12-dev=3.12.* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 callscribe \
    && useradd --uid 10001 --gid 10001 --create-home callscribe \
    && python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    CALLSCRIBE_GRANITE_MODEL_DIR=/models/granite-speech-4.1-2b-nar
WORKDIR /opt/callscribe
COPY --from=flash-attn /build/constraints-gpu.txt ./
# The flash-attn wheel is mounted, not copied, so it adds no layer of its own.
RUN --mount=type=bind,from=flash-attn,source=/wheels,target=/wheels \
    pip install --no-cache-dir -c constraints-gpu.txt \
        "torch==${TORCH_VERSION}" "transformers==${TRANSFORMERS_VERSION}" /wheels/flash_attn-*.whl
COPY pyproject.toml README.md ./
COPY include ./include
# callscribe.dev (embedded services, demo, bench, parity) is development tooling: deleted
# in the same layer as the install, so no layer of the image holds it.
RUN pip install --no-cache-dir -c constraints-gpu.txt ".[gpu]" \
    && python -c "import pathlib, shutil, callscribe; shutil.rmtree(pathlib.Path(callscribe.__file__).parent / 'dev')"
USER 10001:10001
ENTRYPOINT []
CMD ["python", "-m", "callscribe.worker", "--help"]
