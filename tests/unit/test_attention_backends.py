"""The packed editor's attention backends: which one runs where, and that each equals the per-item reference.

On a CPU the per-item SDPA loop runs. torch's flash kernels need CUDA, so their grouped-query
handling (torch 2.11's varlen_attn has no GQA argument: the key/value heads are repeated; the
aten operator under it takes them grouped) is checked here through stand-in kernels with those
same contracts, and so is the probe that stands between the private operator and the choice;
the real kernels are checked against the reference where a CUDA device can run them.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from callscribe.engines.nar import packed
from callscribe.engines.nar.packed import (
    BACKENDS,
    ENV_FORCE,
    Facts,
    attention_backend,
    choose,
    cu_seqlens_for,
    per_item_attention,
    repeat_kv,
    varlen_attention,
)


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch):
    monkeypatch.delenv(ENV_FORCE, raising=False)
    packed.reset_choice()
    yield
    packed.reset_choice()


def _qkv(lengths: list[int], heads: int = 8, kv_heads: int = 2, d: int = 16, dtype=torch.float32, device="cpu",
         seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    q, k, v = (torch.randn(n, h, d, generator=g) for h in (heads, kv_heads, kv_heads))
    return q.to(device, dtype), k.to(device, dtype), v.to(device, dtype), cu_seqlens_for(lengths, device)


def _facts(device_type="cuda", dtype=torch.bfloat16, capability=(9, 0), flash_attn=False, torch_varlen=True,
           torch_flash=False):
    return Facts(device_type, dtype, capability, flash_attn, torch_varlen, torch_flash=torch_flash)


# ---------------------------------------------------------------- the choice


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_cpu_gets_the_per_item_loop(dtype):
    q, k, v, cu = _qkv([3, 9, 4], dtype=dtype)
    assert attention_backend(q) == "per-item-sdpa"
    torch.testing.assert_close(varlen_attention(q, k, v, cu, 9, 0.25), per_item_attention(q, k, v, cu, 0.25))


def test_the_registry_lists_every_backend_in_order_of_preference():
    assert list(BACKENDS) == ["flash-attn", "torch-flash", "torch-varlen", "per-item-sdpa"]


@pytest.mark.parametrize(("facts", "expected"), [
    (_facts(), "torch-varlen"),
    (_facts(flash_attn=True), "flash-attn"),
    (_facts(dtype=torch.float16, capability=(8, 0)), "torch-varlen"),
    (_facts(torch_varlen=False), "per-item-sdpa"),  # torch < 2.10 and no flash-attn
    (_facts(dtype=torch.float32), "per-item-sdpa"),  # the flash kernels take 16-bit inputs only
    (_facts(capability=(7, 5)), "per-item-sdpa"),  # pre-Ampere: no flash kernels
    (_facts(device_type="cpu", capability=None, flash_attn=True), "per-item-sdpa"),
    (_facts(torch_flash=True), "torch-flash"),
    (_facts(torch_flash=True, flash_attn=True), "flash-attn"),
    (_facts(torch_flash=True, dtype=torch.float32), "per-item-sdpa"),
])
def test_the_first_usable_backend_is_chosen(facts, expected):
    assert choose(facts) == expected


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (9, 0), (10, 0)])
@pytest.mark.parametrize("flash_attn", [False, True])
@pytest.mark.parametrize("torch_flash", [False, True])
def test_cuda_never_falls_to_the_loop_when_torch_has_varlen(dtype, capability, flash_attn, torch_flash):
    facts = _facts(dtype=dtype, capability=capability, flash_attn=flash_attn, torch_flash=torch_flash)
    assert choose(facts) != "per-item-sdpa"
    assert choose(facts, passes=lambda name: False) != "per-item-sdpa"  # even when the probe fails


def test_the_choice_is_made_once_and_logged_once(monkeypatch, caplog):
    calls = []
    real = packed.facts_for
    monkeypatch.setattr(packed, "facts_for", lambda *a: calls.append(a) or real(*a))
    q, k, v, cu = _qkv([5, 7])
    with caplog.at_level(logging.INFO, logger=packed.__name__):
        for _ in range(3):
            varlen_attention(q, k, v, cu, 7, 0.3)
    assert len(calls) == 1
    assert [r.getMessage() for r in caplog.records] == ["Granite NAR attention on cpu torch.float32: per-item-sdpa"]


def test_a_forced_backend_is_used_or_refused(monkeypatch):
    q, k, v, cu = _qkv([4, 4])
    monkeypatch.setenv(ENV_FORCE, "torch-varlen")
    with pytest.raises(ValueError, match="cannot run on cpu"):
        attention_backend(q)
    packed.reset_choice()
    monkeypatch.setenv(ENV_FORCE, "no-such-kernel")
    with pytest.raises(ValueError, match="unknown attention backend"):
        attention_backend(q)
    packed.reset_choice()
    monkeypatch.setenv(ENV_FORCE, "per-item-sdpa")
    assert attention_backend(q) == "per-item-sdpa"


# ---------------------------------------------------------------- grouped queries through the varlen path


def test_repeat_kv_groups_query_heads_as_the_reference_does():
    _, k, _, _ = _qkv([6], heads=8, kv_heads=2)
    assert torch.equal(repeat_kv(k, 8), k.repeat_interleave(4, dim=1))  # head h reads kv head h // 4
    assert not torch.equal(repeat_kv(k, 8), k.repeat(1, 4, 1))  # not tiled: that would pair heads wrongly
    assert repeat_kv(k, 2) is k


def _no_gqa_varlen_kernel(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None):
    """A stand-in with torch 2.11 varlen_attn's contract (no GQA argument), by a dense block-diagonal mask."""
    assert q.shape[1] == k.shape[1] == v.shape[1], "torch 2.11's varlen_attn needs as many kv heads as query heads"
    assert torch.equal(cu_q, cu_k) and max_q == max_k == int((cu_q[1:] - cu_q[:-1]).max())
    item = torch.repeat_interleave(torch.arange(len(cu_q) - 1), (cu_q[1:] - cu_q[:-1]).long())
    mask = item[:, None] == item[None, :]
    qt, kt, vt = (x.transpose(0, 1)[None] for x in (q, k, v))
    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale)[0].transpose(0, 1)


@pytest.mark.parametrize(("lengths", "heads", "kv_heads"), [([5], 8, 2), ([3, 11, 1, 7], 8, 2), ([16, 16], 4, 4),
                                                             ([9, 2], 16, 4)])
def test_the_varlen_path_with_gqa_equals_the_per_item_reference(monkeypatch, lengths, heads, kv_heads):
    monkeypatch.setattr(packed, "torch_varlen_kernel", lambda: _no_gqa_varlen_kernel)
    q, k, v, cu = _qkv(lengths, heads=heads, kv_heads=kv_heads, seed=len(lengths))
    got = BACKENDS["torch-varlen"].run(q, k, v, cu, max(lengths), 0.25)
    torch.testing.assert_close(got, per_item_attention(q, k, v, cu, 0.25), atol=1e-5, rtol=1e-5)


def _can_run_torch_varlen() -> str | None:
    """Why the real kernel cannot run here, or None when it can."""
    if not torch.cuda.is_available():
        return "torch's varlen_attn needs a CUDA device (this machine has none); the GPU check runs it"
    if packed.torch_varlen_kernel() is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn (torch >= 2.10)"
    if torch.cuda.get_device_capability() < (8, 0):
        return "the flash kernels need compute capability 8.0 or newer"
    return None


@pytest.mark.skipif(_can_run_torch_varlen() is not None, reason=str(_can_run_torch_varlen()))
@pytest.mark.parametrize("lengths", [[5], [3, 11, 1, 7], [200, 31, 64]])
@pytest.mark.parametrize("backend", ["torch-varlen", "torch-flash"])
def test_the_real_torch_kernels_equal_the_reference_on_cuda(lengths, backend):
    # As the fused editor layer hands them over: strided views, at the editor's scale.
    q, k, v = packed.grouped_views(sum(lengths), 8, 2, 128, "cuda", torch.bfloat16, torch.Generator().manual_seed(1),
                                   128 ** 0.5)
    cu = cu_seqlens_for(lengths, "cuda")
    assert attention_backend(q, k.shape[1]) in ("flash-attn", "torch-flash", "torch-varlen")
    got = BACKENDS[backend].run(q, k, v, cu, max(lengths), 1 / 128).float()
    ref = per_item_attention(q.float(), k.float(), v.float(), cu, 1 / 128)
    torch.testing.assert_close(got, ref, atol=2e-2, rtol=2e-2)  # bf16 inputs and output


def test_a_head_size_the_flash_kernels_cannot_take_goes_item_by_item():
    facts = packed.Facts("cuda", torch.bfloat16, (9, 0), flash_attn=True, torch_varlen=True, head_dim=12)
    assert packed.choose(facts) == "per-item-sdpa"
    assert packed.choose(packed.Facts("cuda", torch.bfloat16, (9, 0), True, True, 128)) == "flash-attn"


# ---------------------------------------------------------------- torch's flash operator, grouped heads as they are


def _aten_flash_stand_in(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p, is_causal, return_debug_mask, *, scale=None):
    """A stand-in with aten._flash_attention_forward's contract: grouped key/value heads taken as they are,
    a tuple back whose first element is the output."""
    assert k.shape[1] < q.shape[1] or k.shape[1] == q.shape[1]
    assert q.shape[1] % k.shape[1] == 0 and dropout_p == 0.0 and not is_causal and not return_debug_mask
    assert torch.equal(cu_q, cu_k) and max_q == max_k == int((cu_q[1:] - cu_q[:-1]).max())
    item = torch.repeat_interleave(torch.arange(len(cu_q) - 1), (cu_q[1:] - cu_q[:-1]).long())
    mask = item[:, None] == item[None, :]
    qt, kt, vt = (x.transpose(0, 1)[None] for x in (q, k, v))
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=True)[0].transpose(0, 1)
    return out, None, None, None, None


@pytest.mark.parametrize(("lengths", "heads", "kv_heads"), [([5], 8, 2), ([3, 11, 1, 7], 8, 2), ([16, 16], 4, 4),
                                                             ([9, 2], 16, 4)])
def test_the_torch_flash_path_passes_grouped_heads_and_equals_the_reference(monkeypatch, lengths, heads, kv_heads):
    seen = []

    def kernel(q, k, *rest, **kw):
        seen.append(k.shape[1])
        return _aten_flash_stand_in(q, k, *rest, **kw)

    monkeypatch.setattr(packed, "torch_flash_op", lambda: kernel)
    q, k, v, cu = _qkv(lengths, heads=heads, kv_heads=kv_heads, seed=len(lengths))
    got = BACKENDS["torch-flash"].run(q, k, v, cu, max(lengths), 0.25)
    torch.testing.assert_close(got, per_item_attention(q, k, v, cu, 0.25), atol=1e-5, rtol=1e-5)
    assert seen == [kv_heads]  # no repeated copy of the key/value heads


def _broken(*args, **kw):
    raise RuntimeError("operator moved")


def _ignores_scale(q, k, v, *rest, scale=None):
    """Right but for the softmax scale: the kernels' default 1/sqrt(d) instead of the editor's 1/d."""
    return _aten_flash_stand_in(q, k, v, *rest, scale=None)


def _tiles_heads(q, k, v, *rest, scale=None):
    """Right but for the grouping: query head h reads key/value head h % kv_heads."""
    groups = q.shape[1] // k.shape[1]
    return _aten_flash_stand_in(q, k.repeat(1, groups, 1), v.repeat(1, groups, 1), *rest, scale=scale)


def _wrong(q, k, v, *rest, **kw):
    return (torch.zeros_like(q),)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("kernel", "passes", "warning"), [
    (_aten_flash_stand_in, True, None),
    (_broken, False, "failed its probe on cpu torch.{dtype} (RuntimeError: operator moved)"),
    (_wrong, False, "is off the per-item reference by"),
    (_ignores_scale, False, "is off the per-item reference by"),
    (_tiles_heads, False, "is off the per-item reference by"),
])
def test_the_probe_accepts_a_kernel_only_when_it_runs_and_agrees(monkeypatch, caplog, kernel, passes, warning, dtype):
    monkeypatch.setattr(packed, "torch_flash_op", lambda: kernel)
    with caplog.at_level(logging.WARNING, logger=packed.__name__):
        assert packed.probe("torch-flash", torch.device("cpu"), dtype, 16, 4, 128) is passes
    messages = [r.getMessage() for r in caplog.records]
    want = None if warning is None else warning.format(dtype=str(dtype).removeprefix("torch."))
    assert (want is None and not messages) or (len(messages) == 1 and want in messages[0])


def test_the_probe_hands_over_strided_views_as_the_fused_layer_does(monkeypatch):
    seen = []

    def kernel(q, k, v, *rest, **kw):
        seen.append([(x.stride(0), x.shape[1] * x.shape[2], x.stride(-1)) for x in (q, k, v)])
        return _aten_flash_stand_in(q, k, v, *rest, **kw)

    monkeypatch.setattr(packed, "torch_flash_op", lambda: kernel)
    assert packed.probe("torch-flash", torch.device("cpu"), torch.float32, 16, 4, 128)
    row = (16 + 2 * 4) * 128
    assert seen == [[(row, 16 * 128, 1), (row, 4 * 128, 1), (row, 4 * 128, 1)]]


def test_a_failing_probe_hands_the_choice_to_the_next_backend():
    facts = _facts(torch_flash=True)
    asked = []
    assert choose(facts, passes=lambda name: asked.append(name) or False) == "torch-varlen"
    assert asked == ["torch-flash"]  # only the probed backend is asked
    assert choose(facts, passes=lambda name: True) == "torch-flash"


def test_flash_attn_is_probed_before_it_is_chosen():
    """The GPU image compiles flash-attn against one torch; a pod on another (a rebuilt image, an ABI
    change) would import it and fail, or compute garbage, in every editor layer. It is checked against
    the per-item reference like the private operator, and the next backend is chosen if it fails."""
    facts = _facts(flash_attn=True, torch_flash=True)
    asked = []
    assert choose(facts, passes=lambda name: asked.append(name) or name != "flash-attn") == "torch-flash"
    assert asked == ["flash-attn", "torch-flash"]
    assert choose(facts, passes=lambda name: True) == "flash-attn"


def test_a_forced_backend_that_fails_its_probe_is_refused():
    with pytest.raises(ValueError, match="'torch-flash' failed its check against the per-item reference"):
        choose(_facts(torch_flash=True), "torch-flash", passes=lambda name: False)
    assert choose(_facts(torch_flash=True), "torch-varlen", passes=lambda name: False) == "torch-varlen"


def test_the_choice_on_a_device_runs_the_probe_once_with_the_layers_grouping(monkeypatch):
    """The registry's path end to end, on the CPU: facts say the operator exists, the probe runs with the
    editor's grouping and its verdict decides."""
    monkeypatch.setattr(packed, "facts_for", lambda device, dtype, head_dim: _facts(torch_flash=True))
    probes = []
    monkeypatch.setattr(packed, "probe", lambda name, device, dtype, heads, kv_heads, head_dim:
                        probes.append((name, heads, kv_heads, head_dim)) or False)
    q = torch.empty(1, 16, 128)
    assert attention_backend(q, 4) == "torch-varlen"
    assert attention_backend(q, 4) == "torch-varlen"
    assert probes == [("torch-flash", 16, 4, 128)]


def test_the_torch_flash_call_traces_into_one_graph():
    """Compiled editor layers call the operator inside their graph: dynamo must trace it whole (no graph
    break), through its meta kernel, with the grouped heads and a packed length that changes."""
    compiled = torch.compile(BACKENDS["torch-flash"].run, backend="aot_eager", fullgraph=True, dynamic=True)
    cu = torch.empty(3, dtype=torch.int32, device="meta")
    for n, longest in ((100, 60), (130, 70)):
        q = torch.empty(n, 16, 128, device="meta", dtype=torch.bfloat16)
        kv = torch.empty(n, 4, 128, device="meta", dtype=torch.bfloat16)
        out = compiled(q, kv, kv, cu, longest, 1 / 128)
        assert out.shape == (n, 16, 128) and out.dtype == torch.bfloat16
