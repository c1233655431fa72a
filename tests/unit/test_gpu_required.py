"""A worker that asked for a GPU fails loudly without one, instead of running on its CPU.

The engines are the real ones, built from the tiny checkpoint in tests/fixtures/granite-nar-tiny,
on this machine's real torch: the "no GPU" cases run where torch sees none (CI, laptops) and
are skipped on a GPU machine, where the same request must succeed instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from callscribe.engines.device import ENV, DeviceUnavailable, choose_device

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "granite-nar-tiny"
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch sees no GPU")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    from safetensors.torch import load_file

    golden = load_file(str(FIXTURE / "golden.safetensors"))
    return [golden[f"item{k}.audio"].numpy() for k in (0, 1)]


def _native(**kw):
    from callscribe.engines import create

    return create("granite-nar-native", path=FIXTURE, **kw)


@no_gpu
@pytest.mark.parametrize("asked", ["cuda", "cuda:0"])
def test_the_native_engine_refuses_to_start_when_the_gpu_it_was_told_to_use_is_absent(monkeypatch, asked):
    monkeypatch.setenv(ENV, asked)
    with pytest.raises(RuntimeError, match=rf"CALLSCRIBE_DEVICE={asked} asks for a GPU, but torch sees none") as err:
        _native()
    # What torch sees, so the operator can tell a CPU-only image from a pod without a GPU.
    assert "torch.cuda.is_available() is False" in str(err.value)
    assert "0 GPU(s) visible" in str(err.value) and torch.__version__ in str(err.value)
    assert isinstance(err.value, DeviceUnavailable)


@no_gpu
def test_random_weights_are_refused_too(monkeypatch):
    from callscribe.engines.granite_native import GraniteNarNativeEngine

    monkeypatch.setenv(ENV, "cuda")
    with pytest.raises(DeviceUnavailable, match="CALLSCRIBE_DEVICE=cuda"):
        GraniteNarNativeEngine(random_weights=True, size="tiny")


@no_gpu
def test_the_reference_engine_refuses_before_it_looks_at_the_model(monkeypatch, tmp_path):
    # An empty folder would raise ModelDirError; the device is checked first.
    from callscribe import engines

    monkeypatch.setenv(ENV, "cuda")
    with pytest.raises(DeviceUnavailable, match="CALLSCRIBE_DEVICE=cuda asks for a GPU"):
        engines.create("granite-nar", path=tmp_path)


def test_cpu_from_the_environment_runs_the_native_engine(monkeypatch, clips):
    monkeypatch.setenv(ENV, "cpu")
    engine = _native()
    assert engine.device == "cpu"
    segments = engine.transcribe(clips)
    expected = engine.model.transcribe([torch.from_numpy(c) for c in clips])
    assert [[s.text for s in segs] for segs in segments] == [
        [" ".join(f"w{i}" for i in ids)] for ids in expected.tokens]
    assert next(engine.model.parameters()).device.type == "cpu"


def test_an_explicit_device_wins_over_the_environment(monkeypatch, clips):
    monkeypatch.setenv(ENV, "cuda:7")  # would fail everywhere but an 8-GPU machine
    engine = _native(device="cpu")
    assert engine.device == "cpu"
    assert len(engine.transcribe(clips[:1])) == 1


@pytest.mark.parametrize("value", [None, "", "auto", " AUTO "])
def test_unset_or_auto_keeps_the_automatic_choice(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    assert choose_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_value_that_is_no_device_is_named(monkeypatch):
    monkeypatch.setenv(ENV, "gpu")
    with pytest.raises(ValueError, match="CALLSCRIBE_DEVICE=gpu is not a torch device"):
        choose_device()


@no_gpu
def test_an_explicit_gpu_is_checked_as_well(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(DeviceUnavailable, match="device='cuda' asks for a GPU"):
        choose_device("cuda")


def test_a_gpu_index_beyond_those_visible_is_refused(monkeypatch):
    # A 1-GPU pod told to use cuda:3: the count is faked, as no CI machine has the GPUs.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv(ENV, "cuda:3")
    with pytest.raises(DeviceUnavailable, match="asks for GPU 3, but torch sees only 1"):
        choose_device()
    monkeypatch.setenv(ENV, "cuda:0")
    assert choose_device() == "cuda:0"
