"""The one-call GPU check of the native Granite NAR engine (random weights), in under 4 minutes.

    python -m benchmarks.gpu [--md PATH] [--out PATH] [--no-compile] [--budget-s 230]
    python -m benchmarks.gpu --compile-tunings default,default@3840,default+fp8-editor [--out PATH] [--md PATH]
    python -m benchmarks.gpu --smoke [--md PATH] [--out PATH]

On a bare CUDA machine with torch and the wheels of scripts/gpu_wheels.sh (docs/benchmarks.md,
"GPU check (one call)"), in one process: the card, torch and the editor's attention backend
(checked against an fp32 reference); model build time and the first batch after it; a
fixed-shape sweep (32/128/256 x 30 s, bf16, eager); the worker's own path on real chunks
through `run_batches`: a 10-minute stereo call (the sample call tiled) chunked as the engine's
chunking packs it (chunking_for) and as the chunker cut it before packing (BEFORE_PACKING, one
chunk per speech region), each repeated to about 7,200 s of audio (two batches), so the two figures say what
packing buys on the card; eager against torch.compile; peak GPU memory; the top 15 CUDA
kernels of one batch. A time budget skips what would overrun it, with a note. Writes
benchmarks/gpu-results.json (after every section, so a cut-off run keeps what it measured) and
prints a Markdown table.

``--smoke`` runs the same code on the CPU with the tiny model in seconds and writes to a
temporary folder unless told otherwise: the unit tests run it.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks import parity
from benchmarks.data import tiled_call
from benchmarks.heldout import BEFORE_PACKING
from callscribe import engines
from callscribe.audio import TARGET_SR, Decoded
from callscribe.batching import JobSizing
from callscribe.chunking import ChunkingParams, chunking_for
from callscribe.dev.bench import cpu_model, machine_info, run_throughput, speech_chunks
from callscribe.engines.granite_native import COMPILE_TUNING
from callscribe.engines.nar.fp8 import FP8_PARTS
from callscribe.engines.nar.fuse import COMPILED_DEPTHWISE, ENV_DEPTHWISE_COMPILED
from callscribe.engines.nar.modeling import ENCODER_STREAMS, STAGE_PREFIX
from callscribe.engines.nar.packed import (
    BACKENDS,
    ENV_FORCE,
    PROBE_TOLERANCE,
    attention_backend,
    cu_seqlens_for,
    facts_for,
    flash_available,
    grouped_views,
    per_item_attention,
    repeat_kv,
    reset_choice,
    torch_varlen_kernel,
    varlen_attention,
)
from callscribe.transcription import chunk_all, run_batches

log = logging.getLogger("benchmarks.gpu")

ENGINE = "granite-nar-native"
OUT = Path(__file__).resolve().parent / "gpu-results.json"
SMOKE_OUT = Path(tempfile.gettempdir()) / "callscribe-gpu-smoke" / "gpu-results.json"
TOP_KERNELS = 15
GIB = 2**30
# --compile-tunings: seconds from process start for all variants (four default-like ones, or two
# with an autotune), inside the device tool's 600 s per command.
TUNINGS_BUDGET_S = 540.0


@dataclass(frozen=True)
class Plan:
    size: str  # model configuration
    sweep: tuple[int, ...]  # batch sizes of chunk_s chunks
    ref_batch: int  # the batch of the first-batch latency, the profile and the compiled run
    chunk_s: float
    real_call_s: float  # the long stereo call chunked for the real-chunk figures (the sample call tiled)
    real_audio_s: float  # its chunks, repeated (whole) to about this many audio seconds, per chunking
    job_audio_s: float  # a local worker's job at its cap (JobSizing.cap_s): the real chunks' whole-job figure
    batch_audio_s: float  # run_batches' audio budget per batch (the job's batch_audio_s)
    timed: int  # timed batches (or passes) per figure, after `warmup`
    warmup: int
    budget_s: float  # wall seconds from process start
    attn_heads: tuple[int, int, int]  # heads, kv heads, head dim of the attention check (the editor's)
    attn_lengths: tuple[int, ...]  # packed items of the attention check (an editor batch's lengths)
    cpu_threads: int | None = None  # torch's CPU threads during the check (None: as they are)
    token_sample: int = 96  # real chunks whose token ids are compared, compiled against eager


# real_audio_s: two batches' worth (3,840 s each), so the reader's overlap with the GPU shows;
# job_audio_s: what the pipeline puts in one local worker's job at most (four batches; a GPU pod's
# job holds up to 200 h for the Granite engines, where the first batch weighs less still).
GPU = Plan(size="full", sweep=(32, 128, 256), ref_batch=128, chunk_s=30.0, real_call_s=600.0, real_audio_s=7200.0,
           job_audio_s=JobSizing().cap_s, batch_audio_s=3840.0, timed=3, warmup=1, budget_s=230.0,
           attn_heads=(16, 4, 128), attn_lengths=(541, 300, 97, 13, 1200))
SMOKE = Plan(size="tiny", sweep=(1, 2, 4), ref_batch=2, chunk_s=30.0, real_call_s=90.0, real_audio_s=150.0,
             job_audio_s=300.0, batch_audio_s=120.0,
             timed=3, warmup=1, budget_s=100.0, attn_heads=(4, 2, 12), attn_lengths=(41, 30, 7, 1),
             # the tiny model gains nothing from threads, which slow it 3x on a busy machine
             cpu_threads=1, token_sample=4)


@dataclass(frozen=True)
class RealChunks:
    """The real-chunk figures' chunks under one chunking: "packed", the engine's own (chunking_for: a
    channel's speech regions packed into chunks of up to its target length), or "before", the chunker's
    before packing (BEFORE_PACKING: one chunk per speech region)."""

    chunker: str  # "packed" or "before"
    source: str  # where params come from
    params: ChunkingParams
    audios: list[np.ndarray]  # the call's chunks (int16, 16 kHz), repeated whole `repeats` times
    distinct: int  # the call's own chunks
    repeats: int

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(a) for a in self.audios]) / TARGET_SR


def process_age_s() -> float:
    """Seconds since this process started (imports included), from /proc; 0 where unknown."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class Budget:
    """Wall time left; a section whose estimate does not fit is skipped with a note."""

    def __init__(self, total_s: float, reserve_s: float = 5.0, from_process_start: bool = False):
        self.total_s, self.reserve_s = total_s, reserve_s
        # From the command line the imports count too; called in-process (tests), from the call.
        self.t0 = time.perf_counter() - (process_age_s() if from_process_start else 0.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.total_s - self.reserve_s - self.elapsed()

    def fits(self, estimate_s: float) -> bool:
        return estimate_s <= self.left()


class Check:
    def __init__(self, plan: Plan, device: str, out: Path, compile: bool, smoke: bool,
                 from_process_start: bool = False):
        self.plan, self.device, self.out, self.smoke = plan, device, out, smoke
        self.cuda = device.startswith("cuda")
        self.compile = compile
        self.budget = Budget(plan.budget_s, from_process_start=from_process_start)
        self.results: dict = {"smoke": smoke, "plan": asdict(plan), "notes": [], "errors": {}}
        self.engine = None
        self.peaks: list[int] = []
        self._real: dict[tuple[str, float], RealChunks] = {}

    # -- plumbing -------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        log.warning("%s", text)
        self.results["notes"].append(text)

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.budget.elapsed(), 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1))
        tmp.replace(self.out)

    def section(self, name: str, fn: Callable[[], dict | None], estimate: Callable[[], float] | None = None) -> None:
        """Run one part within the budget (always, without an estimate: the cheap parts everything else
        needs); its failure is recorded, and the others still run."""
        try:
            estimate_s = estimate() if estimate else float("-inf")
        except Exception as exc:
            log.exception("estimating %s failed", name)
            estimate_s, self.results["errors"][name] = 0.0, f"{type(exc).__name__}: {exc}"
        if name in self.results["errors"]:
            self.results[name] = {"error": self.results["errors"][name]}
        elif not self.budget.fits(estimate_s):
            self.results[name] = {"skipped": f"needs about {estimate_s:.0f} s, {max(self.budget.left(), 0):.0f} s "
                                             f"left of the {self.plan.budget_s:.0f} s budget"}
            self.note(f"{name}: skipped ({self.results[name]['skipped']})")
        else:
            t = time.perf_counter()
            try:
                out = fn()
            except Exception as exc:  # record it and go on: one call of device time buys every section
                log.exception("%s failed", name)
                self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
                out = {"error": self.results["errors"][name]}
            if out is not None:
                out.setdefault("section_s", round(time.perf_counter() - t, 2))
                self.results[name] = out
            log.info("[%5.1f s] %s done", self.budget.elapsed(), name)
        self.save()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int | None:
        value = self.engine.peak_memory_bytes() if self.engine is not None else None
        if value:
            self.peaks.append(int(value))
        return value

    def build(self, compile: bool):
        # The engine makes random weights on the device itself (and warms up outside that context).
        return engines.create(ENGINE, random_weights=True, size=self.plan.size, device=self.device, compile=compile)

    def dtype(self) -> torch.dtype:
        model = getattr(self.engine, "model", None)
        if model is not None:
            return next(model.parameters()).dtype
        return torch.bfloat16 if self.cuda else torch.float32

    def rate(self) -> float:
        """Audio seconds per second at chunk_s: the sweep's median RTFx once measured (robust to one
        noisy size), else the cold first batch's."""
        rtfx = [r["rtfx"] for r in self.results.get("sweep", {}).get("rows", []) if r.get("rtfx")]
        if rtfx:
            return statistics.median(rtfx)
        first = self.results.get("first_batch", {})
        return first["batch"] * first["chunk_s"] / first["seconds"] if first.get("seconds") else 1.0

    def ref_seconds(self) -> float:
        """Eager seconds of a ref_batch x chunk_s batch: measured where the sweep ran it, else from rate()."""
        for row in self.results.get("sweep", {}).get("rows", []):
            if row.get("batch") == self.plan.ref_batch and row.get("median_s"):
                return row["median_s"]
        return self.plan.ref_batch * self.plan.chunk_s / self.rate()

    def batch_estimate(self, batch: int) -> float:
        return batch * self.plan.chunk_s / self.rate() * 1.3 + 0.5

    # -- sections -------------------------------------------------------------------------------

    def machine(self) -> dict:
        info = machine_info(self.device)
        info.update(card=info.get("gpu") or cpu_model(), torch=torch.__version__, cuda=torch.version.cuda,
                    flash_attn=flash_available(), torch_varlen_attn=torch_varlen_kernel() is not None)
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            info.update(capability=list(torch.cuda.get_device_capability(self.device)),
                        gpu_memory_gib=round(props.total_memory / GIB, 1))
        return info

    def build_section(self) -> dict:
        t = time.perf_counter()
        self.engine = self.build(compile=False)
        seconds = time.perf_counter() - t
        model = getattr(self.engine, "model", None)
        params = sum(p.numel() for p in model.parameters()) if model is not None else None
        return {"seconds": round(seconds, 2), "params": params, "dtype": str(self.dtype()).replace("torch.", ""),
                "source": getattr(self.engine, "source", "")}

    def attention_batch(self) -> tuple:
        """An editor-shaped packed batch as the fused editor layer hands it over (views into one row, at its
        scale 1 / d), and its fp32 per-item reference: q, k, v, cu_seqlens, lengths, scale, reference."""
        heads, kv_heads, d = self.plan.attn_heads
        lengths = list(self.plan.attn_lengths)
        g = torch.Generator().manual_seed(0)
        q, k, v = grouped_views(sum(lengths), heads, kv_heads, d, self.device, self.dtype(), g, d ** 0.5)
        cu = cu_seqlens_for(lengths, self.device)
        scale = 1 / d
        return q, k, v, cu, lengths, scale, per_item_attention(q.float(), k.float(), v.float(), cu, scale)

    def timed(self, fn: Callable[[], torch.Tensor], ref: torch.Tensor) -> tuple[float, float]:
        """Milliseconds per call (mean of 5 after one) and the max abs difference from ``ref``."""
        out = fn()
        err = (out.float() - ref).abs().max().item()
        self.sync()
        t = time.perf_counter()
        for _ in range(5):
            fn()
        self.sync()
        return (time.perf_counter() - t) / 5 * 1000, err

    def attention(self) -> dict:
        """The chosen backend on an editor-shaped packed batch against an fp32 per-item reference, and
        every other backend that can run here, each timed and checked the same way (``kernels``)."""
        q, k, v, cu, lengths, scale, ref = self.attention_batch()
        heads, kv_heads, d = self.plan.attn_heads
        facts = facts_for(q.device, q.dtype, d)
        candidates = {name: (lambda b=b: b.run(q, k, v, cu, max(lengths), scale))
                      for name, b in BACKENDS.items() if b.usable(facts) and name != "per-item-sdpa"}
        runs = {"backend": lambda: varlen_attention(q, k, v, cu, max(lengths), scale),
                "per_item": lambda: per_item_attention(q, k, v, cu, scale), **candidates}
        timings, errors, failed = {}, {}, {}
        for name, fn in runs.items():
            try:
                timings[name], errors[name] = self.timed(fn, ref)
            except Exception as exc:  # a private kernel that does not run here is a finding, not the end
                failed[name] = f"{type(exc).__name__}: {exc}"[:300]
        err, err_loop = errors["backend"], errors["per_item"]
        backend = attention_backend(q, kv_heads)
        out = {"backend": backend, "dtype": str(q.dtype).replace("torch.", ""), "lengths": lengths,
               "heads": [heads, kv_heads, d], "max_abs_err": err, "per_item_max_abs_err": err_loop,
               "ok": err <= max(4 * err_loop, 1e-5), "backend_ms": round(timings["backend"], 3),
               "per_item_ms": round(timings["per_item"], 3),
               "kernels": {name: {"ms": round(timings[name], 3), "max_abs_err": errors[name],
                                  "ok": errors[name] <= max(4 * err_loop, 1e-5)} if name in timings
                           else {"error": failed[name]} for name in candidates}}
        if not out["ok"]:
            self.note(f"attention: {backend} is off the fp32 reference by {err:.3g} (per-item loop: {err_loop:.3g})")
        if self.cuda and backend == "per-item-sdpa":
            self.note("the CUDA editor attends item by item: no flash-attn and no usable torch varlen_attn")
        return out

    def attention_cudnn(self) -> dict:
        """cuDNN's ragged attention (aten._cudnn_attention_forward) on the attention section's batch: not
        an engine backend (it has no meta kernel, so no compiled layer could hold it), timed to say whether
        wrapping it would pay. Given contiguous inputs and the key/value heads repeated, made outside the
        timing, as a wrapper would hand them over. Last in the check: a private kernel's fault can leave
        the CUDA context unusable for whatever runs after it."""
        cudnn = getattr(torch.ops.aten, "_cudnn_attention_forward", None)
        if cudnn is None:
            return {"skipped": f"torch {torch.__version__} has no aten._cudnn_attention_forward"}
        q, k, v, cu, lengths, scale, ref = self.attention_batch()
        heads, longest = q.shape[1], max(lengths)
        qc, kc, vc = q.contiguous(), repeat_kv(k, heads).contiguous(), repeat_kv(v, heads).contiguous()
        ms, err = self.timed(lambda: cudnn(qc, kc, vc, None, cu, cu, longest, longest, False, 0.0, False, False,
                                           scale=scale)[0], ref)
        backend_ms = self.results.get("attention", {}).get("backend_ms")
        return {"ms": round(ms, 3), "max_abs_err": err, "ok": err <= PROBE_TOLERANCE,
                "backend_ms": backend_ms, "vs_backend": round(backend_ms / ms, 2) if backend_ms else None}

    def first_batch(self) -> dict:
        chunks = speech_chunks(self.plan.ref_batch, self.plan.chunk_s)
        self.reset_peak()
        t = time.perf_counter()
        self.engine.run(self.engine.prepare(chunks))
        self.sync()
        seconds = round(time.perf_counter() - t, 3)
        return {"batch": self.plan.ref_batch, "chunk_s": self.plan.chunk_s,
                "seconds": seconds, "peak_mem_bytes": self.peak(), "silence": self.silence("eager")}

    def silence(self, mode: str) -> str:
        """The worker's check that its engine still works (worker._check_engine: 2 s of digital
        silence through run_batches), which a respawned worker runs before it blames a chunk: "ok",
        or why not. On a GPU it has run only here."""
        try:
            run_batches(self.engine, [np.zeros(2 * TARGET_SR, dtype=np.int16)], 30.0)
        except Exception as exc:  # noqa: BLE001 - the figure is the answer
            why = f"failed: {type(exc).__name__}: {exc}"[:300]
            self.note(f"silence ({mode}): {why}: a respawned worker would blame no chunk")
            return why
        return "ok"

    def sweep_one(self, batch: int) -> dict:
        self.reset_peak()
        r = run_throughput(self.engine, batch=batch, chunk_s=self.plan.chunk_s, batches=self.plan.timed,
                           warmup=self.plan.warmup)
        self.peak()
        row = {k: v for k, v in asdict(r).items() if k in ("batch", "chunk_s", "batches_timed", "warmup",
                                                            "seconds_per_batch", "median_s", "rtfx",
                                                            "peak_mem_bytes")}
        log.info("%d x %g s: RTFx %.0f (median %.3f s)", batch, self.plan.chunk_s, r.rtfx, r.median_s)
        return row

    def sweep(self) -> None:
        """The reference batch first (it calibrates the budget), then the others, smallest first."""
        rows = self.results.setdefault("sweep", {"mode": "eager", "rows": []})["rows"]
        order = [self.plan.ref_batch] + sorted(b for b in self.plan.sweep if b != self.plan.ref_batch)
        for batch in order:
            estimate = (self.plan.warmup + self.plan.timed) * self.batch_estimate(batch)
            if not self.budget.fits(estimate):
                rows.append({"batch": batch, "chunk_s": self.plan.chunk_s, "skipped": f"needs about {estimate:.0f} s"})
                self.note(f"sweep {batch} x {self.plan.chunk_s:g} s: skipped, needs about {estimate:.0f} s, "
                          f"{max(self.budget.left(), 0):.0f} s left")
            else:
                try:
                    rows.append(self.sweep_one(batch))
                except Exception as exc:
                    log.exception("sweep %d failed", batch)
                    rows.append({"batch": batch, "chunk_s": self.plan.chunk_s, "error": f"{type(exc).__name__}: {exc}"})
                    self.results["errors"][f"sweep {batch}"] = rows[-1]["error"]
            rows.sort(key=lambda r: r["batch"])
            self.save()

    def real_call(self) -> Decoded:
        """The long stereo call of the real-chunk figures, as decode() gives it (int16 channels, 8 kHz)."""
        rate = 8000
        audio = tiled_call(self.plan.real_call_s, stereo=True, rate=rate)
        channels = [np.round(audio[:, c] * 32767).astype(np.int16) for c in range(audio.shape[1])]
        return Decoded(channels, rate, len(audio) / rate, "PCM_16")

    def real_audios(self, chunker: str, audio_s: float | None = None) -> RealChunks:
        """The call's chunks as the worker gets them, repeated whole to about ``audio_s`` (default
        plan.real_audio_s) of audio."""
        audio_s = audio_s or self.plan.real_audio_s
        if (chunker, audio_s) not in self._real:
            once = next((r for (c, _), r in self._real.items() if c == chunker), None)
            if once is not None:  # the call is chunked once per chunking, then repeated to each length
                params, source, distinct = once.params, once.source, once.audios[: once.distinct]
            else:
                engine = getattr(self.engine, "name", None) or ENGINE
                if chunker == "before":
                    params, source = BEFORE_PACKING, "benchmarks.heldout.BEFORE_PACKING"
                else:
                    params, source = chunking_for(engine), f"chunking_for({engine!r})"
                _, distinct = chunk_all([self.real_call()], params)
                if not distinct:
                    raise RuntimeError(f"the chunker ({chunker}) found no speech in the call")
            distinct_s = sum(len(a) for a in distinct) / TARGET_SR
            reps = max(1, round(audio_s / distinct_s))
            self._real[(chunker, audio_s)] = RealChunks(chunker, source, params, distinct * reps, len(distinct), reps)
        return self._real[(chunker, audio_s)]

    def real_estimate(self, chunker: str, passes: int, audio_s: float | None = None) -> float:
        lengths = self.real_audios(chunker, audio_s).lengths
        # Chunks of about 4 s ran at about 0.6 of the 30 s rate (H200); packed ones, near 30 s, near it.
        slow = 2.5 if float(np.median(lengths)) < self.plan.chunk_s / 2 else 1.5
        return passes * float(lengths.sum()) / self.rate() * slow + 1

    def real_chunks(self, chunker: str, label: str, overlap: bool = True, audio_s: float | None = None) -> dict:
        real = self.real_audios(chunker, audio_s)
        audios, lengths = real.audios, real.lengths
        self.reset_peak()
        graphs = compiled_graphs()
        run_batches(self.engine, audios, self.plan.batch_audio_s, overlap=overlap)  # warm-up: every shape once
        new_graphs = compiled_graphs() - graphs
        walls, metrics, later = [], [], []
        for _ in range(self.plan.timed):
            t = time.perf_counter()
            _, metrics = run_batches(self.engine, audios, self.plan.batch_audio_s, overlap=overlap)
            self.sync()
            walls.append(time.perf_counter() - t)
            later += metrics[1:]
        median = statistics.median(walls)
        audio_s = float(lengths.sum())
        wall_in_batches = sum(m.wall_s for m in metrics)
        p10, p50, p90 = np.percentile(lengths, [10, 50, 90])
        out = {"mode": label, "overlap": overlap, "chunker": real.chunker, "chunking_source": real.source,
               "chunking": asdict(real.params), "chunks": len(audios), "distinct_chunks": real.distinct,
               "repeats": real.repeats, "call_s": self.plan.real_call_s, "audio_s": round(audio_s, 1),
               "chunk_s_p10": round(float(p10), 2), "chunk_s_p50": round(float(p50), 2),
               "chunk_s_p90": round(float(p90), 2), "batch_audio_s": self.plan.batch_audio_s,
               "batches": len(metrics), "chunks_per_batch_median": statistics.median(m.n_chunks for m in metrics),
               "passes_s": [round(w, 3) for w in walls], "median_s": round(median, 3),
               "rtfx": round(audio_s / median, 2),
               "reader_wait_frac": round(sum(m.wall_s - m.model_s for m in metrics) / wall_in_batches, 4)
               if wall_in_batches else 0.0,
               # The first batch of a pass has nothing to overlap its reading with; the rest should wait ~0.
               "reader_wait_frac_after_first": round(sum(m.wall_s - m.model_s for m in metrics[1:])
                                                     / sum(m.wall_s for m in metrics[1:]), 4)
               if len(metrics) > 1 else None,
               # The rate once the reader runs ahead (every pass's batches after its first): what a
               # GPU pod's job of up to 200 h (about 190 batches) runs at, the first batch apart.
               "rtfx_after_first": round(sum(m.audio_s for m in later) / sum(m.wall_s for m in later), 2)
               if later and sum(m.wall_s for m in later) > 0 else None,
               "peak_mem_bytes": self.peak(), "graphs_compiled": new_graphs}
        log.info("real chunks (%s, %s): %d chunks, p50 %.1f s, RTFx %.0f", real.chunker, label, len(audios),
                 out["chunk_s_p50"], out["rtfx"])
        return out

    def profile(self, mode: str = "eager") -> dict:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        prepared = self.engine.prepare(speech_chunks(self.plan.ref_batch, self.plan.chunk_s))
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self.engine.run(prepared)  # the batch shape once, outside the profile
        self.sync()
        with torch_profile(activities=activities) as prof:
            t = time.perf_counter()
            self.engine.run(prepared)
            self.sync()
            wall_ms = (time.perf_counter() - t) * 1000
        totals: dict[str, list] = {}
        if self.cuda:  # every kernel (and copy) the GPU ran, by name
            kind = "CUDA kernels, device time"
            totals = kernel_totals(prof.events())
        else:  # no kernels on a CPU: the operators' own time stands in
            kind = "CPU operators, self time"
            for a in prof.key_averages():
                if a.self_cpu_time_total > 0 and not a.key.startswith(STAGE_PREFIX):
                    totals[a.key] = [a.self_cpu_time_total, a.count]
        total_us = sum(t for t, _ in totals.values())
        ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])
        if not ranked:
            self.note("the profiler recorded no kernels")
        kinds: dict[str, float] = {}
        for name, (us, _) in ranked:
            kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + us
        return {"kind": kind, "mode": mode, "batch": self.plan.ref_batch, "chunk_s": self.plan.chunk_s,
                "total_ms": round(total_us / 1000, 2), "distinct": len(totals), "wall_ms": round(wall_ms, 1),
                # kernel time over wall time (under the profiler): how busy the GPU was kept
                "busy": round(total_us / 1000 / wall_ms, 3) if wall_ms and self.cuda else None,
                "top": [{"name": name[:200], "ms": round(us / 1000, 3), "calls": n,
                         "share": round(us / total_us, 4) if total_us else 0.0}
                        for name, (us, n) in ranked[:TOP_KERNELS]],
                # Every kernel (the top ones above are 80 % of the time; the rest is where to look next).
                "all": [[name[:160], round(us / 1000, 3), n] for name, (us, n) in ranked],
                "by_kind_ms": {k: round(us / 1000, 2) for k, us in sorted(kinds.items(), key=lambda kv: -kv[1])},
                "stages_ms": stage_times(prof, self.cuda),
                # Where the device-to-device copies come from (the CPU has none).
                "copies_by_op": copy_sources(prof.events()) if self.cuda else []}

    def compiled(self) -> dict:
        """A fresh engine with the engine's own torch.compile (it compiles and warms up as it loads), on
        the reference shape. If it fails (a compile no GPU has run yet), the eager engine is built again
        before the error is recorded, so every section after this one still has an engine to measure."""
        try:
            return self._compiled()
        except Exception:
            self.free_engine()
            try:
                self.engine = self.build(compile=False)
                self.note("compiled: failed (see errors); the sections after it measure the eager engine")
            except Exception:  # a CUDA context left broken: the original error is the one to report
                log.exception("rebuilding the eager engine after the compiled section failed")
            raise

    def _compiled(self) -> dict:
        self.free_engine()
        t = time.perf_counter()
        self.engine = self.build(compile=True)
        build_s = time.perf_counter() - t
        chunks = speech_chunks(self.plan.ref_batch, self.plan.chunk_s)
        graphs = compiled_graphs()
        t = time.perf_counter()
        self.engine.run(self.engine.prepare(chunks))
        self.sync()
        first = time.perf_counter() - t
        recompiled = compiled_graphs() - graphs
        if recompiled:
            self.note(f"compiled: {recompiled} graphs compiled after the warm-up, in the first batch")
        self.reset_peak()
        r = run_throughput(self.engine, batch=self.plan.ref_batch, chunk_s=self.plan.chunk_s,
                           batches=self.plan.timed, warmup=self.plan.warmup)
        self.peak()
        eager = self.ref_seconds()
        return {"batch": self.plan.ref_batch, "chunk_s": self.plan.chunk_s, "build_s": round(build_s, 2),
                "compile_s": round(getattr(self.engine, "warm_up_s", 0.0), 1), "first_batch_s": round(first, 2),
                "load_to_first_batch_s": round(build_s + first, 1), "graphs_at_load": graphs,
                "graphs_after_warm_up": recompiled,
                "seconds_per_batch": r.seconds_per_batch, "median_s": r.median_s, "rtfx": r.rtfx,
                "eager_rtfx": round(self.plan.ref_batch * self.plan.chunk_s / eager, 2),
                "speedup": round(eager / r.median_s, 3), "peak_mem_bytes": r.peak_mem_bytes,
                "silence": self.silence("compiled")}

    def depthwise(self) -> dict:
        """The Conformer convolution's depthwise step on the reference batch's encoder stream
        (ref_batch x chunk_s end to end, 2,048 channels): the shifted sum with its SiLU (compiled: the
        engine's compiled default) against the Triton kernel (engines/nar/depthwise.py) in each of its
        candidate tiles: milliseconds per call (``timed``: mean of 5 after one), the bytes moved per
        second and the largest difference from the float32 convolution; then the whole convolution
        module compiled each way."""
        import copy

        from callscribe.engines.nar import depthwise as dw
        from callscribe.engines.nar.fuse import FusedConvModule
        from callscribe.engines.nar.modeling import bucketed

        conv = next(m for m in self.engine.model.modules() if isinstance(m, FusedConvModule))
        cfg = self.engine.model.cfg.encoder
        t = self.plan.ref_batch * bucketed(int(self.plan.chunk_s * 50) + cfg.conv_kernel // 2, cfg.context)
        g = torch.Generator(device=self.device).manual_seed(0)
        y = torch.randn(1, t, conv.channels, generator=g, device=self.device).to(self.dtype())
        left, right = conv.padding
        taps, bias = conv.dw_taps, conv.dw_bias
        want = dw.reference(y, taps, bias, left)
        gigabytes = 2 * y.numel() * y.element_size() / 1e9  # read once, written once

        def shifted(z: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.silu(conv._shifted_sum(z, left, right))

        runnable = dw.available() and (self.cuda or os.environ.get("TRITON_INTERPRET") == "1")
        how = "compiled" if self.compile else "eager"
        runs = {f"shifted sum ({how})": torch.compile(shifted, dynamic=True) if self.compile else shifted}
        for bt, bc, warps, unroll in dw.TILES if runnable else ():
            runs[f"triton {bt}x{bc}, {warps} warps, unroll {unroll}"] = (
                lambda z, tile=(bt, bc, warps, unroll): dw.launch(z, taps, bias, left, torch.empty_like(z), *tile))
        kernels: dict[str, dict] = {}
        with torch.inference_mode():
            for name, fn in runs.items():
                try:
                    ms, err = self.timed(lambda fn=fn: fn(y), want)
                    kernels[name] = {"ms": round(ms, 3), "gb_per_s": round(gigabytes / ms * 1000, 3),
                                     "max_abs_err": err}
                except Exception as exc:  # a tile that does not fit this card is a finding, not the end
                    kernels[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            modules: dict[str, dict] = {}
            if self.compile and runnable:
                x = torch.randn(1, t, cfg.hidden, generator=g, device=self.device).to(self.dtype())
                valid = torch.ones(1, t, dtype=torch.bool, device=self.device)
                shifted_out = None
                for path in ("shifted", "triton"):
                    try:  # one path failing keeps the other's figures and the kernels' above
                        module = copy.deepcopy(conv)
                        module.compiled_path = path
                        fn = torch.compile(module, dynamic=True)
                        got = fn(x, valid).float()
                        shifted_out = got if path == "shifted" else shifted_out
                        ms, diff = self.timed(lambda fn=fn: fn(x, valid), got if shifted_out is None else shifted_out)
                        modules[path] = {"ms": round(ms, 3),
                                         "max_abs_diff_from_shifted": None if shifted_out is None else diff}
                    except Exception as exc:
                        modules[path] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        why_not = None if runnable else "not run: it needs triton and CUDA (or TRITON_INTERPRET=1)"
        if why_not and self.cuda:
            self.note(f"depthwise: the Triton kernel was {why_not}")
        tiles = {name: row["ms"] for name, row in kernels.items() if name.startswith("triton") and "ms" in row}
        return {"stream_frames": t, "channels": conv.channels, "gigabytes": round(gigabytes, 6), "kernels": kernels,
                "best_tile": min(tiles, key=tiles.get) if tiles else None, "modules": modules, "triton": why_not}

    def mode(self) -> str:
        return "torch.compile" if getattr(self.engine, "compiled", False) else "eager"

    def encoder_stream(self) -> dict:
        """The encoder's two layouts (GraniteNar.encoder_stream) on the engine as it stands: "tight"
        (the default since session 15: each item in its own frames, the attention's blocks gathered)
        against "blocks" (each item in whole attention blocks, so its last block's padding runs
        through every per-frame layer: 100 of 1,600 frames at 30 s, about 190 at 28 s). The reference
        batch and the packed real chunks, passes interleaved; a compiled engine compiles its Conformer
        blocks again for the layout it was not warmed up with, in this section's warm-up."""
        engine = self.engine
        model = getattr(engine, "model", None)
        if not hasattr(model, "encoder_stream"):
            return {"skipped": f"{getattr(engine, 'name', ENGINE)} has no encoder layouts"}
        plan = self.plan
        prepared = engine.prepare(speech_chunks(plan.ref_batch, plan.chunk_s))
        real = self.real_audios("packed")
        walls: dict[str, dict[str, list[float]]] = {s: {"fixed": [], "real": []} for s in ENCODER_STREAMS}
        saved = model.encoder_stream
        try:
            for stream in ENCODER_STREAMS:  # warm-up: every shape once in each layout
                model.encoder_stream = stream
                engine.run(prepared)
                run_batches(engine, real.audios, plan.batch_audio_s)
            self.sync()
            for _ in range(plan.timed):
                for stream in ENCODER_STREAMS:
                    model.encoder_stream = stream
                    for what, fn in (("fixed", lambda: engine.run(prepared)),
                                     ("real", lambda: run_batches(engine, real.audios, plan.batch_audio_s))):
                        t = time.perf_counter()
                        fn()
                        self.sync()
                        walls[stream][what].append(time.perf_counter() - t)
        finally:
            model.encoder_stream = saved
        audio = {"fixed": plan.ref_batch * plan.chunk_s, "real": float(real.lengths.sum())}
        out: dict = {"mode": self.mode(), "batch": plan.ref_batch, "chunk_s": plan.chunk_s,
                     "real_chunks": len(real.audios), "real_audio_s": round(audio["real"], 1)}
        for stream, by in walls.items():
            out[stream] = {what: {"passes_s": [round(w, 3) for w in ws],
                                  "rtfx": round(audio[what] / statistics.median(ws), 2)} for what, ws in by.items()}
        out["tight_vs_blocks"] = {what: round(out["tight"][what]["rtfx"] / out["blocks"][what]["rtfx"], 3)
                                  for what in audio}
        return out

    def host_waits(self) -> dict:
        """How often one reference batch makes the host wait for the GPU (torch's sync debug mode
        warns at each such call), and where. transcribe means to wait only to read the draft and
        the editor's argmax back, through an event on a pinned copy (which the debug mode may not
        count); any wait listed here leaves the GPU idle while the host catches up."""
        if not self.cuda:
            return {"skipped": "CUDA only (a CPU never waits for itself)"}
        prepared = self.engine.prepare(speech_chunks(self.plan.ref_batch, self.plan.chunk_s))
        self.engine.run(prepared)
        self.sync()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                self.engine.run(prepared)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        waits = [w for w in caught if "synchroniz" in str(w.message).lower()]
        where = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in waits)
        return {"batch": self.plan.ref_batch, "chunk_s": self.plan.chunk_s, "mode": self.mode(), "waits": len(waits),
                "where": dict(where.most_common(12))}

    def fixed_overlapped(self, sequential_too: bool = True) -> dict:
        """ref_batch x chunk_s batches back to back as the worker runs them (run_batches): batch k+1 is
        started before batch k is finished, so the host's work on k (the collapse, times, text) runs
        while the GPU computes k+1. RTFx over a stream of batches, median of the passes, beside the
        same stream run batch by batch. The batch is prepared once, outside the timing: the worker
        prepares on a reader thread either way, so neither side should pay it."""
        engine = self.engine
        if not hasattr(engine, "start"):
            return {"skipped": f"{getattr(engine, 'name', ENGINE)} has no start(): it runs batch by batch"}
        prepared = engine.prepare(speech_chunks(self.plan.ref_batch, self.plan.chunk_s))
        stream = self.plan.timed + 1  # batches per pass
        audio_s = stream * self.plan.ref_batch * self.plan.chunk_s

        def overlapped() -> None:
            pending = [engine.start(prepared)]
            try:
                for _ in range(stream - 1):
                    pending.append(engine.start(prepared))
                    pending.pop(0)()
            finally:  # a batch left running would spill into whatever is timed next
                for finish in pending:
                    finish()

        def sequential() -> None:
            for _ in range(stream):
                engine.run(prepared)

        out: dict = {"batch": self.plan.ref_batch, "chunk_s": self.plan.chunk_s, "mode": self.mode(),
                     "batches_per_pass": stream}
        overlapped()  # warm-up
        self.sync()
        runs = (("overlapped", overlapped), ("sequential", sequential))[: 2 if sequential_too else 1]
        passes: dict[str, list[float]] = {name: [] for name, _ in runs}
        for _ in range(self.plan.timed):  # interleaved, so both see the same card state
            for name, fn in runs:
                t = time.perf_counter()
                fn()
                self.sync()
                passes[name].append(time.perf_counter() - t)
        for name, walls in passes.items():
            median = statistics.median(walls)
            out[name] = {"passes_s": [round(w, 3) for w in walls], "median_s": round(median, 3),
                         "seconds_per_batch": round(median / stream, 4), "rtfx": round(audio_s / median, 2)}
        if sequential_too:
            out["gain"] = round(out["sequential"]["median_s"] / out["overlapped"]["median_s"], 3)
        return out

    def tuning(self, variant: str) -> dict:
        """A fresh engine compiled with one of the engine's compile tunings (COMPILE_TUNING), written
        ``name[+fp8-PARTS][+dw-DEPTHWISE][@seconds][/ATTENTION]``: float8 products in those parts
        (CALLSCRIBE_NAR_FP8), the compiled depthwise path (CALLSCRIBE_NAR_DEPTHWISE_COMPILED), a
        production-shape warm-up batch of that much audio first, and the editor's attention backend
        forced (CALLSCRIBE_NAR_ATTENTION; this runs in a process of its own). How long it takes to
        compile and warm up cold, then fixed batches back to back and the packed real chunks, and how
        many graphs were compiled after the warm-up (should be 0)."""
        chosen = parse_variant(variant)
        name, fp8, warm_up_s = chosen.tuning, chosen.fp8, chosen.warm_up_s
        if chosen.attention:
            os.environ[ENV_FORCE] = chosen.attention
            reset_choice()
        if chosen.depthwise:
            os.environ[ENV_DEPTHWISE_COMPILED] = chosen.depthwise
        # Float8 products change what the model computes: the variant is compared, slot for slot, with
        # the eager model of the same (seeded) weights, made first since fp8 replaces weights at load.
        ref = self.eager_reference() if fp8 != "off" else None
        self.free_engine()
        t = time.perf_counter()
        self.engine = engines.create(ENGINE, random_weights=True, size=self.plan.size, device=self.device,
                                     compile=True, compile_tuning=name, warm_up_audio_s=warm_up_s, fp8=fp8)
        editor = self.engine.model.cfg.editor
        like = torch.empty(1, editor.heads, editor.head_dim, device=self.device, dtype=self.dtype())
        out = {"tuning": name, "fp8": self.engine.fp8, "warm_up_audio_s": self.engine.warm_up_audio_s,
               "attention": attention_backend(like, editor.kv_heads),
               "depthwise": compiled_depthwise_path(self.engine.model),
               "build_s": round(time.perf_counter() - t, 1),
               "compile_s": round(getattr(self.engine, "warm_up_s", 0.0), 1)}
        graphs = compiled_graphs()
        out["fixed"] = self.fixed_overlapped(sequential_too=False)
        out["real"] = self.real_chunks("packed", f"torch.compile ({variant})")
        out["graphs_after_warm_up"] = compiled_graphs() - graphs
        if out["depthwise"] == "triton":  # its probe at load compiled the one variant every batch should use
            from callscribe.engines.nar.depthwise import compiled_variants

            out["depthwise_kernel_variants"] = compiled_variants()
        # Where the time went: what a variant changes shows in its kernels (float8 in the products).
        out["profile"] = self.profile(f"torch.compile ({variant})")
        if ref is not None:
            out["same_tokens"] = parity.compare(self.engine.model, self.sample_waves(), ref,
                                                self.engine.draft_tokens_per_s)
        log.info("tuning %s: compile and warm-up %.0f s, fixed back to back RTFx %.0f, real chunks RTFx %.0f",
                 variant, out["compile_s"], out["fixed"]["overlapped"]["rtfx"], out["real"]["rtfx"])
        return out

    def free_engine(self) -> None:
        self.engine = None
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def eager_reference(self) -> parity.Reference:
        """The eager, unquantised model's reference on the token sample (benchmarks.parity)."""
        self.free_engine()
        self.engine = engines.create(ENGINE, random_weights=True, size=self.plan.size, device=self.device,
                                     compile=False, fp8="off")
        try:
            return parity.reference(self.engine.model, self.sample_waves(), self.engine.draft_tokens_per_s)
        finally:
            self.free_engine()

    def tuning_estimate(self, variant: str) -> float:
        """Seconds one variant's child process takes (H100: about 75 s, autotune about 240 s; the tiny
        model on 2 CPU cores about 55 s, most of it compiling)."""
        if not self.cuda:
            return 60.0
        return 270.0 if parse_variant(variant).tuning.startswith("autotune") else 100.0

    def tuning_in_child(self, variant: str) -> dict:
        """:meth:`tuning` in a new process with an empty inductor cache of its own: in this process a
        second engine would reuse the first one's compiled graphs, and a shared cache its kernels as
        tuned on the first one's warm-up, so no variant would compile cold."""
        parse_variant(variant)  # a misspelt variant fails here, without a process
        plan = self.plan
        cmd = [sys.executable, "-m", "benchmarks.gpu", "--tuning-probe", variant, "--real-call-s",
               str(plan.real_call_s), "--real-audio-s", str(plan.real_audio_s), "--batch-audio-s",
               str(plan.batch_audio_s)] + (["--smoke"] if self.smoke else [])
        with tempfile.TemporaryDirectory(prefix="callscribe-inductor-") as cache:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30.0, self.budget.left()),
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_CACHE_DIR": cache})
        sys.stderr.write(done.stderr)  # the child's log, in order, into this run's
        if done.returncode != 0:
            raise RuntimeError(f"{variant}: probe exited {done.returncode}: {done.stderr.strip()[-800:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def run_tunings(self, variants: list[str], md: Path | None = None) -> dict:
        """Only the compile tunings' A/B (``--compile-tunings``), each cold in a process of its own, in the
        order given; the report is rewritten after each, so a run cut short keeps what it measured."""
        self.section("machine", self.machine)
        for variant in variants:
            self.section(f"tuning_{variant}", lambda v=variant: self.tuning_in_child(v),
                         lambda v=variant: self.tuning_estimate(v))
            if md is not None:
                md.parent.mkdir(parents=True, exist_ok=True)
                md.write_text(render_tunings(self.results))
        return self.finish()

    def routing(self) -> dict:
        """Confidence routing (off by default) on the reference batch, eager, through engine.run: off;
        on with a threshold nothing reaches (the cost of the confidence pass alone); and thresholds that
        route about a quarter and half of the chunks past the editor. Random weights make which chunks
        are confident arbitrary; the time saved per routed chunk is what this measures (the accuracy
        cost needs the real weights, docs/granite.md)."""
        engine = self.engine
        prepared = engine.prepare(speech_chunks(self.plan.ref_batch, self.plan.chunk_s))
        waves = prepared.waves(self.device)
        confidence = engine.model.transcribe(waves, draft_tokens_per_s=engine.draft_tokens_per_s,
                                             route_confidence=1.0).draft_confidence
        ranked = sorted(confidence, reverse=True)
        settings = [("off", None), ("confidence pass only", 1.0)] + [
            (f"{round(100 * share)} % asked", ranked[max(0, round(share * len(ranked)) - 1)]) for share in (0.25, 0.5)]
        audio_s = self.plan.ref_batch * self.plan.chunk_s
        saved, rows = engine.route_confidence, []
        try:
            for label, threshold in settings:
                engine.route_confidence = threshold
                times = []
                for i in range(self.plan.warmup + self.plan.timed):
                    before = engine.routed_items
                    t = time.perf_counter()
                    engine.run(prepared)
                    self.sync()
                    if i >= self.plan.warmup:
                        times.append(time.perf_counter() - t)
                    routed = engine.routed_items - before
                median = statistics.median(times)
                rows.append({"setting": label, "threshold": threshold, "routed": routed,
                             "median_s": round(median, 4), "rtfx": round(audio_s / median, 2)})
        finally:
            engine.route_confidence = saved
        off = rows[0]["median_s"]
        for r in rows:
            r["vs_off"] = round(off / r["median_s"], 3)
        return {"batch": self.plan.ref_batch, "chunk_s": self.plan.chunk_s, "mode": self.mode(), "rows": rows,
                "confidence_min": round(min(confidence), 6), "confidence_max": round(max(confidence), 6)}

    def sample_waves(self) -> list[torch.Tensor]:
        """A fixed sample of the real (packed) chunks, as the model takes them."""
        audios = self.real_audios("packed").audios[: self.plan.token_sample]
        return [torch.from_numpy(a.astype(np.float32) / 32768.0).to(self.device) for a in audios]

    def eager_tokens(self) -> dict:
        """The eager model's tokens on the sample, and its logits' best per text slot (benchmarks.parity)."""
        self._parity_ref = parity.reference(self.engine.model, self.sample_waves(), self.engine.draft_tokens_per_s)
        return {"chunks": len(self._parity_ref.tokens)}

    def same_tokens(self) -> dict:
        """Compiled against eager token ids on the same chunks, and slot for slot on the eager drafts
        (random weights: nearly flat logits, so bf16 rounding in another order flips some argmaxes; the
        real weights decide the issue's 99 %, and the logit error says by how much a trained model's
        slots may move)."""
        ref = getattr(self, "_parity_ref", None)
        if ref is None:
            return {"skipped": "no eager tokens"}
        return parity.compare(self.engine.model, self.sample_waves(), ref, self.engine.draft_tokens_per_s)

    def warm_start(self) -> dict:
        """A new process with the same inductor cache: import, build, compile from the cache and warm
        up, then the first 128 x 30 s batch (what a second worker pod on the same cache volume sees)."""
        cmd = [sys.executable, "-m", "benchmarks.gpu", "--warm-start-probe", "--size", self.plan.size,
               "--probe-batch", str(self.plan.ref_batch)]
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30.0, self.budget.left()),
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(f"probe exited {done.returncode}: {done.stderr[-800:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        out.update(process_wall_s=round(wall, 1), cache_dir=os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
        return out

    def run(self) -> dict:
        plan = self.plan
        self.section("machine", self.machine)
        self.section("build", self.build_section)
        if self.engine is None:
            return self.finish()
        self.section("attention", self.attention)
        self.section("first_batch", self.first_batch)
        self.sweep()
        passes = plan.timed + 1  # a warm-up pass, then the timed ones
        self.section("real_chunks", lambda: self.real_chunks("packed", "eager"),
                     lambda: self.real_estimate("packed", passes))
        self.section("real_chunks_before", lambda: self.real_chunks("before", "eager"),
                     lambda: self.real_estimate("before", passes))
        self.section("profile", self.profile, lambda: 3 * self.batch_estimate(plan.ref_batch) + 15)
        self.section("eager_tokens", self.eager_tokens, lambda: 10.0)
        if not self.compile:
            why = "off on a CPU (pass --compile)" if not self.cuda else "off (--no-compile)"
            for key in ("compiled", "real_chunks_compiled", "same_tokens", "profile_compiled",
                        "warm_start"):
                self.results[key] = {"skipped": why}
        else:
            # Compilation is the slowest part (about 46 s for the full model on an H200): last, if it fits.
            self.section("compiled", self.compiled,
                         lambda: (60.0 if self.cuda else 90.0) + 6 * self.batch_estimate(plan.ref_batch))
            if "rtfx" in self.results.get("compiled", {}):
                # New batch shapes recompile until dynamo marks their sizes dynamic.
                self.section("real_chunks_compiled", lambda: self.real_chunks("packed", "torch.compile"),
                             lambda: self.real_estimate("packed", passes) / 1.3)
                self.section("same_tokens", self.same_tokens, lambda: 10.0)
                self.section("profile_compiled", lambda: self.profile("torch.compile"),
                             lambda: 3 * self.batch_estimate(plan.ref_batch) / 1.3 + 15)
                if self.cuda:
                    self.section("warm_start", self.warm_start,
                                 lambda: 25.0 + 2 * self.batch_estimate(plan.ref_batch))
                else:
                    self.results["warm_start"] = {"skipped": "measured on CUDA only"}
            else:
                self.results["real_chunks_compiled"] = {"skipped": "no compiled engine"}
        self.extras(passes)
        if self.cuda:
            self.section("attention_cudnn", self.attention_cudnn, lambda: 5.0)
        else:
            self.results["attention_cudnn"] = {"skipped": "CUDA only"}
        return self.finish()

    def extras(self, passes: int) -> None:
        """A/B figures of recent sessions' additions, on the engine as it stands (compiled where it
        compiled): last, so the budget skips them before the issue's own figures; among them fixed
        batches back to back (as a worker runs them) first, then the encoder's two layouts (the default
        has not run on a GPU), a job's worth of real chunks, the other open questions, and the settled
        A/Bs (host waits, batches finished one at a time) last."""
        plan = self.plan
        mode = self.mode()
        speedup = 1.3 if mode != "eager" else 1.0
        self.section("fixed_overlapped", self.fixed_overlapped,
                     lambda: 2 * (plan.timed + 1) * (plan.timed + 1) * self.batch_estimate(plan.ref_batch) / speedup)
        # Next, the default no GPU has run (the tight stream): if it loses, every figure here is low.
        # A compile of the Conformer blocks for the other layout, then both layouts' passes.
        self.section("encoder_stream", self.encoder_stream,
                     lambda: (20.0 if mode != "eager" else 0.0) + 2 * (plan.timed + 1) * (
                         self.batch_estimate(plan.ref_batch) + self.real_estimate("packed", 1)) / speedup)
        # A local worker's job holds up to 4 h of speech (four batches): its first batch, read with
        # nothing to overlap, weighs a quarter as much as in the two-batch figure above.
        self.section("real_chunks_job", lambda: self.real_chunks("packed", mode, audio_s=plan.job_audio_s),
                     lambda: self.real_estimate("packed", passes, plan.job_audio_s) / speedup)
        # Three cold compiles (the shifted sum, the module each way) and five Triton tiles: 30 to 60 s.
        self.section("depthwise", self.depthwise, lambda: 45.0 if self.cuda else 5.0)
        self.section("routing", self.routing,
                     lambda: 4 * (plan.warmup + plan.timed + 0.3) * self.batch_estimate(plan.ref_batch))
        if self.cuda:
            self.section("host_waits", self.host_waits, lambda: 2 * self.batch_estimate(plan.ref_batch) + 2)
        else:
            self.results["host_waits"] = self.host_waits()
        self.section("real_chunks_sequential", lambda: self.real_chunks("packed", mode, overlap=False),
                     lambda: self.real_estimate("packed", passes) / speedup)

    def finish(self) -> dict:
        if self.cuda:
            try:
                self.peaks.append(int(torch.cuda.max_memory_allocated()))
            except RuntimeError as exc:  # a CUDA context left broken by the last section: report the rest
                self.note(f"peak memory not read: {exc}"[:200])
        self.results["peak_mem_bytes"] = max(self.peaks, default=None)
        self.results["budget_s"] = self.plan.budget_s
        self.save()
        return self.results


# ---------------------------------------------------------------- the report


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _mem(b: int | None) -> str:
    return "n/a" if not b else f"{b / GIB:.1f} GiB" if b >= GIB else f"{b / 2**20:.0f} MiB"


def _one_line(text: str) -> str:
    """An error's text as one table cell: a traceback's lines (a child process's stderr, an operator's
    dispatch table) and its pipes would otherwise break the Markdown row it stands in."""
    return " ".join(str(text).split()).replace("|", "/")


def _figure(section: dict | None, fmt: Callable[[dict], str]) -> str:
    if not section:
        return "not run"
    if "skipped" in section:
        return f"skipped: {section['skipped']}"
    if "error" in section:
        return f"error: {_one_line(section['error'])}"
    return fmt(section)


def _same_drafts(s: dict | None) -> str:
    """The slot-for-slot part of the token comparison (benchmarks.parity), as a clause."""
    if not s or not s.get("slots"):
        return ""
    return (f"; on the eager drafts {s['slots_equal']} of {s['slots']} text slots agree "
            f"({100 * s['slot_share']:.2f} %), "
            f"{s['flips_outside_top_k']} flips outside eager's top {parity.TOP_K}; logit error p50/p99/max "
            f"{s['logit_err_p50']:.3g}/{s['logit_err_p99']:.3g}/{s['logit_err_max']:.3g} against eager's spread "
            f"{s['logit_spread_p50']:.3g} and top-two gap p50 {s['top2_gap_p50']:.3g} ({s['near_ties']} slots closer "
            "than the largest error)")


def render(res: dict) -> str:
    m = res.get("machine", {})
    mem_word = "GPU" if str(m.get("device", "")).startswith("cuda") else "process (RSS)"
    a = res.get("attention", {})
    rows: list[tuple[str, str]] = [
        ("card", m.get("card", "?") + (f" ({m['gpu_memory_gib']} GiB, sm {m['capability'][0]}{m['capability'][1]})"
                                       if m.get("capability") else "")),
        ("torch", f"{m.get('torch', '?')} (CUDA {m.get('cuda') or 'none'}, Python {m.get('python', '?')})"),
        ("attention backend", _figure(a, lambda s: (
            f"{s['backend']} ({s['dtype']}; max abs error vs fp32 {s['max_abs_err']:.2g}, per-item loop "
            f"{s['per_item_max_abs_err']:.2g}{'' if s['ok'] else ', TOO LARGE'}; {s['backend_ms']:.2f} ms vs "
            f"{s['per_item_ms']:.2f} ms per-item)"))),
        ("cuDNN ragged attention (check only, last in the check)", _figure(res.get("attention_cudnn"), lambda s: (
            f"{s['ms']:.3f} ms against {s['backend_ms']:.3f} ms for the engine's backend (x{s['vs_backend']:.2f}; "
            f"max abs error vs fp32 {s['max_abs_err']:.2g}{'' if s['ok'] else ', TOO LARGE'})"
            if s.get("backend_ms") else f"{s['ms']:.3f} ms"))),
        ("attention kernels that can run here", _figure(a, lambda s: "; ".join(
            f"{name} {k['ms']:.3f} ms{'' if k['ok'] else ' (OFF the reference)'}" if "ms" in k
            else f"{name} fails ({_one_line(k['error'])[:80]})"
            for name, k in s.get("kernels", {}).items()) or "none")),
        ("model build (random weights)", _figure(res.get("build"), lambda s: (
            f"{s['seconds']:.2f} s ({_count(s['params'])} parameters, {s['dtype']})" if s.get("params")
            else f"{s['seconds']:.2f} s"))),
        ("first batch after build", _figure(res.get("first_batch"), lambda s: (
            f"{s['seconds']:.2f} s ({s['batch']} x {s['chunk_s']:g} s, eager, cold)"))),
    ]
    for r in res.get("sweep", {}).get("rows", []):
        rows.append((f"fixed {r['batch']} x {r['chunk_s']:g} s, eager", _figure(r, lambda s: (
            f"RTFx **{_num(s['rtfx'])}** ({s['median_s']:.3f} s per batch, median of {s['batches_timed']}; "
            f"peak {_mem(s['peak_mem_bytes'])})"))))

    before = res.get("real_chunks_before", {})

    def real(s: dict) -> str:
        c = s["chunking"]
        how = (f"packed to <= {c['max_chunk_s']:g} s" if c.get("pack") else "one per speech region") + \
            f", pad {c['pad_s']:g} s"
        gain = (f"; x{s['rtfx'] / before['rtfx']:.2f} the before-packing RTFx"
                if s is not before and s["chunker"] == "packed" and before.get("rtfx") else "")
        return (f"RTFx **{_num(s['rtfx'])}**{gain} ({s['chunks']} chunks ({how}): {s['distinct_chunks']} of a "
                f"{s['call_s']:g} s stereo call x {s['repeats']}, {s['audio_s']:,.0f} s audio; p10/p50/p90 "
                f"{s['chunk_s_p10']:.1f}/{s['chunk_s_p50']:.1f}/{s['chunk_s_p90']:.1f} s; {s['batches']} batches of "
                f"<= {s['batch_audio_s']:g} s audio; median of {len(s['passes_s'])} passes {s['median_s']:.2f} s; "
                f"reader wait {100 * s['reader_wait_frac']:.1f} %" + (
                    f", {100 * s['reader_wait_frac_after_first']:.1f} % after each pass's first batch"
                    if s.get("reader_wait_frac_after_first") is not None else "")
                + (f"; RTFx {_num(s['rtfx_after_first'])} over the batches after each pass's first"
                   if s.get("rtfx_after_first") else "") + ")")

    rows.append(("real chunks through run_batches, packed, eager", _figure(res.get("real_chunks"), real)))
    rows.append(("real chunks through run_batches, before packing, eager", _figure(before, real)))
    rows.append(("fixed batch, torch.compile", _figure(res.get("compiled"), lambda s: (
        f"RTFx **{_num(s['rtfx'])}** vs eager {_num(s['eager_rtfx'])} (x{s['speedup']:.2f}; {s['batch']} x "
        f"{s['chunk_s']:g} s; load + compile + warm-up {s['build_s']:.0f} s (compile {s['compile_s']:.0f} s), "
        f"then the first batch {s['first_batch_s']:.1f} s)"))))
    rows.append(("real chunks through run_batches, packed, torch.compile",
                 _figure(res.get("real_chunks_compiled"), real)))
    job = res.get("real_chunks_job", {})
    rows.append((f"the same, one worker job's worth (the job cap; {job.get('mode', 'as above')})",
                 _figure(job, real)))
    rows.append(("fixed batches back to back, batch k+1 started before batch k is finished",
                 _figure(res.get("fixed_overlapped"), lambda s: (
                     f"RTFx **{_num(s['overlapped']['rtfx'])}** vs {_num(s['sequential']['rtfx'])} batch by batch "
                     f"(x{s['gain']:.3f}; {s['batches_per_pass']} x {s['batch']} x {s['chunk_s']:g} s per pass, "
                     f"{s['mode']}; {1000 * s['overlapped']['seconds_per_batch']:.0f} ms per batch)"))))
    rows.append(("depthwise convolution + SiLU, one stream of the reference batch", _figure(
        res.get("depthwise"), lambda s: "; ".join(
            f"{name} {k['ms']:.3f} ms ({k['gb_per_s']:.0f} GB/s, max abs error vs fp32 {k['max_abs_err']:.2g})"
            if "ms" in k else f"{name} fails ({_one_line(k['error'])[:80]})" for name, k in s["kernels"].items())
        + "".join(f"; module compiled with the {path} path " + (f"{m['ms']:.3f} ms" if "ms" in m else "fails")
                  for path, m in s["modules"].items()))))
    rows.append(("encoder layout: tight (default) vs whole blocks per item", _figure(
        res.get("encoder_stream"), lambda s: (
            f"{s['batch']} x {s['chunk_s']:g} s: RTFx {_num(s['tight']['fixed']['rtfx'])} vs "
            f"{_num(s['blocks']['fixed']['rtfx'])} (x{s['tight_vs_blocks']['fixed']:.3f}); packed real chunks: "
            f"{_num(s['tight']['real']['rtfx'])} vs {_num(s['blocks']['real']['rtfx'])} "
            f"(x{s['tight_vs_blocks']['real']:.3f}); {s['mode']}"))))
    seq = res.get("real_chunks_sequential", {})
    rows.append((f"the same, each batch finished before the next starts ({seq.get('mode', 'as above')})",
                 _figure(seq, real)))
    rows.append(("host waits for the GPU in one batch", _figure(res.get("host_waits"), lambda s: (
        f"{s['waits']} ({s['batch']} x {s['chunk_s']:g} s, {s['mode']}; "
        + ", ".join(f"{k} x{v}" for k, v in s["where"].items()) + ")"))))
    rows.append(("confidence routing past the editor (off by default)", _figure(res.get("routing"), lambda s: (
        f"{s['batch']} x {s['chunk_s']:g} s, {s['mode']}: " + "; ".join(
            f"{r['setting']}: {r['routed']} routed, RTFx {_num(r['rtfx'])} (x{r['vs_off']:.2f})" for r in s["rows"])))))
    dtype = res.get("build", {}).get("dtype", "?")
    rows.append(("token ids, compiled vs eager", _figure(res.get("same_tokens"), lambda s: (
        f"equal on {s['equal']} of {s['chunks']} real chunks, drafts on {s['drafts_equal']} ({dtype}, random "
        "weights)" + _same_drafts(s.get("same_drafts"))))))
    rows.append(("warm start (new process, same inductor cache)", _figure(res.get("warm_start"), lambda s: (
        f"first batch starts {s['load_to_first_batch_s']:.1f} s after the model is loaded (compile from cache "
        f"and warm-up {s['compile_s']:.1f} s); model load {s['load_s']:.1f} s; imports {s['import_s']:.1f} s"))))
    rows.append((f"peak {mem_word} memory", _mem(res.get("peak_mem_bytes"))))
    rows.append(("wall time of the check", f"{res.get('elapsed_s', 0):.0f} s (budget {res.get('budget_s', 0):.0f} s)"))

    lines = ["| what | figure |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    for key in ("profile", "profile_compiled"):
        p = res.get(key, {})
        if p.get("top"):
            busy = f"; busy {100 * p['busy']:.0f} % of {p['wall_ms']:.0f} ms wall" if p.get("busy") else ""
            lines += ["", f"Top {len(p['top'])} {p['kind']} of one {p['batch']} x {p['chunk_s']:g} s batch "
                          f"({p.get('mode', 'eager')}; {p['total_ms']:.0f} ms in {p['distinct']} distinct{busy}):", "",
                      "| # | kernel | ms | share | calls |", "|---:|---|---:|---:|---:|"]
            lines += [f"| {i} | `{t['name'][:90].replace('|', '/')}` | {t['ms']:.1f} | {100 * t['share']:.1f} % "
                      f"| {t['calls']} |" for i, t in enumerate(p["top"], 1)]
            if p.get("by_kind_ms"):
                lines += ["", "By kind (ms): " + "; ".join(f"{k} {v:.0f}" for k, v in p["by_kind_ms"].items())]
            if p.get("copies_by_op"):
                lines += ["", "Device-to-device copies by the operator that launched them: "
                          + "; ".join(f"`{w[:80]}` {ms:.1f} ms x{n}" for w, ms, n in p["copies_by_op"])]
            if p.get("stages_ms"):
                lines += ["", "By stage (ms, the kernels each launched): "
                          + "; ".join(f"{k} {v:.0f}" for k, v in p["stages_ms"].items())]
        elif p:
            which = "Kernel profile" + (" (torch.compile)" if key == "profile_compiled" else "")
            lines += ["", f"{which}: {_figure(p, lambda s: 'no kernels recorded')}"]
    if res.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def _tuning_parities(res: dict) -> list[str]:
    """The float8 tunings against the eager model of the same weights, a line each."""
    parities = [(key.removeprefix("tuning_"), section["same_tokens"]) for key, section in res.items()
                if key.startswith("tuning_") and "same_tokens" in section]
    if not parities:
        return []
    return ["", "Against the eager model of the same weights (token ids; benchmarks/parity.py):", ""] + [
        f"- {name}: equal on {s['equal']} of {s['chunks']} real chunks, drafts on {s['drafts_equal']}"
        + _same_drafts(s.get("same_drafts")) for name, s in parities]


def render_tunings(res: dict) -> str:
    m = res.get("machine", {})
    lines = [f"Compile tunings on {m.get('card', '?')} (torch {m.get('torch', '?')}):", "",
             "| tuning | editor attention, depthwise path | compile + warm-up | fixed batches back to back | "
             "real chunks, packed | graphs after warm-up | kernels of one batch (top 3) |",
             "|---|---|---|---|---|---|---|"]
    for key, section in res.items():
        if key.startswith("tuning_"):
            name = key.removeprefix("tuning_")
            if "fixed" not in section:
                lines.append(f"| {name} | {_figure(section, lambda s: '')} | | | | | |")
                continue
            fixed, real, prof = section["fixed"], section["real"], section.get("profile", {})
            top = "; ".join(f"`{t['name'][:40]}` {t['ms']:.0f} ms" for t in prof.get("top", [])[:3])
            kernels = f"{prof['total_ms']:.0f} ms in {prof['distinct']} kernels: {top}" if prof.get("top") else "n/a"
            lines.append(f"| {name} | {section.get('attention', '?')}, depthwise {section.get('depthwise')} | "
                         f"{section['compile_s']:.0f} s | "
                         f"RTFx **{_num(fixed['overlapped']['rtfx'])}** "
                         f"({1000 * fixed['overlapped']['seconds_per_batch']:.0f} ms per {fixed['batch']} x "
                         f"{fixed['chunk_s']:g} s) | RTFx **{_num(real['rtfx'])}** ({real['chunks']} chunks) | "
                         f"{section['graphs_after_warm_up']} | {kernels} |")
    lines += _tuning_parities(res)
    if res.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry point


@dataclass(frozen=True)
class Variant:
    """One ``--compile-tunings`` entry: ``name[+fp8-PARTS][+dw-DEPTHWISE][@SECONDS][/ATTENTION]``."""

    tuning: str  # COMPILE_TUNING's name
    fp8: str  # CALLSCRIBE_NAR_FP8's parts, "off" by default
    warm_up_s: float  # CALLSCRIBE_NAR_WARM_UP_AUDIO_S, 0 by default
    attention: str | None  # CALLSCRIBE_NAR_ATTENTION (forced backend), None: the registry's choice
    depthwise: str | None = None  # CALLSCRIBE_NAR_DEPTHWISE_COMPILED, None: the engine's default


VARIANT_FORM = "name[+fp8-PARTS][+dw-DEPTHWISE][@SECONDS][/ATTENTION]"


def parse_variant(variant: str) -> Variant:
    word = r"[a-z]+(?:-[a-z]+)*"
    found = re.fullmatch(rf"(?P<name>{word})(?:\+fp8-(?P<fp8>[a-z]+))?(?:\+dw-(?P<dw>[a-z]+))?"
                         rf"(?:@(?P<warm>[0-9.]+))?(?:/(?P<attention>{word}))?", variant)
    if not found:
        raise ValueError(f"{variant!r}: a tuning is written {VARIANT_FORM}, "
                         "e.g. default+fp8-editor@3840, default+dw-triton or autotune-tma@3840/torch-varlen")
    # Checked here, before a process is started for it, not after its imports and model build.
    if found["name"] not in COMPILE_TUNING:
        raise ValueError(f"{variant!r}: no compile tuning {found['name']!r}; one of {', '.join(COMPILE_TUNING)}")
    if found["fp8"] and found["fp8"] not in FP8_PARTS:
        raise ValueError(f"{variant!r}: float8 parts are one of {', '.join(FP8_PARTS)}")
    if found["dw"] and found["dw"] not in COMPILED_DEPTHWISE:
        raise ValueError(f"{variant!r}: compiled depthwise paths are one of {', '.join(COMPILED_DEPTHWISE)}")
    if found["attention"] and found["attention"] not in BACKENDS:
        raise ValueError(f"{variant!r}: no attention backend {found['attention']!r}; one of {', '.join(BACKENDS)}")
    return Variant(found["name"], found["fp8"] or "off", float(found["warm"] or 0), found["attention"], found["dw"])


# What a kernel's name says it does, first match wins (cuBLAS's Hopper kernels are "nvjet").
KERNEL_KINDS = (
    ("matrix products", ("nvjet", "gemm", "cutlass", "sm90_xmma", "scaled_mm", "_mm_", "matmul", "addmm", "bmm")),
    ("attention", ("flash", "sdpa", "fmha", "attention")),
    ("copies", ("memcpy", "memset", "copy_kernel", "direct_copy")),
    ("normalisation", ("norm",)),
    ("fused element-wise (inductor)", ("triton_poi", "triton_per", "triton_red", "triton_")),
)


def compiled_depthwise_path(model: torch.nn.Module) -> str | None:
    """The path the compiled Conformer convolutions took (after the Triton kernel's probe), if fused."""
    from callscribe.engines.nar.fuse import FusedConvModule

    return next((m.compiled_path for m in model.modules() if isinstance(m, FusedConvModule)), None)


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, marks in KERNEL_KINDS if any(m in low for m in marks)), "other")


def kernel_totals(events) -> dict[str, list]:
    """Device microseconds and launches per kernel name, from the profiler's events. The stage ranges
    (modeling.stage) also appear on the GPU's timeline, spanning their kernels: they are not kernels,
    and counted they would double the total."""
    from torch.autograd import DeviceType

    totals: dict[str, list] = {}
    for e in events:
        if e.device_type == DeviceType.CUDA and not e.is_user_annotation:
            row = totals.setdefault(e.name, [0.0, 0])
            row[0] += e.time_range.elapsed_us()
            row[1] += 1
    return totals


def copy_sources(events, top: int = 10, depth: int = 3) -> list[list]:
    """Device-to-device copies by the host operator that launched them, with up to ``depth`` levels of
    its callers (outermost first): name, ms, copies, most time first. The kernel list says how long
    copies took, not who asked for them."""
    from torch.autograd import DeviceType

    sources: dict[str, list] = {}
    for e in events:
        if e.device_type != DeviceType.CPU:
            continue
        for k in getattr(e, "kernels", ()):
            if k.name.startswith("Memcpy DtoD"):
                chain, up = [], e
                while up is not None and len(chain) < depth:
                    chain.append(up.name)
                    up = getattr(up, "cpu_parent", None)
                where = " > ".join(reversed(chain))
                row = sources.setdefault(where, [0.0, 0])
                row[0] += k.duration
                row[1] += 1
    ranked = sorted(sources.items(), key=lambda kv: -kv[1][0])[:top]
    return [[where, round(us / 1000, 3), n] for where, (us, n) in ranked]


def stage_times(prof, cuda: bool) -> dict[str, float]:
    """Milliseconds per stage of the batch (modeling.stage's ranges): the GPU time of the kernels
    launched inside each, or on a CPU the CPU time inside it. Each range is read from its host side,
    whose device time sums its kernels; its copy on the GPU's timeline is the span, gaps included."""
    from torch.autograd import DeviceType

    out = {}
    for a in prof.key_averages():
        if a.key.startswith(STAGE_PREFIX) and a.device_type == DeviceType.CPU:
            us = getattr(a, "device_time_total", None) if cuda else a.cpu_time_total
            if us is None:  # torch before the rename
                us = a.cuda_time_total
            out[a.key.removeprefix(STAGE_PREFIX)] = round(us / 1000, 2)
    return out


def compiled_graphs() -> int:
    """Graphs torch.compile has made in this process so far (a recompile adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def warm_start_probe(size: str, batch: int) -> dict:
    """In a fresh process: seconds to load the model, to compile and warm it up (from whatever cache
    TORCHINDUCTOR_CACHE_DIR holds), and to run the first batch after that."""
    import_s = process_age_s()
    t = time.perf_counter()
    engine = engines.create(ENGINE, random_weights=True, size=size, device="cuda", compile=True)
    build_s = time.perf_counter() - t
    compile_s = getattr(engine, "warm_up_s", 0.0)
    prepared = engine.prepare(speech_chunks(batch, 30.0))
    graphs = compiled_graphs()
    t = time.perf_counter()
    engine.run(prepared)
    torch.cuda.synchronize()
    first = time.perf_counter() - t
    return {"graphs_after_warm_up": compiled_graphs() - graphs, "import_s": round(import_s, 1),
            "load_s": round(build_s - compile_s, 1), "compile_s": round(compile_s, 1),
            "first_batch_s": round(first, 2), "load_to_first_batch_s": round(compile_s + first, 1), "batch": batch}


def main(argv: list[str] | None = None, from_process_start: bool = False) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="the tiny model on the CPU, writing to a temporary folder")
    ap.add_argument("--out", type=Path, help=f"results JSON (default {OUT.name} beside this file; "
                                             f"with --smoke {SMOKE_OUT})")
    ap.add_argument("--md", type=Path, help="also write the Markdown report here")
    ap.add_argument("--budget-s", type=float, help="wall seconds from process start (default 230; smoke 100)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="measure torch.compile too (default: on with CUDA, off on a CPU)")
    ap.add_argument("--sweep", help="batch sizes, comma-separated (default 32,128,256; smoke 1,2,4)")
    ap.add_argument("--real-audio-s", type=float,
                    help="audio seconds of real chunks per pass, per chunking (default 7200; smoke 150)")
    ap.add_argument("--real-call-s", type=float, help="length of the call they come from (default 600; smoke 90)")
    ap.add_argument("--batch-audio-s", type=float, help="run_batches' audio seconds per batch (default 3840)")
    ap.add_argument("--compile-tunings", help="instead of the check: only compile each of these tunings and "
                                              "time it (comma-separated: default, tuned or autotune, each "
                                              "optionally +fp8-editor or +fp8-all: float8 products there, "
                                              "and @SECONDS: a production-shape warm-up batch first)")
    ap.add_argument("--warm-start-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tuning-probe", help=argparse.SUPPRESS)
    ap.add_argument("--size", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--probe-batch", type=int, default=128, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.warm_start_probe:
        print(json.dumps(warm_start_probe(args.size, args.probe_batch)))
        return 0

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("benchmarks.gpu", "callscribe.engines"):
        logging.getLogger(name).setLevel(logging.INFO)

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print("no CUDA device: the full check needs one; `python -m benchmarks.gpu --smoke` runs the CPU version",
              file=sys.stderr)
        return 2
    plan = SMOKE if args.smoke else GPU
    if args.sweep:
        sweep = tuple(int(x) for x in args.sweep.split(","))
        plan = replace(plan, sweep=sweep, ref_batch=plan.ref_batch if plan.ref_batch in sweep else sweep[0])
    if args.real_audio_s:
        plan = replace(plan, real_audio_s=args.real_audio_s)
    if args.real_call_s:
        plan = replace(plan, real_call_s=args.real_call_s)
    if args.batch_audio_s:
        plan = replace(plan, batch_audio_s=args.batch_audio_s)
    if args.budget_s:
        plan = replace(plan, budget_s=args.budget_s)
    elif args.compile_tunings and not args.smoke:
        plan = replace(plan, budget_s=TUNINGS_BUDGET_S)
    out = args.out or (SMOKE_OUT if args.smoke else OUT)
    if args.tuning_probe:
        if plan.cpu_threads:
            torch.set_num_threads(plan.cpu_threads)
        probe = Check(plan, "cuda" if cuda else "cpu", Path(tempfile.gettempdir()) / "unused.json", True, args.smoke)
        print(json.dumps(probe.tuning(args.tuning_probe)))
        return 0
    compile = args.compile if args.compile is not None else cuda
    if cuda and compile and not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        # A cache of this run's own, empty at the start: the compiled section compiles cold, and the
        # warm-start probe (a child process) finds what it wrote, as a second pod on the same volume would.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="callscribe-inductor-")

    threads = torch.get_num_threads()
    if plan.cpu_threads:
        torch.set_num_threads(plan.cpu_threads)
    try:
        check = Check(plan, "cuda" if cuda else "cpu", out, compile, args.smoke, from_process_start)
        if args.compile_tunings:
            results = check.run_tunings([v.strip() for v in args.compile_tunings.split(",") if v.strip()], args.md)
        else:
            results = check.run()
    finally:
        torch.set_num_threads(threads)
    report = render_tunings(results) if args.compile_tunings else render(results)
    print(report)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(report)
    print(f"results: {out}", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main(from_process_start=True))
