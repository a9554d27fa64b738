"""RMSNorm: Triton forward/backward, a plain-PyTorch reference, and a dispatcher.

    y = x / sqrt(mean(x**2, -1) + eps) * weight

Statistics are computed in fp32 whatever the input dtype; the output has x's dtype.
This module also holds `use_triton(*tensors)`, the rule every kernel dispatcher here follows:
Triton on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 is set both now and when the
kernels were defined (Triton decides at `@triton.jit` time whether a kernel is interpreted).
"""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - triton is Linux-only
    triton = None
    tl = None
    HAS_TRITON = False

# Whether kernels in this package were defined in interpreter mode (read once, at import).
KERNELS_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(*tensors: torch.Tensor) -> bool:
    """True when the Triton kernels can run on these tensors (all on one CUDA device, or on CPU
    under an interpreter that was on at import and is still on now)."""
    if not HAS_TRITON or not tensors:
        return False
    if all(t.is_cuda for t in tensors) and not KERNELS_INTERPRETED:
        return True
    interpret_now = os.environ.get("TRITON_INTERPRET", "0") == "1"
    return KERNELS_INTERPRETED and interpret_now and all(t.device.type == "cpu" for t in tensors)


def rmsnorm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x_*D, weight_D -> y_*D (x's dtype); fp32 statistics."""
    x32 = x.float()
    rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (x32 * rstd * weight.float()).to(x.dtype)


if HAS_TRITON:

    @triton.jit
    def _rmsnorm_fwd_kernel(x_ptr, w_ptr, y_ptr, rstd_ptr, D, stride_x, stride_y, eps,
                            BLOCK_D: tl.constexpr):
        """One program per row: y = x * rstd * w; saves rstd (fp32) for the backward."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK_D)
        mask = cols < D
        x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / D + eps)
        tl.store(rstd_ptr + row, rstd)
        tl.store(y_ptr + row * stride_y + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _rmsnorm_bwd_kernel(dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_part_ptr, N, D,
                            stride_dy, stride_x, stride_dx, BLOCK_D: tl.constexpr):
        """Program p handles rows p, p+P, ...: dx per row, and a partial dW (fp32) summed over
        its rows into dw_part[p] (the host sums the P partials).

        dx = rstd * (dy*w - xhat * mean(dy*w*xhat)),  xhat = x*rstd;  dw = sum_rows dy*xhat
        """
        pid = tl.program_id(0)
        n_prog = tl.num_programs(0)
        cols = tl.arange(0, BLOCK_D)
        mask = cols < D
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        dw_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for row in range(pid, N, n_prog):
            x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
            rstd = tl.load(rstd_ptr + row)
            xhat = x * rstd
            dyw = dy * w
            c = tl.sum(dyw * xhat, axis=0) / D
            dx = (dyw - xhat * c) * rstd
            tl.store(dx_ptr + row * stride_dx + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
            dw_acc += dy * xhat
        tl.store(dw_part_ptr + pid * D + cols, dw_acc, mask=mask)


def _block_d(D: int) -> int:
    return max(16, triton.next_power_of_2(D))


class _RMSNormTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float):
        shape = x.shape
        D = shape[-1]
        x_ND = x.reshape(-1, D).contiguous()
        w_D = weight.contiguous()
        N = x_ND.shape[0]
        y_ND = torch.empty_like(x_ND)
        rstd_N = torch.empty(N, device=x.device, dtype=torch.float32)
        if N > 0:
            _rmsnorm_fwd_kernel[(N,)](x_ND, w_D, y_ND, rstd_N, D, x_ND.stride(0), y_ND.stride(0),
                                      eps, BLOCK_D=_block_d(D))
        ctx.save_for_backward(x_ND, w_D, rstd_N)
        ctx.shape = shape
        return y_ND.view(shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x_ND, w_D, rstd_N = ctx.saved_tensors
        N, D = x_ND.shape
        dy_ND = dy.reshape(-1, D).contiguous()
        dx_ND = torch.empty_like(x_ND)
        if x_ND.is_cuda:
            n_prog = min(N, torch.cuda.get_device_properties(x_ND.device).multi_processor_count * 4)
        else:
            n_prog = min(N, 4)
        n_prog = max(n_prog, 1)
        dw_part_PD = torch.zeros(n_prog, D, device=x_ND.device, dtype=torch.float32)
        if N > 0:
            _rmsnorm_bwd_kernel[(n_prog,)](dy_ND, x_ND, w_D, rstd_N, dx_ND, dw_part_PD, N, D,
                                           dy_ND.stride(0), x_ND.stride(0), dx_ND.stride(0),
                                           BLOCK_D=_block_d(D))
        dw_D = dw_part_PD.sum(0).to(w_D.dtype)
        return dx_ND.view(ctx.shape), dw_D, None


def rmsnorm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Triton RMSNorm (autograd-aware). x_*D, weight_D -> y_*D."""
    return _RMSNormTriton.apply(x, weight, eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dispatcher: Triton where `use_triton` allows, else the PyTorch reference. Inside a
    `torch.compile`d region always the reference: Inductor fuses it into its own kernels."""
    if not torch.compiler.is_compiling() and use_triton(x, weight):
        return rmsnorm_triton(x, weight, eps)
    return rmsnorm_reference(x, weight, eps)
