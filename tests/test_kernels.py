"""Triton kernels vs their PyTorch references.

CPU tests run the real Triton kernels under the interpreter: TRITON_INTERPRET=1 is set here
BEFORE triton is imported (Triton decides at `@triton.jit` time whether a kernel is
interpreted), and each test asserts that the dispatcher picked Triton. fp32 and fp16 only: the
interpreter's bf16 `tl.dot` is wrong. bf16 tests are GPU-only: `test_gpu_native` re-runs this
file in a subprocess without the interpreter (DEEPRECIPE_KERNEL_TEST_GPU=1) when CUDA exists.
"""
import importlib
import os
import subprocess
import sys

GPU_MODE = os.environ.get("DEEPRECIPE_KERNEL_TEST_GPU") == "1"
_PREV_INTERPRET = os.environ.get("TRITON_INTERPRET")
# triton.language's own @jit helpers are fixed when triton is first imported: if another module
# imported triton before this file, the interpreter cannot be switched on in this process, and
# the CPU tests re-run this file in a fresh one (test_cpu_in_fresh_process).
NEED_FRESH_PROCESS = (not GPU_MODE and "triton" in sys.modules and _PREV_INTERPRET != "1")
if not GPU_MODE:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from deeprecipe import kernels  # noqa: E402
from deeprecipe.kernels import moe_grouped, rmsnorm  # noqa: E402
from deeprecipe.kernels.moe_grouped import (grouped_mm_reference, grouped_mm_triton,  # noqa: E402
                                 moe_experts, moe_experts_reference, tile_schedule)

# `kernels.swiglu` is the dispatcher function (the package exports it); the module itself:
swiglu_mod = importlib.import_module("deeprecipe.kernels.swiglu")

# Restore the caller's environment; the fixture below turns the interpreter on per test, so
# other test modules in this process (the model tests) keep the fast reference path.
if _PREV_INTERPRET is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _PREV_INTERPRET

cpu_only = pytest.mark.skipif(GPU_MODE or NEED_FRESH_PROCESS,
                              reason="CPU interpreter tests: not in the GPU run, or triton was "
                                     "imported earlier (see test_cpu_in_fresh_process)")
DTYPES = [torch.float32, torch.float16]


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    if not GPU_MODE and not NEED_FRESH_PROCESS:
        assert rmsnorm.KERNELS_INTERPRETED, "kernels were defined without TRITON_INTERPRET=1"
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small shapes; avoids OpenMP spin contention on a shared box
    yield
    torch.set_num_threads(n)


@pytest.mark.skipif(not NEED_FRESH_PROCESS, reason="interpreter is on in this process")
def test_cpu_in_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != "DEEPRECIPE_KERNEL_TEST_GPU"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        __file__], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def _tol(dtype):
    return dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=2e-3, rtol=2e-3)


def _grads(fn, inputs, dy):
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = fn(*leaves)
    out.backward(dy)
    return out.detach(), [t.grad for t in leaves if t.requires_grad]


def _boom(*a, **k):
    raise AssertionError("reference path used where Triton was expected")


# ----------------------------------------------------------------------------- dispatch


@cpu_only
def test_dispatchers_choose_triton_under_interpreter(monkeypatch):
    x = torch.randn(4, 32)
    assert kernels.use_triton(x)
    assert kernels.select_backend(x) == "triton"
    # the reference must not be reached: make it fail
    monkeypatch.setattr(rmsnorm, "rmsnorm_reference", _boom)
    monkeypatch.setattr(swiglu_mod, "swiglu_reference", _boom)
    monkeypatch.setattr(moe_grouped, "moe_experts_reference", _boom)
    kernels.rms_norm(x, torch.ones(32))
    kernels.swiglu(x, x)
    w = torch.randn(2, 32, 16)
    moe_experts(x, torch.zeros(4, 1, dtype=torch.long), torch.ones(4, 1), w, w,
                torch.randn(2, 16, 32))


@cpu_only
def test_dispatchers_fall_back_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    x = torch.randn(4, 32)
    assert not kernels.use_triton(x)
    assert kernels.select_backend(x) == "reference"
    monkeypatch.setattr(rmsnorm, "rmsnorm_triton", _boom)
    torch.testing.assert_close(kernels.rms_norm(x, torch.ones(32)),
                               rmsnorm.rmsnorm_reference(x, torch.ones(32)))


# ----------------------------------------------------------------------------- RMSNorm


@cpu_only
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 48), (1, 17), (9, 130)])
def test_rmsnorm_matches_reference(dtype, shape):
    g = torch.Generator().manual_seed(hash(shape) % 1000)
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    w = (1 + 0.3 * torch.randn(shape[-1], generator=g)).to(dtype)
    dy = torch.randn(shape, generator=g).to(dtype)
    y, (dx, dw) = _grads(lambda a, b: kernels.rms_norm(a, b, 1e-5), (x, w), dy)
    y_ref, (dx_ref, dw_ref) = _grads(lambda a, b: rmsnorm.rmsnorm_reference(a, b, 1e-5), (x, w), dy)
    assert y.dtype == dtype and dx.dtype == dtype and dw.dtype == dtype
    torch.testing.assert_close(y, y_ref, **_tol(dtype))
    torch.testing.assert_close(dx, dx_ref, **_tol(dtype))
    tol = _tol(dtype) if dtype == torch.float32 else dict(atol=2e-2, rtol=1e-2)  # sum over rows
    torch.testing.assert_close(dw, dw_ref, **tol)


# ----------------------------------------------------------------------------- SwiGLU


@cpu_only
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 33), (2, 3, 1100)])
def test_swiglu_matches_reference(dtype, shape):
    g = torch.Generator().manual_seed(sum(shape))
    a = (torch.randn(shape, generator=g) * 2).to(dtype)
    b = torch.randn(shape, generator=g).to(dtype)
    dy = torch.randn(shape, generator=g).to(dtype)
    y, (da, db) = _grads(kernels.swiglu, (a, b), dy)
    y_ref, (da_ref, db_ref) = _grads(kernels.swiglu_reference, (a, b), dy)
    for got, ref in ((y, y_ref), (da, da_ref), (db, db_ref)):
        assert got.dtype == dtype
        torch.testing.assert_close(got, ref, **_tol(dtype))


# ----------------------------------------------------------------------------- grouped GEMM


def _counts_offs(counts):
    c = torch.tensor(counts)
    return torch.nn.functional.pad(c.cumsum(0), (1, 0))


@pytest.mark.parametrize("counts,block_m", [([5, 0, 17, 16, 0, 1], 16), ([0, 0, 0], 16),
                                            ([40], 16), ([3, 64, 0, 2], 64)])
def test_tile_schedule_covers_every_row_once(counts, block_m):
    offs = _counts_offs(counts)
    M = int(offs[-1])
    tile_e, tile_row = tile_schedule(offs, M, block_m)
    seen = torch.zeros(M, dtype=torch.long)
    for e, r0 in zip(tile_e.tolist(), tile_row.tolist()):
        if e < 0:
            continue
        rows = torch.arange(r0, min(r0 + block_m, int(offs[e + 1])))
        assert len(rows) > 0 and int(offs[e]) <= r0
        seen[rows] += 1
    assert torch.all(seen == 1)
    used = sum((c + block_m - 1) // block_m for c in counts)
    assert int((tile_e >= 0).sum()) == used


@cpu_only
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("counts,K,N", [([5, 0, 19, 1, 0], 40, 24), ([0, 0], 16, 16),
                                        ([33, 0], 32, 50)])
def test_grouped_mm_matches_reference(dtype, counts, K, N):
    g = torch.Generator().manual_seed(len(counts) * 100 + K)
    offs = _counts_offs(counts)
    M, E = int(offs[-1]), len(counts)
    x = torch.randn(M, K, generator=g).to(dtype)
    w = (torch.randn(E, K, N, generator=g) / K ** 0.5).to(dtype)
    dy = torch.randn(M, N, generator=g).to(dtype)
    y, (dx, dw) = _grads(lambda a, b: grouped_mm_triton(a, b, offs), (x, w), dy)
    # reference in fp32 on the same (rounded) inputs; Triton accumulates fp16 dots in fp32
    y_ref, (dx_ref, dw_ref) = _grads(lambda a, b: grouped_mm_reference(a, b, offs),
                                     (x.float(), w.float()), dy.float())
    assert y.shape == (M, N) and dw.shape == (E, K, N) and dw.dtype == dtype
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(y.float(), y_ref, **tol)
    torch.testing.assert_close(dx.float(), dx_ref, **tol)
    torch.testing.assert_close(dw.float(), dw_ref, **tol)
    for e, c in enumerate(counts):
        if c == 0:  # an empty expert gets an exact zero gradient, not garbage
            assert torch.all(dw[e] == 0)


def test_permute_tokens_offsets_and_inverse():
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 5, (37, 3), generator=g)
    idx[:, 0] = 1  # expert 1 popular, some experts maybe empty
    E = 7
    order, token, offs, counts = moe_grouped.permute_tokens(idx, E)
    torch.testing.assert_close(counts, torch.bincount(idx.flatten(), minlength=E))
    assert offs[0] == 0 and offs[-1] == idx.numel() and offs.dtype == torch.int64
    flat = idx.flatten()
    sorted_ids = flat[order]
    assert torch.all(sorted_ids[1:] >= sorted_ids[:-1])
    for e in range(E):
        assert torch.all(sorted_ids[offs[e]:offs[e + 1]] == e)
    assert torch.equal(token, order // 3)
    pos = moe_grouped.inverse_permutation(order)
    assert torch.equal(order[pos], torch.arange(idx.numel()))


def test_torch_backend_permute_and_combine_match_reference(monkeypatch):
    """The plain-PyTorch backend's gather / bmm-combine (and their custom backwards), with the
    CUDA-only torch._grouped_mm swapped for the reference GEMM, equal the looped reference."""
    monkeypatch.setattr(moe_grouped, "grouped_mm_torch", grouped_mm_reference)
    g = torch.Generator().manual_seed(11)
    N, D, F, E, K = 11, 16, 24, 5, 2
    x = torch.randn(N, D, generator=g)
    idx = torch.stack([torch.randint(0, 3, (N,), generator=g),
                       torch.full((N,), 3)], 1)  # expert 4 empty
    gates = torch.rand(N, K, generator=g)
    ws = [torch.randn(E, a, b, generator=g) / a ** 0.5 for a, b in ((D, F), (D, F), (F, D))]
    dy = torch.randn(N, D, generator=g)
    y, grads = _grads(lambda *a: moe_experts(*a, backend="torch"), (x, idx, gates, *ws), dy)
    y_ref, grads_ref = _grads(moe_experts_reference, (x, idx, gates, *ws), dy)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@cpu_only
@pytest.mark.parametrize("dtype,F", [(torch.float32, 48), (torch.float16, 48),
                                     (torch.float32, 40)])  # 40: dW split falls back
def test_moe_experts_matches_reference_with_empty_experts(dtype, F):
    g = torch.Generator().manual_seed(7)
    N, D, E, K = 13, 32, 6, 2
    x = torch.randn(N, D, generator=g).to(dtype)
    # experts 4 and 5 receive no token
    first = torch.randint(0, 4, (N,), generator=g)
    idx = torch.stack([first, (first + 1 + torch.randint(0, 3, (N,), generator=g)) % 4], 1)
    gates = torch.rand(N, K, generator=g)
    wg = (torch.randn(E, D, F, generator=g) / D ** 0.5).to(dtype)
    wu = (torch.randn(E, D, F, generator=g) / D ** 0.5).to(dtype)
    wd = (torch.randn(E, F, D, generator=g) / F ** 0.5).to(dtype)
    dy = torch.randn(N, D, generator=g).to(dtype)
    fn = lambda *a: moe_experts(*a, backend="triton")  # noqa: E731
    y, grads = _grads(fn, (x, idx, gates, wg, wu, wd), dy)
    y_ref, grads_ref = _grads(moe_experts_reference, (x.float(), idx, gates, wg.float(),
                                                      wu.float(), wd.float()), dy.float())
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), y_ref, **tol)
    for got, ref in zip(grads, grads_ref):  # x, gates, w_gate, w_up, w_down
        torch.testing.assert_close(got.float(), ref, **tol)
    assert torch.all(grads[2][4:] == 0) and torch.all(grads[4][4:] == 0)


@cpu_only
def test_model_forward_backward_triton_matches_reference(monkeypatch):
    """The whole MoE model through the Triton kernels equals its reference path."""
    from deeprecipe.stages.moe_model import MoEConfig, MoETransformer
    cfg = MoEConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, head_dim=16,
                    n_dense_layers=1, d_ff_dense=64, n_shared_experts=1, n_routed_experts=4,
                    top_k=2, d_ff_expert=32, max_seq_len=16, router_z_loss=1e-3)
    torch.manual_seed(0)
    model = MoETransformer(cfg)
    idx = torch.randint(0, 64, (2, 9))
    _, losses = model(idx[:, :-1], idx[:, 1:])
    losses["total"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    monkeypatch.delenv("TRITON_INTERPRET")
    _, ref = model(idx[:, :-1], idx[:, 1:])
    ref["total"].backward()
    for k in losses:
        torch.testing.assert_close(losses[k], ref[k], atol=1e-5, rtol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)


# ----------------------------------------------------------------------------- GPU (bf16)

gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
gpu_mode_only = pytest.mark.skipif(not GPU_MODE, reason="runs in test_gpu_native's subprocess")


@gpu
@needs_cuda
@pytest.mark.skipif(GPU_MODE, reason="this is the subprocess")
def test_gpu_native():
    """Re-run the GPU tests of this file without the interpreter (compiled Triton)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["DEEPRECIPE_KERNEL_TEST_GPU"] = "1"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        __file__, "-k", "bf16_gpu"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


@gpu
@needs_cuda
@gpu_mode_only
def test_rmsnorm_swiglu_bf16_gpu():
    torch.manual_seed(0)
    x = torch.randn(64, 1000, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(1000, device="cuda", dtype=torch.bfloat16)
    dy = torch.randn_like(x)
    assert kernels.use_triton(x)
    y, grads = _grads(kernels.rms_norm, (x, w), dy)
    y_ref, grads_ref = _grads(rmsnorm.rmsnorm_reference, (x, w), dy)
    torch.testing.assert_close(y, y_ref, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(grads[0], grads_ref[0], atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(grads[1].float(), grads_ref[1].float(), atol=0.5, rtol=5e-2)
    y, grads = _grads(kernels.swiglu, (x, dy), w.expand_as(x).contiguous())
    y_ref, grads_ref = _grads(kernels.swiglu_reference, (x, dy), w.expand_as(x).contiguous())
    torch.testing.assert_close(y, y_ref, atol=2e-2, rtol=2e-2)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


@gpu
@needs_cuda
@gpu_mode_only
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_moe_experts_bf16_gpu(backend):
    if backend == "torch" and not (hasattr(torch, "_grouped_mm")
                                   and torch.cuda.get_device_capability()[0] >= 9):
        pytest.skip("torch._grouped_mm needs sm90+")
    g = torch.Generator(device="cuda").manual_seed(0)
    N, D, F, E, K = 1000, 256, 128, 16, 4
    x = torch.randn(N, D, device="cuda", generator=g).bfloat16()
    idx = torch.randn(N, E - 2, device="cuda", generator=g).topk(K, -1).indices  # 2 empty
    gates = torch.rand(N, K, device="cuda", generator=g)
    ws = [(torch.randn(E, a, b, device="cuda", generator=g) / a ** 0.5).bfloat16()
          for a, b in ((D, F), (D, F), (F, D))]
    dy = torch.randn(N, D, device="cuda", generator=g).bfloat16()
    fn = lambda *a: moe_experts(*a, backend=backend)  # noqa: E731
    y, grads = _grads(fn, (x, idx, gates, *ws), dy)
    y_ref, grads_ref = _grads(moe_experts_reference,
                              (x.float(), idx, gates, *[w.float() for w in ws]), dy.float())
    torch.testing.assert_close(y.float(), y_ref, atol=3e-2, rtol=3e-2)
    # bf16 rounding of sums (e.g. d gate = <y_e, dy> over D) makes elementwise tolerances
    # meaningless near zero: compare relative Frobenius error instead
    for name, a, b in zip(["x", "gates", "w_gate", "w_up", "w_down"], grads, grads_ref):
        rel = ((a.float() - b).norm() / b.norm()).item()
        assert rel < 1e-2, f"d{name}: relative error {rel:.2e}"
    assert all(torch.all(w[E - 2:] == 0) for w in grads[2:])  # the two empty experts


def test_fused_gate_up_is_reused_without_autograd_until_a_weight_changes():
    from deeprecipe.kernels.moe_grouped import fused_gate_up
    g, u = torch.randn(3, 8, 5), torch.randn(3, 8, 5)
    with torch.no_grad():
        first = fused_gate_up(g, u, torch.float32)
        assert torch.equal(first, torch.cat([g, u], dim=-1))
        assert fused_gate_up(g, u, torch.float32).data_ptr() == first.data_ptr()  # reused
        u.mul_(2.0)  # an optimiser step or copy_ bumps the version: rebuilt, not stale
        second = fused_gate_up(g, u, torch.float32)
        assert torch.equal(second, torch.cat([g, u], dim=-1))
        assert fused_gate_up(g, u, torch.float64).dtype == torch.float64  # keyed by dtype
    # with autograd (training) a fresh buffer every call
    a, b = fused_gate_up(g, u, torch.float32), fused_gate_up(g, u, torch.float32)
    assert a.data_ptr() != b.data_ptr() and not hasattr(u, "_fused_gate_up")
