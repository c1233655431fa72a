"""Granite Speech 4.1 2B-NAR through transformers (the model's published remote code).

Production engine for H100 workers. The checkpoint is read from a local folder only
(``CALLSCRIBE_GRANITE_MODEL_DIR``, a read-only volume in the pod); nothing is downloaded.
The model gives no timestamps: each chunk (speech regions packed to at most 30 s) yields
one segment, which the pipeline places whole in the region it overlaps most
(``transcription.place``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from callscribe.engines.base import EngineOutOfMemory, Segment, TorchEngine
from callscribe.engines.device import choose_device
from callscribe.engines.tokens import ItemOutput

log = logging.getLogger(__name__)

HUB_ID = "ibm-granite/granite-speech-4.1-2b-nar"
# The revision the Open ASR Leaderboard evaluates; fetch exactly this one (see docs/granite.md).
PINNED_REVISION = "99a4df9007ac5682f9daa093fb7008ff606e9a5d"
DEFAULT_MODEL_DIR = "/models/granite-speech-4.1-2b-nar"


class ModelDirError(FileNotFoundError):
    """The model folder is missing or incomplete; the message names what is missing."""


def missing_weights(path: Path) -> list[str]:
    """The safetensors files the folder lacks: every shard its index names, or the single file."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        return [s for s in shards if not (path / s).exists()]
    if not (path / "model.safetensors").exists():
        return ["model.safetensors (or model.safetensors.index.json and its shards)"]
    return []


def check_model_dir(path: Path) -> list[str]:
    """Files the folder lacks for an offline load (empty when complete)."""
    if not path.is_dir():
        return [f"the folder itself ({path})"]
    missing: list[str] = []
    config_path = path / "config.json"
    if not config_path.exists():
        missing.append("config.json")
    else:
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            missing.append(f"a readable config.json ({exc})")
            config = {}
        # Remote code: every module that auto_map names must be present.
        for target in (config.get("auto_map") or {}).values():
            ref = target[0] if isinstance(target, list) else target
            module = ref.split("--")[-1].rsplit(".", 1)[0] + ".py"
            if not (path / module).exists():
                missing.append(module)
    missing.extend(missing_weights(path))
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        missing.append("tokenizer.json")
    if not any((path / f).exists() for f in ("preprocessor_config.json", "processor_config.json")):
        missing.append("preprocessor_config.json")
    return sorted(set(missing), key=missing.index)


def model_dir() -> Path:
    return Path(os.environ.get("CALLSCRIBE_GRANITE_MODEL_DIR", DEFAULT_MODEL_DIR))


def choose_attention(device: str, flash_available: bool | None = None) -> str:
    """flash_attention_2 on CUDA when flash-attn is installed; otherwise sdpa, loudly.

    SDPA builds a dense block-diagonal mask for the packed batch, and throughput collapses
    at large batches: a silent fallback would cost most of the GPU.
    """
    if flash_available is None:
        flash_available = importlib.util.find_spec("flash_attn") is not None
    if device.startswith("cuda") and flash_available:
        return "flash_attention_2"
    reason = "flash-attn is not installed" if device.startswith("cuda") else f"device is {device}"
    log.warning("=" * 72)
    log.warning("Granite NAR: falling back to SDPA attention (%s); expect far lower throughput", reason)
    log.warning("=" * 72)
    return "sdpa"


class GraniteNarEngine(TorchEngine):
    name = "granite-nar"

    def __init__(self, path: Path | None = None, device: str | None = None):
        import torch

        # First: a pod that asked for a GPU (CALLSCRIBE_DEVICE) fails here, before any loading.
        self.device = choose_device(device)
        from transformers import AutoModel, AutoProcessor

        self.path = path or model_dir()
        missing = check_model_dir(self.path)
        if missing:
            raise ModelDirError(
                f"Granite model folder {self.path} is incomplete; missing: {', '.join(missing)}. "
                f"Download {HUB_ID} at revision {PINNED_REVISION} into it (see docs/granite.md)."
            )
        self.torch = torch
        self.attention = choose_attention(self.device)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.processor = AutoProcessor.from_pretrained(self.path, trust_remote_code=True, local_files_only=True)
        self.model = AutoModel.from_pretrained(
            self.path, trust_remote_code=True, local_files_only=True, dtype=dtype,
            attn_implementation=self.attention,
        ).to(self.device).eval()
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        log.info("Granite NAR loaded from %s on %s (%s, %s)", self.path, self.device, dtype, self.attention)

    def run(self, prepared: Any) -> list[list[Segment]]:
        tensors, durations = prepared
        torch = self.torch
        try:
            with torch.inference_mode():
                audio = [t.to(self.device, non_blocking=True) for t in tensors]
                inputs = self.processor(audio, device=self.device)
                out = self.model.transcribe(**inputs)
                texts = self.processor.batch_decode(out.preds)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise EngineOutOfMemory(str(exc)) from exc
        return [[Segment(0.0, d, t.strip())] if t.strip() else [] for t, d in zip(texts, durations, strict=True)]

    def token_outputs(self, batch: list[np.ndarray]) -> list[ItemOutput]:
        """Token ids and text per chunk, and logits when the remote code returns them (parity)."""
        tensors, _ = self.prepare(batch)
        with self.torch.inference_mode():
            inputs = self.processor([t.to(self.device) for t in tensors], device=self.device)
            out = self.model.transcribe(**inputs)
        ids = [[int(x) for x in p] for p in out.preds]
        texts = [t.strip() for t in self.processor.batch_decode(out.preds)]
        logits = getattr(out, "logits", None)
        per_item = list(logits) if isinstance(logits, list | tuple) and len(logits) == len(ids) else [None] * len(ids)
        return [ItemOutput(i, t, lg.float().cpu() if lg is not None else None)
                for i, t, lg in zip(ids, texts, per_item, strict=True)]
