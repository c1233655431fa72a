"""Paths of the GPU check that the CPU smoke run does not take as a GPU run does: a compile that fails
(the sections after it run on the eager engine), and the whole check on a bfloat16 model."""

from __future__ import annotations

import json

import torch

from benchmarks import gpu

SHORT_REAL = ["--real-call-s", "30", "--real-audio-s", "1"]


def test_a_compile_that_fails_leaves_an_eager_engine_for_the_sections_after_it(tmp_path, monkeypatch):
    """On a GPU the check compiles by default; a compile that fails there (torch-flash, the tight stream
    or best_and_top compiled: none has run on a GPU) used to leave ``engine`` None, and every extra
    section after it failed on None (or said the engine 'has no start()')."""
    build = gpu.Check.build

    def failing_compile(self, compile):
        if compile:
            raise RuntimeError("inductor says no")
        return build(self, compile)

    monkeypatch.setattr(gpu.Check, "build", failing_compile)
    rc = gpu.main(["--smoke", "--compile", "--sweep", "1", *SHORT_REAL, "--budget-s", "300",
                   "--out", str(tmp_path / "r.json")])
    res = json.loads((tmp_path / "r.json").read_text())
    assert rc == 1 and res["errors"] == {"compiled": "RuntimeError: inductor says no"}
    assert res["fixed_overlapped"]["mode"] == "eager" and res["fixed_overlapped"]["overlapped"]["rtfx"] > 0
    for key in ("real_chunks_job", "real_chunks_sequential"):
        assert res[key]["rtfx"] > 0, res[key]
    for key in ("depthwise", "routing", "encoder_stream"):
        assert "error" not in res[key], res[key]
    assert any("measure the eager engine" in n for n in res["notes"])


def test_the_check_runs_its_sections_on_a_bfloat16_model(tmp_path, monkeypatch):
    """CUDA runs the engine in bf16 and the smoke run in float32: every section (attention against the
    fp32 reference, parity's logits and quantiles, depthwise against the fp32 convolution, routing's
    probabilities, the profile) must take bf16 tensors too."""
    create = gpu.engines.create

    def bf16(*args, **kwargs):
        engine = create(*args, **kwargs)
        engine.model.to(torch.bfloat16)
        return engine

    monkeypatch.setattr(gpu.engines, "create", bf16)
    rc = gpu.main(["--smoke", "--sweep", "1", *SHORT_REAL, "--out", str(tmp_path / "r.json")])
    res = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and res["errors"] == {}, res["errors"]
    assert res["build"]["dtype"] == "bfloat16" and res["attention"]["dtype"] == "bfloat16"
    assert res["attention"]["ok"] and res["eager_tokens"]["chunks"] >= 1
    assert res["depthwise"]["kernels"]["shifted sum (eager)"]["max_abs_err"] < 0.05
    json.dumps(res)  # every figure is a plain JSON value
