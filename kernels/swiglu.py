"""Fused SwiGLU activation `silu(gate) * up`: Triton forward/backward, reference, dispatcher.

Elementwise over tensors of any (equal) shape; math in fp32, output in the input dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .rmsnorm import HAS_TRITON, use_triton

if HAS_TRITON:
    import triton
    import triton.language as tl


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """gate_*F, up_*F -> silu(gate) * up, shape *F."""
    return (F.silu(gate.float()) * up.float()).to(gate.dtype)


if HAS_TRITON:

    @triton.jit
    def _swiglu_fwd_kernel(g_ptr, u_ptr, y_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        y = g * tl.sigmoid(g) * u
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _swiglu_bwd_kernel(g_ptr, u_ptr, dy_ptr, dg_ptr, du_ptr, n, BLOCK: tl.constexpr):
        """dg = dy * u * sig(g) * (1 + g * (1 - sig(g))),  du = dy * silu(g)."""
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        sig = tl.sigmoid(g)
        dg = dy * u * sig * (1.0 + g * (1.0 - sig))
        du = dy * g * sig
        tl.store(dg_ptr + offs, dg.to(dg_ptr.dtype.element_ty), mask=mask)
        tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=mask)


_BLOCK = 1024


class _SwiGLUTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor):
        if gate.shape != up.shape:
            raise ValueError(f"swiglu: gate {tuple(gate.shape)} and up {tuple(up.shape)} differ")
        g = gate.contiguous()
        u = up.contiguous().to(g.dtype)
        y = torch.empty_like(g)
        n = g.numel()
        if n > 0:
            _swiglu_fwd_kernel[(triton.cdiv(n, _BLOCK),)](g, u, y, n, BLOCK=_BLOCK)
        ctx.save_for_backward(g, u)
        ctx.up_dtype = up.dtype
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        g, u = ctx.saved_tensors
        dy = dy.contiguous()
        dg = torch.empty_like(g)
        du = torch.empty_like(u)
        n = g.numel()
        if n > 0:
            _swiglu_bwd_kernel[(triton.cdiv(n, _BLOCK),)](g, u, dy, dg, du, n, BLOCK=_BLOCK)
        return dg, du.to(ctx.up_dtype)


def swiglu_triton(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Triton fused silu(gate) * up (autograd-aware)."""
    return _SwiGLUTriton.apply(gate, up)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Dispatcher: Triton where `use_triton` allows, else the PyTorch reference (always the
    reference inside a `torch.compile`d region, where Inductor fuses it)."""
    if not torch.compiler.is_compiling() and use_triton(gate, up):
        return swiglu_triton(gate, up)
    return swiglu_reference(gate, up)
