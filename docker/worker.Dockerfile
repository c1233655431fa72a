# The transcription worker: `python -m callscribe.worker --job s3://...`.
# CPU build with the embedded engine (Whisper tiny.en); the Granite worker for GPUs is
# docker/worker-gpu.Dockerfile. Every Python package at the version of constraints.txt;
# the base image from docker/versions.env (checked by tests/unit/test_images.py).
#   docker build -f docker/worker.Dockerfile -t callscribe/worker:0.1.0 .
ARG WORKER_PYTHON=3.11
FROM python:${WORKER_PYTHON}-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1=1.2.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 callscribe

WORKDIR /opt/callscribe
COPY constraints.txt pyproject.toml README.md ./
COPY include ./include
# callscribe.dev (embedded services, demo, bench, parity) is development tooling: deleted
# in the same layer as the install, so no layer of the image holds it.
RUN pip install --no-cache-dir -c constraints.txt ".[embedded]" \
    && python -c "import pathlib, shutil, callscribe; shutil.rmtree(pathlib.Path(callscribe.__file__).parent / 'dev')"

USER 10001
ENTRYPOINT ["python", "-m", "callscribe.worker"]
