"""MoE expert computation over stacked expert weights, with a Triton grouped GEMM.

Shapes: N tokens, D model dim, F expert hidden dim, E experts, K = top-k, M = N*K
token-expert assignments. Expert weights are stacked: w_gate_EDF, w_up_EDF, w_down_EFD.

    y_N,D = sum_k gate_NK[n,k] * FFN_{idx[n,k]}(x_n),   FFN_e(x) = (silu(x Wg_e) * (x Wu_e)) Wd_e

Steps: sort the M assignments by expert once (stable; no host sync) -> grouped GEMMs with
SwiGLU in between -> combine with the gate weights. Expert e owns the contiguous sorted rows
offs_E1[e]:offs_E1[e+1]; empty experts own an empty slice. pos_M is the inverse permutation
(pos[n*K+k] = the sorted row of assignment (n, k)), so the combine is a gather over K rows per
token with an fp32 accumulator, deterministic, never a scatter-add.

Backends (`backend=`):
  'triton'     : one autograd Function, everything in Triton: the gate and up GEMMs are one
                 launch over [Wg | Wu] (written by the bf16 cast the weights need anyway) that
                 reads x rows through the sort index (no permuted copy of x), SwiGLU on the
                 gate|up output, the down GEMM, then a fused combine (fp32 accumulate, bf16 out).
                 Backward: fused combine-backward (dY rows and d gates in one pass), dX as
                 ONE GEMM over [dG|dU] @ [Wg|Wu]^T followed by a gather-sum over the K
                 copies, and dW kernels that also read x through the sort index.
  'torch'      : plain PyTorch: `torch._grouped_mm` (CUDA, bf16, sm90+) for the GEMMs, index_select
                 gathers whose backward is a gather-sum (no atomics), a bmm combine.
  'reference'  : `moe_experts_reference`, a loop that runs EVERY expert's FFN on its slice, empty
                 or not (skipping empty experts breaks DeepSpeed ZeRO collectives).
Default (`backend=None`, or env DEEPRECIPE_MOE_BACKEND): 'triton' on CUDA (and on CPU under
TRITON_INTERPRET=1), else 'reference'. Measured on an H200 (bench/moe_gpu.py, BENCHMARKS.md),
16384 tokens, D 1024, F 256, E 64, top-6, fwd / fwd+bwd: triton 0.87 / 2.05 ms, torch 1.06 /
2.98 ms, reference 7.6 / 43 ms.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .rmsnorm import HAS_TRITON, KERNELS_INTERPRETED, use_triton
from .swiglu import swiglu

if HAS_TRITON:
    import triton
    import triton.language as tl


# ----------------------------------------------------------------------------- permutation

def permute_tokens(topk_idx_NK: torch.Tensor, n_experts: int):
    """Sort token-expert assignments by expert (stable), without a host sync.

    Returns order_M (assignment index n*K+k in sorted order), token_M (= order_M // K, the
    token each sorted row comes from), offs_E1 (int64 row offsets, offs[e]:offs[e+1] is expert
    e's slice) and counts_E (tokens per expert).
    """
    K = topk_idx_NK.shape[1]
    flat_M = topk_idx_NK.reshape(-1)
    sorted_M, order_M = torch.sort(flat_M, stable=True)
    # offs[e] = number of assignments to experts < e (bincount would sync on CUDA)
    bounds = torch.arange(n_experts + 1, device=flat_M.device, dtype=sorted_M.dtype)
    offs_E1 = torch.searchsorted(sorted_M, bounds).to(torch.int64)
    token_M = order_M // K
    return order_M, token_M, offs_E1, offs_E1[1:] - offs_E1[:-1]


def inverse_permutation(order_M: torch.Tensor) -> torch.Tensor:
    """pos_M with pos[order[m]] = m (scatter, no host sync)."""
    return torch.empty_like(order_M).scatter_(
        0, order_M, torch.arange(order_M.numel(), device=order_M.device, dtype=order_M.dtype))


def unpermute_combine(y_sorted_MD: torch.Tensor, order_M: torch.Tensor, topk_w_NK: torch.Tensor):
    """Put sorted expert outputs back in assignment order and sum over k with the gate weights
    (fp32 combine, deterministic: no scatter-add). Returns y_ND in y_sorted's dtype."""
    N, K = topk_w_NK.shape
    M, D = y_sorted_MD.shape
    y_NKD = y_sorted_MD[inverse_permutation(order_M)].view(N, K, D)
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
    """Plain-PyTorch MoE experts, the naive baseline: permute, then every expert runs
    `expert_ffn_reference` on its slice (even an empty one; one host sync for the slice
    bounds), then combine. Returns y_ND."""
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


# ----------------------------------------------------------------------------- Triton kernels

if HAS_TRITON:

    @triton.jit
    def _mm_acc(acc, a_ptr, a_row_off, m_mask, s_ak, k_lo, k_hi, b_ptr, s_bk, col_off, n_mask,
                BLOCK_K: tl.constexpr):
        """acc += A[rows, k_lo:k_hi] @ B[0:k_hi-k_lo, cols]; a_row_off = row * row stride,
        col_off = col * column stride of B (both precomputed by the caller)."""
        rk = tl.arange(0, BLOCK_K)
        for k0 in range(k_lo, k_hi, BLOCK_K):
            kk = k0 + rk
            k_mask = kk < k_hi
            a = tl.load(a_ptr + a_row_off[:, None] + kk[None, :] * s_ak,
                        mask=m_mask[:, None] & k_mask[None, :], other=0.0)
            b = tl.load(b_ptr + (kk - k_lo)[:, None] * s_bk + col_off[None, :],
                        mask=k_mask[:, None] & n_mask[None, :], other=0.0)
            acc = tl.dot(a, b, acc)
        return acc

    def _prune_configs(configs, named_args, **kwargs):
        """A column tile must lie wholly in one of the two N halves (N1 % BLOCK_N == 0); the
        small last config is the fallback for fp32 or pre-Hopper GPUs, the others are for 16-bit
        inputs on sm90+."""
        N = named_args["N"]
        N1 = named_args.get("N1", N)
        a = named_args["a_ptr"]
        big = (len(configs) == 1 or (a.element_size() == 2 and a.is_cuda
                                     and torch.cuda.get_device_capability(a.device)[0] >= 9))
        keep = configs[:-1] if big and len(configs) > 1 else configs[-1:]
        return [c for c in keep if N1 >= N or N1 % c.kwargs["BLOCK_N"] == 0]

    def _fwd_configs():
        if KERNELS_INTERPRETED:  # one numpy op per tile: small tiles, no tuning
            return [triton.Config({"BLOCK_N": 16, "BLOCK_K": 16}, num_warps=1, num_stages=1)]
        # sm90 bf16: 128x256x64/w8/s4 was the best of an earlier H200 sweep, then two
        # neighbours; the last is the fp32 / pre-Hopper fallback (see _prune_configs)
        return [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
                for bn, bk, w, s in ((256, 64, 8, 4), (128, 64, 8, 4), (128, 128, 8, 3),
                                     (64, 32, 4, 2))]

    def _dw_configs():
        if KERNELS_INTERPRETED:
            return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}, num_warps=1,
                                  num_stages=1)]
        return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w,
                              num_stages=s)
                for bm, bn, bk, w, s in ((64, 256, 128, 8, 3), (64, 128, 128, 8, 3),
                                         (32, 256, 128, 8, 4), (32, 64, 32, 4, 2))]

    @triton.autotune(configs=_fwd_configs(), key=["N", "K", "GATHER_A", "BLOCK_M"],
                     prune_configs_by={"early_config_prune": _prune_configs})
    @triton.jit
    def _gmm_kernel(a_ptr, a_rows_ptr, b_ptr, y_ptr, tile_expert_ptr, tile_row_ptr, offs_ptr,
                    N, K, s_am, s_ak, s_be, s_bk, s_bn, s_ym, s_yn,
                    GATHER_A: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr):
        """Y[rows of a tile] = A[rows] @ B[e] for the tile's expert e; grid = (row tiles,
        N tiles). GATHER_A: A's row for sorted row m is a_rows[m] (x read through the sort
        index, no permuted copy). Unused tiles have expert -1. One K loop only: every
        software-pipelined loop gets its own shared-memory buffers."""
        tile = tl.program_id(0)
        pid_n = tl.program_id(1)
        e = tl.load(tile_expert_ptr + tile)
        if e >= 0:
            row0 = tl.load(tile_row_ptr + tile)
            row_end = tl.load(offs_ptr + e + 1)
            rm = row0 + tl.arange(0, BLOCK_M)
            m_mask = rm < row_end
            if GATHER_A:
                a_row = tl.load(a_rows_ptr + rm, mask=m_mask, other=0)
            else:
                a_row = rm
            rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
            n_mask = rn < N
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            acc = _mm_acc(acc, a_ptr, a_row.to(tl.int64) * s_am, m_mask, s_ak, 0, K,
                          b_ptr + e * s_be, s_bk, rn * s_bn, n_mask, BLOCK_K)
            tl.store(y_ptr + rm.to(tl.int64)[:, None] * s_ym + rn[None, :] * s_yn,
                     acc.to(y_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])

    @triton.autotune(configs=_dw_configs(), key=["K", "N", "N1", "GATHER_A"],
                     prune_configs_by={"early_config_prune": _prune_configs})
    @triton.jit
    def _gmm_dw_kernel(a_ptr, a_rows_ptr, dy_ptr, dw_ptr, dw2_ptr, offs_ptr, K, N, N1,
                       s_am, s_ak, s_dym, s_dyn, s_we, s_wk, s_wn, s_w2e, s_w2k, s_w2n,
                       GATHER_A: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_K: tl.constexpr):
        """dW[e] = A[rows_e]^T @ dY[rows_e]; grid = (E, K tiles, N tiles). Columns n < N1 go to
        dw[e], n >= N1 to dw2[e] (split N). Empty experts get exact zeros."""
        e = tl.program_id(0)
        pid_k = tl.program_id(1)
        pid_n = tl.program_id(2)
        row0 = tl.load(offs_ptr + e)
        row_end = tl.load(offs_ptr + e + 1)
        rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
        n0 = pid_n * BLOCK_N
        rn = n0 + tl.arange(0, BLOCK_N)
        k_mask = rk < K
        n_mask = rn < N
        acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
        for m0 in range(row0, row_end, BLOCK_M):
            rm = m0 + tl.arange(0, BLOCK_M)
            m_mask = rm < row_end
            if GATHER_A:
                a_row = tl.load(a_rows_ptr + rm, mask=m_mask, other=0)
            else:
                a_row = rm
            a_t = tl.load(a_ptr + rk[:, None] * s_ak + (a_row.to(tl.int64) * s_am)[None, :],
                          mask=k_mask[:, None] & m_mask[None, :], other=0.0)
            g = tl.load(dy_ptr + rm.to(tl.int64)[:, None] * s_dym + rn[None, :] * s_dyn,
                        mask=m_mask[:, None] & n_mask[None, :], other=0.0)
            acc = tl.dot(a_t, g, acc)
        if n0 < N1:
            tl.store(dw_ptr + e * s_we + rk[:, None] * s_wk + rn[None, :] * s_wn,
                     acc.to(dw_ptr.dtype.element_ty),
                     mask=k_mask[:, None] & (n_mask & (rn < N1))[None, :])
        else:
            tl.store(dw2_ptr + e * s_w2e + rk[:, None] * s_w2k + (rn - N1)[None, :] * s_w2n,
                     acc.to(dw2_ptr.dtype.element_ty), mask=k_mask[:, None] & n_mask[None, :])

    @triton.jit
    def _combine_kernel(y_ptr, pos_ptr, w_ptr, out_ptr, D, K, s_ym, s_on,
                        HAS_W: tl.constexpr, BLOCK_D: tl.constexpr):
        """out[n] = sum_k w[n,k] * y[pos[n,k]] (fp32 accumulate); grid = (N, D tiles).
        Without HAS_W it is the gather-sum that un-permutes dX."""
        n = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        mask = cols < D
        acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for k in range(K):
            m = tl.load(pos_ptr + n * K + k).to(tl.int64)
            v = tl.load(y_ptr + m * s_ym + cols, mask=mask, other=0.0).to(tl.float32)
            if HAS_W:
                v = v * tl.load(w_ptr + n * K + k).to(tl.float32)
            acc += v
        tl.store(out_ptr + n.to(tl.int64) * s_on + cols, acc.to(out_ptr.dtype.element_ty),
                 mask=mask)

    @triton.jit
    def _combine_bwd_kernel(dout_ptr, y_ptr, pos_ptr, w_ptr, dy_ptr, dw_ptr, D, K,
                            s_don, s_ym, s_dym, BLOCK_D: tl.constexpr):
        """For token n and each k (m = pos[n,k]): dy[m] = w[n,k] * dout[n] and
        dw[n,k] = <y[m], dout[n]> (fp32). grid = (N,)."""
        n = tl.program_id(0)
        for k in range(K):
            m = tl.load(pos_ptr + n * K + k).to(tl.int64)
            w = tl.load(w_ptr + n * K + k).to(tl.float32)
            dot = tl.zeros((BLOCK_D,), dtype=tl.float32)
            for d0 in range(0, D, BLOCK_D):
                cols = d0 + tl.arange(0, BLOCK_D)
                mask = cols < D
                g = tl.load(dout_ptr + n.to(tl.int64) * s_don + cols, mask=mask,
                            other=0.0).to(tl.float32)
                yv = tl.load(y_ptr + m * s_ym + cols, mask=mask, other=0.0).to(tl.float32)
                dot += g * yv
                tl.store(dy_ptr + m * s_dym + cols, (w * g).to(dy_ptr.dtype.element_ty),
                         mask=mask)
            tl.store(dw_ptr + n * K + k, tl.sum(dot, axis=0))

    @triton.jit
    def _swiglu_pair_fwd_kernel(gu_ptr, h_ptr, total, Fh, BLOCK: tl.constexpr):
        """h[m, f] = silu(gu[m, f]) * gu[m, Fh + f] for gu of shape (M, 2Fh), h (M, Fh)."""
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < total
        m = offs // Fh
        f = offs - m * Fh
        g = tl.load(gu_ptr + m * (2 * Fh) + f, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(gu_ptr + m * (2 * Fh) + Fh + f, mask=mask, other=0.0).to(tl.float32)
        tl.store(h_ptr + offs, (g * tl.sigmoid(g) * u).to(h_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _swiglu_pair_bwd_kernel(gu_ptr, dh_ptr, dgu_ptr, total, Fh, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < total
        m = offs // Fh
        f = offs - m * Fh
        g_off = m * (2 * Fh) + f
        g = tl.load(gu_ptr + g_off, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(gu_ptr + g_off + Fh, mask=mask, other=0.0).to(tl.float32)
        dh = tl.load(dh_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        sig = tl.sigmoid(g)
        tl.store(dgu_ptr + g_off, (dh * u * sig * (1.0 + g * (1.0 - sig))).to(
            dgu_ptr.dtype.element_ty), mask=mask)
        tl.store(dgu_ptr + g_off + Fh, (dh * g * sig).to(dgu_ptr.dtype.element_ty), mask=mask)


def _block_m(x: torch.Tensor) -> int:
    """Row tile of the forward/dX grouped GEMM (fixed outside autotuning: the tile schedule
    depends on it)."""
    if x.device.type != "cuda":
        return 16
    if x.element_size() == 2 and torch.cuda.get_device_capability(x.device)[0] >= 9:
        return 128
    return 64


_MIN_BLOCK_N = 16 if KERNELS_INTERPRETED else 64  # smallest BLOCK_N among the configs


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


def _gmm(a, w, offs_E1, sched, *, a_rows=None):
    """Grouped GEMM launch: y = A @ w[e] on expert e's sorted rows (w: E,K,N, any strides).
    a_rows: row index into A for each sorted row (A read through the sort index)."""
    tile_expert_T, tile_row_T, M, BM = sched
    E, K, N = w.shape
    assert a.shape[1] == K, f"grouped_mm: A has K={a.shape[1]}, weights have K={K}"
    y = torch.empty(M, N, device=a.device, dtype=a.dtype)
    if M == 0:
        return y
    rows = a_rows if a_rows is not None else tile_expert_T  # dummy pointer when not gathering
    grid = lambda meta: (tile_expert_T.numel(), triton.cdiv(N, meta["BLOCK_N"]))  # noqa: E731
    _gmm_kernel[grid](a, rows, w, y, tile_expert_T, tile_row_T, offs_E1, N, K,
                      a.stride(0), a.stride(1), w.stride(0), w.stride(1), w.stride(2),
                      y.stride(0), y.stride(1), GATHER_A=a_rows is not None, BLOCK_M=BM)
    return y


def _gmm_dw(a, dy, offs_E1, E, out_dtype, *, a_rows=None, n1: int | None = None):
    """dW[e] = A[rows_e]^T @ dY[rows_e] -> (E, K, N) in out_dtype; with n1, two outputs
    (E, K, n1) and (E, K, N - n1) (split N)."""
    K, N = a.shape[1], dy.shape[1]
    if n1 is not None and n1 % _MIN_BLOCK_N:
        dw = _gmm_dw(a, dy, offs_E1, E, out_dtype, a_rows=a_rows)
        return dw[:, :, :n1].contiguous(), dw[:, :, n1:].contiguous()
    N1 = n1 if n1 is not None else N
    dw = torch.empty(E, K, N1, device=a.device, dtype=out_dtype)
    dw2 = torch.empty(E, K, N - N1, device=a.device, dtype=out_dtype) if n1 is not None else dw
    rows = a_rows if a_rows is not None else offs_E1
    grid = lambda meta: (E, triton.cdiv(K, meta["BLOCK_K"]),  # noqa: E731
                         triton.cdiv(N, meta["BLOCK_N"]))
    _gmm_dw_kernel[grid](a, rows, dy, dw, dw2, offs_E1, K, N, N1,
                         a.stride(0), a.stride(1), dy.stride(0), dy.stride(1),
                         dw.stride(0), dw.stride(1), dw.stride(2),
                         dw2.stride(0), dw2.stride(1), dw2.stride(2),
                         GATHER_A=a_rows is not None)
    return (dw, dw2) if n1 is not None else dw


def _block_d(D: int) -> int:
    return min(1024, triton.next_power_of_2(D))


def _combine(y_MD, pos_M, w_NK, N, K, out_dtype):
    """out[n] = sum_k w[n,k] y[pos[n,k]] (w_NK None: plain sum), fp32 accumulate."""
    D = y_MD.shape[1]
    out = torch.empty(N, D, device=y_MD.device, dtype=out_dtype)
    if N == 0:
        return out
    BD = _block_d(D)
    _combine_kernel[(N, triton.cdiv(D, BD))](y_MD, pos_M, w_NK if w_NK is not None else pos_M,
                                             out, D, K, y_MD.stride(0), out.stride(0),
                                             HAS_W=w_NK is not None, BLOCK_D=BD)
    return out


def _schedule(offs_E1, M, like):
    BM = _block_m(like)
    return (*tile_schedule(offs_E1, M, BM), M, BM)


class _GroupedMMTriton(torch.autograd.Function):
    """y_MN = x_MK @ w_EKN[e] on expert e's rows; backward dX = dY @ w[e]^T (same kernel on
    the transposed view) and dW[e] = x_e^T @ dY_e (dW kernel, stored in w's own dtype)."""

    @staticmethod
    def forward(ctx, x_MK, w_EKN, offs_E1):
        x_MK = x_MK.contiguous()
        offs_E1 = offs_E1.to(torch.int64).contiguous()
        w_c = w_EKN.to(x_MK.dtype)
        sched = _schedule(offs_E1, x_MK.shape[0], x_MK)
        ctx.save_for_backward(x_MK, w_c, offs_E1, sched[0], sched[1])
        ctx.meta = (sched[2], sched[3], w_EKN.dtype)
        return _gmm(x_MK, w_c, offs_E1, sched)

    @staticmethod
    def backward(ctx, dy_MN):
        x_MK, w_c, offs_E1, tile_e, tile_row = ctx.saved_tensors
        M, BM, w_dtype = ctx.meta
        dy_MN = dy_MN.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _gmm(dy_MN, w_c.transpose(1, 2), offs_E1, (tile_e, tile_row, M, BM))
        if ctx.needs_input_grad[1]:
            dw = _gmm_dw(x_MK, dy_MN, offs_E1, w_c.shape[0], w_dtype)
        return dx, dw, None


def grouped_mm_triton(x_MK: torch.Tensor, w_EKN: torch.Tensor, offs_E1: torch.Tensor):
    """Triton grouped GEMM (autograd-aware): rows offs[e]:offs[e+1] of x times w[e]."""
    return _GroupedMMTriton.apply(x_MK, w_EKN, offs_E1)


WEIGHT_CACHE = os.environ.get("DEEPRECIPE_MOE_WEIGHT_CACHE", "1") != "0"


def fused_gate_up(w_gate_EDF: torch.Tensor, w_up_EDF: torch.Tensor,
                  dtype: torch.dtype) -> torch.Tensor:
    """[Wg | Wu] as one (E, D, 2F) buffer in ``dtype`` (the cast the weights need anyway), so
    gate and up are one GEMM (x read once) and dX one GEMM with K = 2F.

    Without autograd (sampling, evaluation) the buffer is kept on ``w_gate_EDF`` and reused
    while neither weight changed (their in-place version counters, which every optimiser step
    and ``copy_`` bump), so a decode step does not rewrite 2 x E x D x F weights per layer.
    With autograd (training) it is built each call. ``DEEPRECIPE_MOE_WEIGHT_CACHE=0`` turns the
    reuse off (the baseline of bench/sampler_gpu.py)."""
    key = None
    if WEIGHT_CACHE and not torch.is_grad_enabled():
        try:
            key = (w_gate_EDF._version, w_up_EDF._version, w_up_EDF.data_ptr(), dtype)
        except RuntimeError:  # inference tensors keep no version counter
            key = None
        held = getattr(w_gate_EDF, "_fused_gate_up", None) if key else None
        if held is not None and held[0] == key:
            return held[1]
    E, D, Fe = w_gate_EDF.shape
    wgu = torch.empty(E, D, 2 * Fe, device=w_gate_EDF.device, dtype=dtype)
    wgu[:, :, :Fe].copy_(w_gate_EDF)
    wgu[:, :, Fe:].copy_(w_up_EDF)
    if key is not None:
        w_gate_EDF._fused_gate_up = (key, wgu)
    return wgu


class _MoEExpertsTriton(torch.autograd.Function):
    """The whole routed-expert computation in Triton (see the module docstring)."""

    @staticmethod
    def forward(ctx, x_ND, topk_idx_NK, topk_w_NK, w_gate_EDF, w_up_EDF, w_down_EFD):
        N, K = topk_idx_NK.shape
        E, D, Fe = w_gate_EDF.shape
        dt = x_ND.dtype
        x_ND = x_ND.contiguous()
        w_NK = topk_w_NK.float().contiguous()
        order_M, token_M, offs_E1, _ = permute_tokens(topk_idx_NK, E)
        pos_M = inverse_permutation(order_M)
        wgu = fused_gate_up(w_gate_EDF, w_up_EDF, dt)
        wd = w_down_EFD.to(dt)
        sched = _schedule(offs_E1, N * K, x_ND)
        gu_M2F = _gmm(x_ND, wgu, offs_E1, sched, a_rows=token_M)
        h_MF = torch.empty(N * K, Fe, device=x_ND.device, dtype=dt)
        total = h_MF.numel()
        if total:
            _swiglu_pair_fwd_kernel[(triton.cdiv(total, 1024),)](gu_M2F, h_MF, total, Fe,
                                                                 BLOCK=1024)
        y_MD = _gmm(h_MF, wd, offs_E1, sched)
        out_ND = _combine(y_MD, pos_M, w_NK, N, K, dt)
        ctx.save_for_backward(x_ND, token_M, pos_M, offs_E1, sched[0], sched[1], w_NK,
                              wgu, wd, gu_M2F, h_MF, y_MD)
        ctx.meta = (sched[2], sched[3], topk_w_NK.dtype, w_gate_EDF.dtype, w_up_EDF.dtype,
                    w_down_EFD.dtype)
        return out_ND

    @staticmethod
    def backward(ctx, dout_ND):
        (x_ND, token_M, pos_M, offs_E1, tile_e, tile_row, w_NK, wgu, wd, gu_M2F, h_MF,
         y_MD) = ctx.saved_tensors
        M, BM, gate_dt, wg_dt, wu_dt, wd_dt = ctx.meta
        sched = (tile_e, tile_row, M, BM)
        N, K = w_NK.shape
        E, D, Fe2 = wgu.shape
        Fe = Fe2 // 2
        dt = x_ND.dtype
        dout_ND = dout_ND.contiguous()
        dy_MD = torch.empty_like(y_MD)
        dgate_NK = torch.empty(N, K, device=x_ND.device, dtype=torch.float32)
        if N:
            _combine_bwd_kernel[(N,)](dout_ND, y_MD, pos_M, w_NK, dy_MD, dgate_NK, D, K,
                                      dout_ND.stride(0), y_MD.stride(0), dy_MD.stride(0),
                                      BLOCK_D=_block_d(D))
        dh_MF = _gmm(dy_MD, wd.transpose(1, 2), offs_E1, sched)
        dwd = _gmm_dw(h_MF, dy_MD, offs_E1, E, wd_dt)
        dgu_M2F = torch.empty_like(gu_M2F)
        total = dh_MF.numel()
        if total:
            _swiglu_pair_bwd_kernel[(triton.cdiv(total, 1024),)](gu_M2F, dh_MF, dgu_M2F, total,
                                                                 Fe, BLOCK=1024)
        dx_ND = None
        if ctx.needs_input_grad[0]:
            dx_MD = _gmm(dgu_M2F, wgu.transpose(1, 2), offs_E1, sched)
            dx_ND = _combine(dx_MD, pos_M, None, N, K, dt)
        dwg, dwu = _gmm_dw(x_ND, dgu_M2F, offs_E1, E, torch.promote_types(wg_dt, wu_dt),
                           a_rows=token_M, n1=Fe)
        return (dx_ND, None, dgate_NK.to(gate_dt), dwg.to(wg_dt), dwu.to(wu_dt), dwd)


# ----------------------------------------------------------------------------- plain PyTorch

def grouped_mm_torch(x_MK: torch.Tensor, w_EKN: torch.Tensor, offs_E1: torch.Tensor):
    """torch._grouped_mm (CUDA bf16, sm90+); offs are the E cumulative row ends, int32."""
    return torch._grouped_mm(x_MK.contiguous(), w_EKN.to(x_MK.dtype),
                             offs=offs_E1[1:].to(torch.int32))


class _GatherRows(torch.autograd.Function):
    """x_MD = x_ND[token_M]; backward is a gather-sum over each token's K rows (via pos_M),
    deterministic, no atomics."""

    @staticmethod
    def forward(ctx, x_ND, token_M, pos_M):
        ctx.save_for_backward(pos_M)
        ctx.N = x_ND.shape[0]
        return x_ND.index_select(0, token_M)

    @staticmethod
    def backward(ctx, g_MD):
        (pos_M,) = ctx.saved_tensors
        N = ctx.N
        return g_MD.index_select(0, pos_M).view(N, -1, g_MD.shape[1]).sum(1), None, None


class _CombineTorch(torch.autograd.Function):
    """y_ND = sum_k w[n,k] y_sorted[pos[n,k]] as one batched (1 x K) @ (K x D) product per
    token (fp32 accumulate in the GEMM)."""

    @staticmethod
    def forward(ctx, y_MD, pos_M, order_M, w_NK):
        N, K = w_NK.shape
        y_NKD = y_MD.index_select(0, pos_M).view(N, K, -1)
        ctx.save_for_backward(y_NKD, order_M, w_NK)
        return torch.bmm(w_NK.to(y_MD.dtype).unsqueeze(1), y_NKD).squeeze(1)

    @staticmethod
    def backward(ctx, g_ND):
        y_NKD, order_M, w_NK = ctx.saved_tensors
        N, K, D = y_NKD.shape
        g_ND = g_ND.contiguous()
        dw = torch.bmm(y_NKD, g_ND.unsqueeze(2)).squeeze(2).to(w_NK.dtype)
        dy_NKD = w_NK.to(g_ND.dtype).unsqueeze(2) * g_ND.unsqueeze(1)
        return dy_NKD.view(N * K, D).index_select(0, order_M), None, None, dw


def _moe_experts_torch(x_ND, topk_idx_NK, topk_w_NK, w_gate_EDF, w_up_EDF, w_down_EFD):
    E = w_gate_EDF.shape[0]
    order_M, token_M, offs_E1, _ = permute_tokens(topk_idx_NK, E)
    pos_M = inverse_permutation(order_M)
    x_MD = _GatherRows.apply(x_ND, token_M, pos_M)
    h_MF = swiglu(grouped_mm_torch(x_MD, w_gate_EDF, offs_E1),
                  grouped_mm_torch(x_MD, w_up_EDF, offs_E1))
    y_MD = grouped_mm_torch(h_MF, w_down_EFD, offs_E1)
    return _CombineTorch.apply(y_MD, pos_M, order_M, topk_w_NK)


# ----------------------------------------------------------------------------- dispatcher

BACKENDS = ("triton", "torch", "reference")


def select_backend(x_ND: torch.Tensor) -> str:
    """The backend `moe_experts(..., backend=None)` uses for this input."""
    env = os.environ.get("DEEPRECIPE_MOE_BACKEND")
    if env:
        if env not in BACKENDS:
            raise ValueError(f"DEEPRECIPE_MOE_BACKEND={env!r}; choose one of {BACKENDS}")
        return env
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
    if backend == "triton":
        return _MoEExpertsTriton.apply(x_ND, topk_idx_NK, topk_w_NK, w_gate_EDF, w_up_EDF,
                                       w_down_EFD)
    if backend == "torch":
        return _moe_experts_torch(x_ND, topk_idx_NK, topk_w_NK, w_gate_EDF, w_up_EDF, w_down_EFD)
    raise ValueError(f"moe_experts: unknown backend {backend!r}; choose one of {BACKENDS}")
