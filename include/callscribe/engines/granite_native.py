"""Granite Speech NAR, native: our own PyTorch implementation (engines/nar) behind the engine interface.

Loads the checkpoint from a local folder through the documented name tables (the published
remote-code layout or transformers' native one, recognised from the tensor names), or
builds the architecture with random weights (``random_weights=True``) to measure throughput
without the checkpoint. On CUDA it runs in bf16 with flash-attn's varlen kernel for the
packed editor; on a CPU in float32 with the exact per-item fallback.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from callscribe.engines.base import EngineOutOfMemory, Segment, TorchEngine, Word
from callscribe.engines.device import choose_device
from callscribe.engines.granite import HUB_ID, PINNED_REVISION, ModelDirError, missing_weights, model_dir
from callscribe.engines.tokens import ItemOutput

if TYPE_CHECKING:  # torch is imported when an engine is made, not when the registry is
    from callscribe.engines.nar.host import HostBatch

log = logging.getLogger(__name__)

# English speech runs at about 2.5-3 words a second, 1.3 BPE tokens a word: with random
# weights each draft is held at this many tokens per second of audio.
REALISTIC_DRAFT_TOKENS_PER_S = 4.0


# Warm-up items: two lengths (2.1 s and 3.7 s), neither a whole number of any unit, so no size
# specialises to 0 or 1 and the dynamic graphs cover every later batch.
WARM_UP_SAMPLES = (33_600, 59_200)
# The production-shape warm-up (CALLSCRIBE_NAR_WARM_UP_AUDIO_S): items of these two lengths in turn
# (28.4 s and 29.6 s, packed chunks' lengths, again no whole number of any unit), up to the audio asked.
WARM_UP_BATCH_SAMPLES = (454_720, 473_920)
ENV_WARM_UP = "CALLSCRIBE_NAR_WARM_UP_AUDIO_S"
ENV_CACHE = "TORCHINDUCTOR_CACHE_DIR"
WARM_UP_FOLDER = "warm-up-"  # + seconds: the inductor cache of a production-shape warm-up
ENV_COMPILE = "CALLSCRIBE_NAR_COMPILE"
ENV_ROUTE = "CALLSCRIBE_NAR_ROUTE_CONFIDENCE"
ENV_TUNING = "CALLSCRIBE_NAR_COMPILE_TUNING"
ENV_ENCODER_STREAM = "CALLSCRIBE_NAR_ENCODER_STREAM"
# Inductor options per tuning level. "tuned" searches each generated kernel's launch settings;
# "autotune" also times Triton matrix-product templates (which can fuse the element-wise work
# around them) against cuBLAS; "autotune-tma" adds the persistent templates that load through
# Hopper's tensor memory accelerator (TMA), the Triton products closest to cuBLAS on an H100.
# All only change speed, and what they find is kept in the inductor cache beside the compiled
# graphs; a cold compile takes longer.
COMPILE_TUNING: dict[str, dict[str, bool]] = {
    "default": {},
    "tuned": {"coordinate_descent_tuning": True},
    "autotune": {"max_autotune": True, "coordinate_descent_tuning": True},
    "autotune-tma": {"max_autotune": True, "coordinate_descent_tuning": True,
                     "triton.enable_persistent_tma_matmul": True},
}


def compile_wanted(requested: bool | None, device: str) -> bool:
    """torch.compile by default on CUDA (where it pays), off on a CPU; CALLSCRIBE_NAR_COMPILE=1/0 overrides."""
    if requested is not None:
        return requested
    env = os.environ.get(ENV_COMPILE, "")
    if env not in ("", "0", "1"):
        raise ValueError(f"{ENV_COMPILE}={env!r}: 1 (compile) or 0 (eager)")
    return env == "1" if env else device.startswith("cuda")


def route_confidence_wanted(requested: float | None = None) -> float | None:
    """Confidence routing's threshold (modeling.GraniteNar.transcribe): ``requested``, else
    CALLSCRIBE_NAR_ROUTE_CONFIDENCE (a probability in (0, 1]); off (None) when unset or "off".
    Off by default: what it costs in accuracy needs the real weights to measure (docs/granite.md)."""
    raw = str(requested) if requested is not None else os.environ.get(ENV_ROUTE, "").strip().lower()
    if raw in ("", "off"):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise ValueError(f"{ENV_ROUTE}={raw!r}: a probability in (0, 1], or off")
    return value


def compile_tuning_wanted(requested: str | None = None) -> str:
    """How hard inductor tunes the compiled kernels: ``requested``, else CALLSCRIBE_NAR_COMPILE_TUNING,
    else "default" (one of COMPILE_TUNING's names)."""
    name = requested or os.environ.get(ENV_TUNING, "").strip() or "default"
    if name not in COMPILE_TUNING:
        raise ValueError(f"{ENV_TUNING}={name!r}: one of {', '.join(COMPILE_TUNING)}")
    return name


def encoder_stream_wanted(requested: str | None = None) -> str:
    """How the encoder lays out a batch (modeling.GraniteNar.encoder_stream): ``requested``, else
    CALLSCRIBE_NAR_ENCODER_STREAM, else "tight" (each item in its own frames; "blocks" puts each in
    whole attention blocks, as before, for A/B runs)."""
    from callscribe.engines.nar.modeling import ENCODER_STREAMS

    name = requested or os.environ.get(ENV_ENCODER_STREAM, "").strip() or ENCODER_STREAMS[0]
    if name not in ENCODER_STREAMS:
        raise ValueError(f"{ENV_ENCODER_STREAM}={name!r}: one of {', '.join(ENCODER_STREAMS)}")
    return name


def warm_up_audio_wanted(requested: float | None = None) -> float:
    """Seconds of audio in the production-shape warm-up batch: ``requested``, else
    CALLSCRIBE_NAR_WARM_UP_AUDIO_S, else 0 (only the small warm-up batch)."""
    raw = str(requested) if requested is not None else os.environ.get(ENV_WARM_UP, "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 36_000.0:  # NaN fails too; ten hours is far past any batch
        raise ValueError(f"{ENV_WARM_UP}={raw!r}: seconds of audio, 0 to 36000 (0: the small warm-up only)")
    return value


# The compile caches a pod may be given on a shared volume (docs/deploy.md).
COMPILE_CACHE_ENVS = (ENV_CACHE, "TRITON_CACHE_DIR")


def writable_compile_caches() -> None:
    """Point a compile cache that cannot be written (a shared volume whose driver ignores the pod's
    fsGroup, a path through a file) at a folder of this process's own, with a warning: inductor and
    Triton would otherwise fail the compile, and the warm-up with it, on every pod."""
    import tempfile

    for name in COMPILE_CACHE_ENVS:
        folder = os.environ.get(name)
        if not folder:
            continue
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".callscribe-probe-"):
                pass
        except OSError as exc:
            own = tempfile.mkdtemp(prefix=f"callscribe-{name.lower()}-")
            log.warning("%s=%s is not writable (%s: %s); compiling into %s instead, so this pod compiles "
                        "cold", name, folder, type(exc).__name__, exc, own)
            os.environ[name] = own


def cache_dir_for_warm_up(base: str | None, audio_s: float) -> str | None:
    """The inductor cache folder for a production-shape warm-up of ``audio_s`` seconds under ``base``
    (TORCHINDUCTOR_CACHE_DIR): a folder of its own, because the cache keeps each kernel's launch
    settings as tuned by whichever warm-up compiled it first, and its keys do not tell the warm-ups
    apart. None (torch's default folder, private to the process's machine) stays None; a folder that
    is already a warm-up's is replaced by this one's beside it."""
    if not base:
        return None
    parent, name = os.path.split(os.path.normpath(base))
    return os.path.join(parent if name.startswith(WARM_UP_FOLDER) else base, f"{WARM_UP_FOLDER}{audio_s:g}s")


def use_cache_for_warm_up(audio_s: float) -> None:
    """Point this process's inductor cache at the warm-up's own folder (cache_dir_for_warm_up)."""
    folder = cache_dir_for_warm_up(os.environ.get(ENV_CACHE), audio_s)
    if folder:
        os.environ[ENV_CACHE] = folder
        log.info("inductor cache for the %g s warm-up: %s", audio_s, folder)


def warm_up_batches(audio_s: float) -> list[list[int]]:
    """Sample counts of the warm-up batches, in order. Inductor fixes each generated kernel's launch
    settings (and, tuned, its searched ones) at the kernel's first launch, on the first batch's
    sizes: a production-shape batch first (``audio_s`` > 0) tunes them for the batches the worker
    runs, not for two short items. The small batch always runs (second, when there is a first)."""
    small = list(WARM_UP_SAMPLES)
    if audio_s <= 0:
        return [small]
    # As many as fit in audio_s (at least one), as run_batches fills a batch up to its audio budget.
    big, total = [WARM_UP_BATCH_SAMPLES[0]], WARM_UP_BATCH_SAMPLES[0]
    while total + (n := WARM_UP_BATCH_SAMPLES[len(big) % 2]) <= audio_s * 16_000:
        big.append(n)
        total += n
    return [big, small]


def compile_model(model: Any, tuning: str = "default") -> None:
    """Regional compilation: each Conformer block, Q-Former layer and editor layer as a dynamic-shape
    graph. Layers of one kind share their code, so torch compiles each kind once (seconds, not the
    minutes a whole unrolled encoder takes), and one graph serves every batch's stream length,
    window count and packed editor length. ``tuning`` names COMPILE_TUNING's inductor options."""
    import torch

    from callscribe.engines.nar.packed import attention_backend

    # The editor's attention kernel is chosen now, eagerly: a choice made inside a traced layer is a
    # graph break, and the changed registry would fail the graphs' guards at the next batch.
    editor = model.cfg.editor
    param = next(model.parameters())
    attention_backend(torch.empty(1, editor.heads, editor.head_dim, device=param.device, dtype=param.dtype),
                      editor.kv_heads)
    from callscribe.engines.nar.fuse import settle_compiled_depthwise
    from callscribe.engines.nar.modeling import best_and_top

    settle_compiled_depthwise(model)

    options = dict(COMPILE_TUNING[tuning]) or None
    for stack in (model.encoder.blocks, model.projector.layers, model.editor.layers):
        for i, layer in enumerate(stack):
            stack[i] = torch.compile(layer, dynamic=True, options=options)
    # The heads' argmax and token probability, read from the 100k-wide logits in one or two passes
    # instead of argmax, a divided copy, a float32 softmax and a gather.
    model.head_reduce = torch.compile(best_and_top, dynamic=True, options=options)


def missing_native_files(path: Path) -> list[str]:
    """What the native engine reads: config, weights and tokenizer (no remote code, no processor)."""
    if not path.is_dir():
        return [f"the folder itself ({path})"]
    return [f for f in ("config.json", "tokenizer.json") if not (path / f).exists()] + missing_weights(path)


def starts_word(tokenizer: Any, token: int, cache: dict[int, bool] | None = None) -> bool:
    """Whether the token's text begins with whitespace in the middle of a sequence.

    Asked of the tokenizer by decoding the token twice in a row and looking at what the second
    copy adds: that works alike for byte-level BPE (Granite's: a leading space is part of the
    token), SentencePiece's word marker, WordPiece's ``##`` continuations and a word-level
    vocabulary (tokens joined with spaces). A byte that continues a UTF-8 character adds no
    whitespace, so a word is never cut inside a character. Cached per id in ``cache``.
    """
    known = cache.get(token) if cache is not None else None
    if known is None:
        one = tokenizer.decode([token], skip_special_tokens=True)
        two = tokenizer.decode([token, token], skip_special_tokens=True)
        added = two[len(one):] if two.startswith(one) else ""
        known = added[:1].isspace()
        if cache is not None:
            cache[token] = known
    return known


def timed_words(tokenizer: Any, ids: list[int], times: list[tuple[float, float]], duration: float,
                cache: dict[int, bool] | None = None) -> list[Word]:
    """Token ids grouped into words (a word starts at a token whose text starts with a space),
    each decoded on its own and timed from its first token's start to its last token's end.
    Words that decode to nothing (special tokens only) are dropped; times are clamped to
    [0, duration] and never go back."""
    groups: list[tuple[list[int], float, float]] = []
    for i, (t, (start, end)) in enumerate(zip(ids, times, strict=True)):
        if i == 0 or starts_word(tokenizer, t, cache):
            groups.append(([t], start, end))
        else:
            group, first, _ = groups[-1]
            group.append(t)
            groups[-1] = (group, first, end)
    words, floor = [], 0.0
    for group, start, end in groups:
        text = tokenizer.decode(group, skip_special_tokens=True).strip()
        if not text:
            continue
        start = min(max(start, floor), duration)
        end = min(max(end, start), duration)
        words.append(Word(start, end, text))
        floor = end
    return words


def mean_probability(probs: list[float]) -> float | None:
    """The mean of the output tokens' probabilities (the editor's softmax maximum at each), in [0, 1];
    None without tokens."""
    if not len(probs):
        return None
    return round(min(1.0, max(0.0, float(sum(probs)) / len(probs))), 4)


class GraniteNarNativeEngine(TorchEngine):
    name = "granite-nar-native"
    takes_int16 = True  # run_batches hands over the packs' int16 chunks unconverted (see prepare)

    def __init__(self, path: Path | None = None, device: str | None = None, random_weights: bool = False,
                 size: str = "full", compile: bool | None = None, seed: int = 0, fuse: bool | None = None,
                 route_confidence: float | None = None, compile_tuning: str | None = None,
                 warm_up_audio_s: float | None = None, fp8: str | None = None, encoder_stream: str | None = None):
        import torch

        from callscribe.engines.nar.checkpoint import load_model
        from callscribe.engines.nar.config import NarConfig
        from callscribe.engines.nar.fp8 import fp8_wanted, quantize_fp8
        from callscribe.engines.nar.fuse import fusion_enabled, optimize_for_inference
        from callscribe.engines.nar.modeling import random_model

        self.torch = torch
        # Every setting is read before the model loads: a typo costs seconds, not a model load.
        self.route_confidence = route_confidence_wanted(route_confidence)
        self.compile_tuning = compile_tuning_wanted(compile_tuning)
        self.warm_up_audio_s = warm_up_audio_wanted(warm_up_audio_s)
        self.fp8 = fp8_wanted(fp8)
        self.encoder_stream = encoder_stream_wanted(encoder_stream)
        self.fused = fuse if fuse is not None else fusion_enabled()
        self.routed_items = 0  # chunks whose draft was their transcript (with routing on)
        # Explicit device, else CALLSCRIBE_DEVICE (a GPU asked for and absent raises), else auto.
        self.device = choose_device(device)
        self.compiled = compile_wanted(compile, self.device)
        if self.compiled or self.device.startswith("cuda"):  # Triton compiles the depthwise probe on CUDA too
            writable_compile_caches()
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = None
        self._word_start: dict[int, bool] = {}
        self.draft_tokens_per_s: float | None = None
        if random_weights:
            # Made directly on the device (a second on a GPU, not minutes of CPU initialisation); the
            # warm-up below runs outside this context, as every later batch does.
            with torch.device(self.device):
                self.model = random_model(NarConfig.named(size), seed=seed, dtype=dtype, device=self.device)
            self.draft_tokens_per_s = REALISTIC_DRAFT_TOKENS_PER_S
            self.source = f"random weights ({size})"
        else:
            self.path = path or model_dir()
            missing = missing_native_files(self.path)
            if missing:
                raise ModelDirError(
                    f"Granite model folder {self.path} is incomplete; missing: {', '.join(missing)}. "
                    f"Download {HUB_ID} at revision {PINNED_REVISION} into it (see docs/granite.md).")
            from tokenizers import Tokenizer

            self.model = load_model(self.path, device=self.device, dtype=dtype)
            self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
            self.source = str(self.path)
        self.model.encoder_stream = self.encoder_stream
        # Load-time fusions (same results, fewer kernels) on every device; CALLSCRIBE_NAR_FUSE=0 for A/B runs.
        if self.fused:
            optimize_for_inference(self.model)
        # Float8 products (CALLSCRIBE_NAR_FP8, off by default): after fusing, so fused products are quantized whole.
        quantize_fp8(self.model, self.fp8)
        self.warm_up_s = 0.0
        if self.compiled:
            if self.warm_up_audio_s:
                use_cache_for_warm_up(self.warm_up_audio_s)
            compile_model(self.model, self.compile_tuning)
            t = time.perf_counter()
            self.warm_up()
            self.warm_up_s = time.perf_counter() - t
            log.info("Granite NAR compiled (tuning: %s) and warmed up (%s) in %.1f s (inductor cache: %s)",
                     self.compile_tuning, f"{self.warm_up_audio_s:g} s batch first" if self.warm_up_audio_s
                     else "small batch", self.warm_up_s,
                     os.environ.get(ENV_CACHE) or "torch's default, in /tmp")
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        log.info("Granite NAR native on %s (%s%s) from %s, %s, %s encoder stream, %s", self.device, dtype,
                 "" if self.fp8 == "off" else f", float8 products: {self.fp8}", self.source,
                 "fused" if self.fused else "unfused", self.encoder_stream,
                 f"routing drafts at confidence >= {self.route_confidence:g} past the editor"
                 if self.route_confidence is not None else "every chunk edited")

    def warm_up(self) -> None:
        """Compile now, at load, not in the first job's first batch: one small batch of two lengths
        (every later shape reuses the same dynamic-shape graphs), after a production-shape batch
        when one is asked for (warm_up_batches says why)."""
        # With token probabilities, as start() runs a batch: every compiled function a batch reaches is
        # compiled here, none in the first job's first batch.
        batches = warm_up_batches(self.warm_up_audio_s)
        for lengths in batches:
            waves = [self.torch.zeros(n, device=self.device) for n in lengths]
            self.model.transcribe(waves, draft_tokens_per_s=REALISTIC_DRAFT_TOKENS_PER_S, token_probs=True)
        if self.route_confidence is not None:
            # The draft's probabilities too, on the small batch. (torch 2.11 and later trace the head's
            # scale as a value, so this usually reuses the graph above; a torch that specialises floats
            # would compile here, not in a job.)
            waves = [self.torch.zeros(n, device=self.device) for n in batches[-1]]
            self.model.transcribe(waves, draft_tokens_per_s=REALISTIC_DRAFT_TOKENS_PER_S, token_probs=True,
                                  route_confidence=self.route_confidence)

    def prepare(self, batch: list[np.ndarray]) -> HostBatch:
        """The chunks in one buffer, int16 ones as they are (``takes_int16``: run_batches skips its float
        conversion), pinned for a GPU so the copy is queued like a kernel."""
        from callscribe.engines.nar.host import HostBatch

        return HostBatch.of(batch, pin=self.device.startswith("cuda"))

    def run(self, prepared: HostBatch) -> list[list[Segment]]:
        return self.start(prepared)()

    def start(self, prepared: HostBatch) -> Callable[[], list[list[Segment]]]:
        """Queue a batch on the device; the returned call waits for it and makes its segments. The
        batch runner starts the next batch before finishing this one (transcription.run_batches), so
        the GPU is busy while the host turns this batch's tokens into text and word times."""
        durations = prepared.durations
        torch = self.torch
        try:
            waves = prepared.waves(self.device)
            pending = self.model.start(waves, draft_tokens_per_s=self.draft_tokens_per_s, token_probs=True,
                                       route_confidence=self.route_confidence)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise EngineOutOfMemory(str(exc)) from exc

        def finish() -> list[list[Segment]]:
            out = pending.finish()
            if self.route_confidence is not None:
                self.routed_items += sum(out.routed)
                log.info("%d of %d chunks routed past the editor (draft confidence >= %g)", sum(out.routed),
                         len(out.routed), self.route_confidence)
            return [self._segments(ids, times, d, probs) for ids, times, d, probs
                    in zip(out.tokens, out.token_times, durations, out.token_probs, strict=True)]

        return finish

    def _segments(self, ids: list[int], times: list[tuple[float, float]], duration: float,
                  probs: list[float] = ()) -> list[Segment]:
        """One segment per chunk, its text the full decode (as without word times), spanning the
        chunk as before; its words say when each was spoken, its confidence is the mean
        probability of its tokens."""
        text = self.decode(ids)
        if not text:
            return []
        words = timed_words(self.tokenizer, ids, times, duration, self._word_start)
        return [Segment(0.0, duration, text, words=tuple(words), confidence=mean_probability(probs))]

    def token_outputs(self, batch: list[np.ndarray]) -> list[ItemOutput]:
        """Token ids, text and editor logits per chunk (for `callscribe parity`)."""
        waves = self.prepare(batch).waves(self.device)
        out = self.model.transcribe(waves, draft_tokens_per_s=self.draft_tokens_per_s, return_logits=True)
        return [ItemOutput(ids, self.decode(ids), lg.cpu()) for ids, lg in zip(out.tokens, out.logits, strict=True)]

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:  # random weights: no vocabulary to speak of
            return ""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
