"""MoE expert computation over stacked expert weights, with a Triton grouped GEMM.

Shapes: N tokens, D model dim, F expert hidden dim, E experts, K = top-k, M = N*K
token-expert assignments. Expert weights are stacked: w_gate_EDF, w_up_EDF, w_down_EFD.

    y_N,D = sum_k gate_NK[n,k] * FFN_{idx[n,k]}(x_n),   FFN_e(x) = (silu(x Wg_e) * (x Wu_e)) Wd_e

Steps: permute (sort the M assignments by expert, stable) -> three grouped GEMMs with SwiGLU in
between -> un-permute and combine with the gate weights. Expert e owns the contiguous rows
offs_E1[e]:offs_E1[e+1] of the sorted activations; empty experts own an empty slice.

Backends for the grouped GEMM (`backend=`):
  'triton'     : `grouped_mm_triton`, forward and backward (dX and dW) all in Triton.
  'torch'      : `torch._grouped_mm` (CUDA, bf16, sm90+), autograd by PyTorch.
  'reference'  : `moe_experts_reference`, a loop that runs EVERY expert's FFN on its slice, empty
                 or not (skipping empty experts breaks DeepSpeed ZeRO collectives).
Default (`backend=None`, or env DEEPRECIPE_MOE_BACKEND): 'torch' on CUDA bf16 sm90+ when
torch._grouped_mm exists, else 'triton' where `use_triton` allows, else 'reference'.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .rmsnorm import HAS_TRITON, use_triton
from .swiglu import swiglu

if HAS_TRITON:
    import triton
    import triton.language as tl


# ----------------------------------------------------------------------------- permutation

def permute_tokens(topk_idx_NK: torch.Tensor, n_experts: int):
    """Sort token-expert assignments by expert (stable).

    Returns order_M (assignment index n*K+k in sorted order), token_M (= order_M // K, the
    token each sorted row comes from), offs_E1 (int64 row offsets, offs[e]:offs[e+1] is expert
    e's slice) and counts_E (tokens per expert).
    """
    K = topk_idx_NK.shape[1]
    flat_M = topk_idx_NK.reshape(-1)
    order_M = torch.argsort(flat_M, stable=True)
    token_M = order_M // K
    counts_E = torch.bincount(flat_M, minlength=n_experts)
    offs_E1 = F.pad(counts_E.cumsum(0), (1, 0))
    return order_M, token_M, offs_E1, counts_E


def unpermute_combine(y_sorted_MD: torch.Tensor, order_M: torch.Tensor, topk_w_NK: torch.Tensor):
    """Put sorted expert outputs back in assignment order and sum over k with the gate weights
    (fp32 combine, deterministic: no scatter-add). Returns y_ND in y_sorted's dtype."""
    N, K = topk_w_NK.shape
    M, D = y_sorted_MD.shape
    inv_M = torch.empty_like(order_M)
    inv_M[order_M] = torch.arange(M, device=order_M.device)
    y_NKD = y_sorted_MD[inv_M].view(N, K, D)
    return (y_NKD.float() * topk_w_NK.float().unsqueeze(-1)).sum(1).to(y_sorted_MD.dtype)


# ----------------------------------------------------------------------------- reference

def expert_ffn_reference(x_TD: torch.Tensor, w_gate_DF: torch.Tensor, w_up_DF: torch.Tensor,
                         w_down_FD: torch.Tensor) -> torch.Tensor:
    """One expert's SwiGLU FFN on its (possibly empty) T rows: x_TD -> y_TD."""
    return (F.silu(x_TD @ w_gate_DF) * (x_TD @ w_up_DF)) @ w_down_FD


def grouped_mm_reference(x_MK: torch.Tensor, w_EKN: torch.Tensor, offs_E1: torch.Tensor):
    """y[offs[e]:offs[e+1]] = x[offs[e]:offs[e+1]] @ w[e] for every e (empty slices included)."""
    bounds = offs_E1.tolist()
    outs = [x_MK[bounds[e]:bounds[e + 1]] @ w_EKN[e] for e in range(w_EKN.shape[0])]
    return torch.cat(outs, 0)


def moe_experts_reference(x_ND, topk_idx_NK, topk_w_NK, w_gate_EDF, w_up_EDF, w_down_EFD):
    """Plain-PyTorch MoE experts: permute, then every expert runs `expert_ffn_reference` on its
    slice (even an empty one), then combine. Returns y_ND."""
    E = w_gate_EDF.shape[0]
    order_M, token_M, offs_E1, _ = permute_tokens(topk_idx_NK, E)
    x_MD = x_ND[token_M]
    bounds = offs_E1.tolist()
    outs = []
    for e in range(E):  # no `if empty: continue` -- see module docstring
        x_TD = x_MD[bounds[e]:bounds[e + 1]]
        outs.append(expert_ffn_reference(x_TD, w_gate_EDF[e].to(x_TD.dtype),
                                         w_up_EDF[e].to(x_TD.dtype), w_down_EFD[e].to(x_TD.dtype)))
    return unpermute_combine(torch.cat(outs, 0), order_M, topk_w_NK)


# ----------------------------------------------------------------------------- Triton

if HAS_TRITON:

    @triton.jit
    def _grouped_mm_kernel(x_ptr, w_ptr, y_ptr, tile_expert_ptr, tile_row_ptr, offs_ptr,
                           N, K, s_xm, s_xk, s_we, s_wk, s_wn, s_ym, s_yn,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """y[rows of tile] = x[rows] @ w[e]; grid = (row tiles, N tiles). Each row tile belongs
        to one expert (tile_expert, -1 = unused tile) and spans [tile_row, offs[e+1]) cut to
        BLOCK_M rows."""
        tile = tl.program_id(0)
        pid_n = tl.program_id(1)
        e = tl.load(tile_expert_ptr + tile)
        if e >= 0:
            row0 = tl.load(tile_row_ptr + tile)
            row_end = tl.load(offs_ptr + e + 1)
            rm = row0 + tl.arange(0, BLOCK_M)
            rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
            rk = tl.arange(0, BLOCK_K)
            m_mask = rm < row_end
            n_mask = rn < N
            w_base = w_ptr + e * s_we
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                k_mask = (k0 + rk) < K
                a = tl.load(x_ptr + rm[:, None] * s_xm + (k0 + rk)[None, :] * s_xk,
                            mask=m_mask[:, None] & k_mask[None, :], other=0.0)
                b = tl.load(w_base + (k0 + rk)[:, None] * s_wk + rn[None, :] * s_wn,
                            mask=k_mask[:, None] & n_mask[None, :], other=0.0)
                acc = tl.dot(a, b, acc)
            tl.store(y_ptr + rm[:, None] * s_ym + rn[None, :] * s_yn,
                     acc.to(y_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])

    @triton.jit
    def _grouped_mm_dw_kernel(x_ptr, dy_ptr, dw_ptr, offs_ptr, K, N,
                              s_xm, s_xk, s_dym, s_dyn, s_we, s_wk, s_wn,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """dw[e] = x[rows_e]^T @ dy[rows_e]; grid = (E, K tiles, N tiles). Empty experts get
        zeros (the loop runs no iteration)."""
        e = tl.program_id(0)
        pid_k = tl.program_id(1)
        pid_n = tl.program_id(2)
        row0 = tl.load(offs_ptr + e)
        row_end = tl.load(offs_ptr + e + 1)
        rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        k_mask = rk < K
        n_mask = rn < N
        acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
        for m0 in range(row0, row_end, BLOCK_M):
            rm = m0 + tl.arange(0, BLOCK_M)
            m_mask = rm < row_end
            a_t = tl.load(x_ptr + rk[:, None] * s_xk + rm[None, :] * s_xm,
                          mask=k_mask[:, None] & m_mask[None, :], other=0.0)
            g = tl.load(dy_ptr + rm[:, None] * s_dym + rn[None, :] * s_dyn,
                        mask=m_mask[:, None] & n_mask[None, :], other=0.0)
            acc = tl.dot(a_t, g, acc)
        tl.store(dw_ptr + e * s_we + rk[:, None] * s_wk + rn[None, :] * s_wn,
                 acc.to(dw_ptr.dtype.element_ty), mask=k_mask[:, None] & n_mask[None, :])


def _blocks(x: torch.Tensor, kind: str):
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) for kind 'fwd' (also dX) or 'dw'.

    tl.dot needs every tile dim >= 16. The CPU interpreter runs one numpy op per tile, so small
    M tiles waste less on masked rows there. The sm90 bf16/fp16 tiles were the fastest of a
    sweep on an H200 (N=16384 tokens, D=1024, F=256, E=64, top-6: fwd ~240 TF/s, dW ~400 TF/s);
    elsewhere a conservative tile that fits ~100 KB of shared memory in fp32.
    """
    if x.device.type != "cuda":
        return 16, 32, 32, 1, 1
    if x.element_size() == 2 and torch.cuda.get_device_capability(x.device)[0] >= 9:
        return (128, 256, 64, 8, 4) if kind == "fwd" else (64, 256, 128, 8, 3)
    return 64, 128, 32, 4, 3


def tile_schedule(offs_E1: torch.Tensor, M: int, block_m: int):
    """Row tiles for the grouped GEMM, computed on device (no host sync).

    Returns tile_expert_T (int64; -1 for the unused tail) and tile_row_T (first row of each
    tile). T = cdiv(M, block_m) + E bounds sum_e cdiv(count_e, block_m) from above.
    """
    E = offs_E1.numel() - 1
    counts_E = offs_E1[1:] - offs_E1[:-1]
    tiles_E = (counts_E + block_m - 1) // block_m
    tile_end_E = tiles_E.cumsum(0)
    n_tiles = (M + block_m - 1) // block_m + E
    t_T = torch.arange(n_tiles, device=offs_E1.device, dtype=offs_E1.dtype)
    e_T = torch.searchsorted(tile_end_E, t_T, right=True)
    valid_T = e_T < E
    e_c = e_T.clamp(max=E - 1)
    first_T = tile_end_E[e_c] - tiles_E[e_c]
    tile_row_T = offs_E1[e_c] + (t_T - first_T) * block_m
    tile_expert_T = torch.where(valid_T, e_c, torch.full_like(e_c, -1))
    return tile_expert_T.contiguous(), tile_row_T.contiguous()


def _launch_grouped_mm(x_MK, w_EKN, offs_E1, out_dtype):
    M, K = x_MK.shape
    E, K2, N = w_EKN.shape
    assert K == K2, f"grouped_mm: x has K={K}, w has K={K2}"
    y_MN = torch.empty(M, N, device=x_MK.device, dtype=out_dtype)
    if M == 0:
        return y_MN
    BM, BN, BK, warps, stages = _blocks(x_MK, "fwd")
    tile_expert_T, tile_row_T = tile_schedule(offs_E1, M, BM)
    grid = (tile_expert_T.numel(), triton.cdiv(N, BN))
    _grouped_mm_kernel[grid](x_MK, w_EKN, y_MN, tile_expert_T, tile_row_T, offs_E1, N, K,
                             x_MK.stride(0), x_MK.stride(1),
                             w_EKN.stride(0), w_EKN.stride(1), w_EKN.stride(2),
                             y_MN.stride(0), y_MN.stride(1),
                             BLOCK_M=BM, BLOCK_N=BN, BLOCK_K=BK, num_warps=warps,
                             num_stages=stages)
    return y_MN


def _launch_grouped_mm_dw(x_MK, dy_MN, offs_E1, E, out_dtype):
    M, K = x_MK.shape
    N = dy_MN.shape[1]
    dw_EKN = torch.empty(E, K, N, device=x_MK.device, dtype=out_dtype)
    BM, BN, BK, warps, stages = _blocks(x_MK, "dw")
    grid = (E, triton.cdiv(K, BK), triton.cdiv(N, BN))
    _grouped_mm_dw_kernel[grid](x_MK, dy_MN, dw_EKN, offs_E1, K, N,
                                x_MK.stride(0), x_MK.stride(1), dy_MN.stride(0), dy_MN.stride(1),
                                dw_EKN.stride(0), dw_EKN.stride(1), dw_EKN.stride(2),
                                BLOCK_M=BM, BLOCK_N=BN, BLOCK_K=BK, num_warps=warps,
                             num_stages=stages)
    return dw_EKN


class _GroupedMMTriton(torch.autograd.Function):
    """y_MN = x_MK @ w_EKN[e] on expert e's rows; backward dX = dY @ w[e]^T (same kernel on
    the transposed view) and dW[e] = x_e^T @ dY_e (dW kernel), both in Triton."""

    @staticmethod
    def forward(ctx, x_MK, w_EKN, offs_E1):
        x_MK = x_MK.contiguous()
        offs_E1 = offs_E1.to(torch.int64).contiguous()
        ctx.save_for_backward(x_MK, w_EKN, offs_E1)
        return _launch_grouped_mm(x_MK, w_EKN, offs_E1, x_MK.dtype)

    @staticmethod
    def backward(ctx, dy_MN):
        x_MK, w_EKN, offs_E1 = ctx.saved_tensors
        dy_MN = dy_MN.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _launch_grouped_mm(dy_MN, w_EKN.transpose(1, 2), offs_E1, x_MK.dtype)
        if ctx.needs_input_grad[1]:
            dw = _launch_grouped_mm_dw(x_MK, dy_MN, offs_E1, w_EKN.shape[0], w_EKN.dtype)
        return dx, dw, None


def grouped_mm_triton(x_MK: torch.Tensor, w_EKN: torch.Tensor, offs_E1: torch.Tensor):
    """Triton grouped GEMM (autograd-aware): rows offs[e]:offs[e+1] of x times w[e]."""
    return _GroupedMMTriton.apply(x_MK, w_EKN.to(x_MK.dtype), offs_E1)


def grouped_mm_torch(x_MK: torch.Tensor, w_EKN: torch.Tensor, offs_E1: torch.Tensor):
    """torch._grouped_mm (CUDA bf16, sm90+); offs are the E cumulative row ends, int32."""
    return torch._grouped_mm(x_MK.contiguous(), w_EKN.to(x_MK.dtype),
                             offs=offs_E1[1:].to(torch.int32))


# ----------------------------------------------------------------------------- dispatcher

BACKENDS = ("triton", "torch", "reference")


def select_backend(x_ND: torch.Tensor) -> str:
    """The backend `moe_experts(..., backend=None)` uses for this input."""
    env = os.environ.get("DEEPRECIPE_MOE_BACKEND")
    if env:
        if env not in BACKENDS:
            raise ValueError(f"DEEPRECIPE_MOE_BACKEND={env!r}; choose one of {BACKENDS}")
        return env
    if (x_ND.is_cuda and x_ND.dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm")
            and torch.cuda.get_device_capability(x_ND.device)[0] >= 9):
        return "torch"
    if use_triton(x_ND):
        return "triton"
    return "reference"


def moe_experts(x_ND: torch.Tensor, topk_idx_NK: torch.Tensor, topk_w_NK: torch.Tensor,
                w_gate_EDF: torch.Tensor, w_up_EDF: torch.Tensor, w_down_EFD: torch.Tensor,
                backend: str | None = None) -> torch.Tensor:
    """Routed experts: y_ND = sum_k topk_w[n,k] * FFN_{topk_idx[n,k]}(x_n).

    x_ND activations, topk_idx_NK int64 expert ids, topk_w_NK gate weights (any float dtype;
    combined in fp32). Output in x's dtype.
    """
    backend = backend or select_backend(x_ND)
    if backend == "reference":
        return moe_experts_reference(x_ND, topk_idx_NK, topk_w_NK, w_gate_EDF, w_up_EDF, w_down_EFD)
    if backend not in BACKENDS:
        raise ValueError(f"moe_experts: unknown backend {backend!r}; choose one of {BACKENDS}")
    gmm = grouped_mm_triton if backend == "triton" else grouped_mm_torch
    E = w_gate_EDF.shape[0]
    order_M, token_M, offs_E1, _ = permute_tokens(topk_idx_NK, E)
    x_MD = x_ND[token_M]
    h_MF = swiglu(gmm(x_MD, w_gate_EDF, offs_E1), gmm(x_MD, w_up_EDF, offs_E1))
    y_MD = gmm(h_MF, w_down_EFD, offs_E1)
    return unpermute_combine(y_MD, order_M, topk_w_NK)
