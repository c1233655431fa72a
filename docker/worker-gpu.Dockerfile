# The Granite transcription worker for H100 nodes:
#   python -m callscribe.worker --job s3://...
# torch (CUDA 12.8 build), a flash-attn wheel compiled here for exactly that torch and CUDA,
# pinned transformers, the callscribe package. The model is not in the image: it is
# mounted read-only at /models (a PVC), see docker/k8s/worker-pod-template.yaml.
#
#   docker build -f docker/worker-gpu.Dockerfile -t callscribe/worker-gpu:0.1.0 .

ARG CUDA_IMAGE_TAG=12.8.1-cudnn-devel-ubuntu24.04
ARG CUDA_RUNTIME_TAG=12.8.1-cudnn-runtime-ubuntu24.04

FROM nvidia/cuda:${CUDA_IMAGE_TAG} AS flash-attn
ARG TORCH_VERSION=2.9.1
ARG FLASH_ATTN_VERSION=2.8.3
# Hopper only: compiling for one architecture keeps the build to minutes, not hours.
ENV TORCH_CUDA_ARCH_LIST="9.0" FLASH_ATTENTION_FORCE_BUILD=TRUE MAX_JOBS=8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12=3.12.* python3.12-venv=3.12.* python3.12-dev=3.12.* git=1:2.43.* \
    && rm -rf /var/lib/apt/lists/*
RUN python3.12 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cu128 \
    && /opt/build/bin/pip install --no-cache-dir packaging==25.0 ninja==1.13.0 wheel==0.45.1 psutil==7.1.3 \
    && /opt/build/bin/pip wheel --no-cache-dir --no-build-isolation --no-deps -w /wheels "flash-attn==${FLASH_ATTN_VERSION}"

FROM nvidia/cuda:${CUDA_RUNTIME_TAG}
ARG TORCH_VERSION=2.9.1
ARG TRANSFORMERS_VERSION=5.5.3
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12=3.12.* python3.12-venv=3.12.* libsndfile1=1.2.* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 callscribe \
    && useradd --uid 10001 --gid 10001 --create-home callscribe \
    && python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    CALLSCRIBE_GRANITE_MODEL_DIR=/models/granite-speech-4.1-2b-nar
COPY --from=flash-attn /wheels /wheels
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cu128 \
    && pip install --no-cache-dir /wheels/*.whl "transformers==${TRANSFORMERS_VERSION}" \
    && rm -rf /wheels
WORKDIR /opt/callscribe
COPY pyproject.toml README.md ./
COPY include ./include
RUN pip install --no-cache-dir .
USER 10001:10001
ENTRYPOINT []
CMD ["python", "-m", "callscribe.worker", "--help"]
