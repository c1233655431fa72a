# The transcription worker: `python -m callscribe.worker --job s3://...`.
# CPU build with the embedded engine; the GPU (Granite) image builds on a CUDA base
# and adds torch, flash-attn and transformers (see the Granite issue).
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1=1.2.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 callscribe

WORKDIR /opt/callscribe
COPY constraints.txt pyproject.toml README.md ./
COPY include ./include
RUN pip install --no-cache-dir -c constraints.txt ".[embedded]"

USER 10001
ENTRYPOINT ["python", "-m", "callscribe.worker"]
