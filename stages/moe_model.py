"""A DeepSeekMoE decoder (DeepSeek-V3 style), readable in one sitting.

    idx_BT -> Embedding -> [Block] x n_layers -> RMSNorm -> head -> logits_BTV
    Block  = x + Attn(RMSNorm(x));  x + FFN(RMSNorm(x))
    Attn   = MHA with RoPE, or MLA (latent KV: only c_kv and the shared RoPE key are cached)
    FFN    = dense SwiGLU for the first `n_dense_layers`, then MoE:
             always-on shared experts + top-k of fine-grained routed experts.

Router (V3): s = sigmoid(x . e_i); experts chosen by top-k of s + b, where b is a per-expert
bias *buffer* used only for the choice; gate = chosen raw s normalised over the k, times
route_scale. Balancing is auxiliary-loss-free (`update_router_bias` after the optimiser step)
plus a small sequence-wise loss alpha * sum_i f_i P_i and an optional router z-loss.
MTP (depth 1): shared embedding and head + one block over proj([RMSNorm(h_t); RMSNorm(Emb(t+1))]),
predicting token t+2, weighted by mtp_weight.

Shape suffixes: B batch, T time, D d_model, H heads, V vocab, E routed experts, K top-k,
N = B*T tokens, F expert hidden. Norms, SwiGLU and the expert GEMMs go through `kernels`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from deeprecipe.kernels import moe_experts, rms_norm, swiglu


@dataclass
class MoEConfig:
    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    head_dim: int = 32                 # MHA head dim
    n_dense_layers: int = 1            # first k layers use a dense FFN
    d_ff_dense: int = 512
    n_shared_experts: int = 1
    n_routed_experts: int = 8
    top_k: int = 2
    d_ff_expert: int = 128
    route_scale: float = 1.0
    bias_update_speed: float = 1e-3    # gamma of the aux-loss-free balancing
    seq_aux_alpha: float = 1e-4        # alpha of the sequence-wise balance loss
    router_z_loss: float = 0.0         # weight of mean(logsumexp(router logits)^2)
    mtp_depth: int = 0                 # 0 or 1
    mtp_weight: float = 0.3            # lambda
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    attention: str = "mha"             # 'mha' | 'mla'
    # MLA dims (used when attention == 'mla'); q_lora_rank 0 = no query compression
    q_lora_rank: int = 0
    kv_lora_rank: int = 64
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16
    v_head_dim: int = 32
    norm_eps: float = 1e-6
    init_std: float = 0.02
    moe_backend: str | None = None     # None = kernels' dispatcher decides
    # MLA with d_qk != d_v: zero-pad V to d_qk so SDPA's flash kernel (equal head dims only)
    # applies. Off by default: on an H200 (torch 2.11) SDPA's default pick for the unequal dims
    # (cuDNN) was faster than flash on padded V (2.11 vs 2.49 ms fwd+bwd, bench/moe_gpu.py).
    attn_pad_v: bool | None = False

    def __post_init__(self):
        if self.attention not in ("mha", "mla"):
            raise ValueError(f"MoEConfig.attention={self.attention!r}; use 'mha' or 'mla'")
        if self.mtp_depth not in (0, 1):
            raise ValueError(f"MoEConfig.mtp_depth={self.mtp_depth}; only 0 or 1 is implemented")
        if not 0 < self.top_k <= self.n_routed_experts:
            raise ValueError(f"MoEConfig.top_k={self.top_k} must be in 1..n_routed_experts="
                             f"{self.n_routed_experts}")
        if not 0 <= self.n_dense_layers <= self.n_layers:
            raise ValueError(f"MoEConfig.n_dense_layers={self.n_dense_layers} > n_layers")
        rope_dim = self.head_dim if self.attention == "mha" else self.qk_rope_head_dim
        if rope_dim % 2:
            raise ValueError(f"RoPE dim {rope_dim} must be even")


MOE_CONFIGS: dict[str, MoEConfig] = {
    # ~2.7M params (1.5M active); trains on 2 CPU cores in minutes.
    "tiny": MoEConfig(vocab_size=4096, d_model=128, n_layers=4, n_heads=4, head_dim=32,
                      n_dense_layers=1, d_ff_dense=512, n_shared_experts=1, n_routed_experts=8,
                      top_k=2, d_ff_expert=128, max_seq_len=256, mtp_depth=0),
    # V2-Lite shape at hidden 1024: ~0.7B params, ~0.2B active; one H100/H200.
    "small": MoEConfig(vocab_size=32768, d_model=1024, n_layers=12, n_heads=16, head_dim=64,
                       n_dense_layers=1, d_ff_dense=2816, n_shared_experts=2,
                       n_routed_experts=64, top_k=6, d_ff_expert=256, max_seq_len=2048,
                       rope_theta=10000.0, mtp_depth=1, mtp_weight=0.3, attention="mla",
                       q_lora_rank=0, kv_lora_rank=256, qk_nope_head_dim=64,
                       qk_rope_head_dim=32, v_head_dim=64),
}


# ----------------------------------------------------------------------------- building blocks

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def rope_tables(dim: int, max_len: int, theta: float):
    """cos_TR, sin_TR with R = dim/2 (fp32)."""
    inv_freq_R = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    ang_TR = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq_R)
    return ang_TR.cos(), ang_TR.sin()


def apply_rope(x_BHTd: torch.Tensor, cos_TR: torch.Tensor, sin_TR: torch.Tensor):
    """Rotate-half RoPE on the last dim (d = 2R)."""
    x1, x2 = x_BHTd.chunk(2, dim=-1)
    cos, sin = cos_TR.to(x_BHTd.dtype), sin_TR.to(x_BHTd.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class KVCache:
    """Per-layer cache for generation, preallocated and written in place (no torch.cat per step).

    A layer's entry is a tuple of buffers with time on dim -2: MHA k, v (B,H,S,d); MLA one latent
    buffer kv_BSL (L = C + R: c_kv then the shared RoPE key). A layer's buffers are allocated,
    zero-filled, at its first `update` with the incoming batch, dtype and device and room for
    max_len positions (None: room doubles as needed, for callers that do not know the length).

    Eager mode: `update` writes T new positions at the layer's current length and returns views
    of all cached positions. Static mode (`begin_static`; CUDA-graph safe, T = 1): the write
    position is a device tensor, views always cover the first `span` positions and `key_mask_S`
    (True for positions <= the write position) must mask the attention.
    """

    def __init__(self, max_len: int | None = None):
        self.max_len = max_len
        self.buffers: dict[int, tuple[torch.Tensor, ...]] = {}
        self.lengths: dict[int, int] = {}
        self.pos_1: torch.Tensor | None = None      # static mode: write position, int64 (1,)
        self.span = 0                               # static mode: positions in the views
        self.key_mask_S: torch.Tensor | None = None  # static mode: bool (span,)

    def update(self, layer: int, *new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Write `new` (one tensor per buffer, T positions on dim -2); return the views."""
        if self.pos_1 is not None:
            return self._update_static(layer, new)
        start = self.lengths.get(layer, 0)
        end = start + new[0].shape[-2]
        bufs = self._reserve(layer, new, end)
        for buf, x in zip(bufs, new):
            buf.narrow(-2, start, x.shape[-2]).copy_(x)
        self.lengths[layer] = end
        return tuple(buf.narrow(-2, 0, end) for buf in bufs)

    def _reserve(self, layer: int, new: tuple[torch.Tensor, ...], end: int):
        """The layer's buffers, allocated (or grown, max_len None) to hold `end` positions."""
        if self.max_len is not None and end > self.max_len:
            raise ValueError(f"KVCache overflow: layer {layer} would hold {end} positions, "
                             f"max_len is {self.max_len}")
        bufs = self.buffers.get(layer)
        if bufs is not None:
            for buf, x in zip(bufs, new):
                if buf.shape[:-2] != x.shape[:-2] or buf.shape[-1] != x.shape[-1]:
                    raise ValueError(f"KVCache: layer {layer} holds {tuple(buf.shape)} "
                                     f"(time on dim -2), got {tuple(x.shape)}")
            if end <= bufs[0].shape[-2]:
                return bufs
        old = bufs[0].shape[-2] if bufs is not None else 0
        room = self.max_len if self.max_len is not None else max(end, 2 * old, 16)
        grown = tuple(x.new_zeros(*x.shape[:-2], room, x.shape[-1]) for x in new)
        if bufs is not None:
            n = self.lengths[layer]
            for g, b in zip(grown, bufs):
                g.narrow(-2, 0, n).copy_(b.narrow(-2, 0, n))
        self.buffers[layer] = grown
        return grown

    def _update_static(self, layer: int, new: tuple[torch.Tensor, ...]):
        bufs = self.buffers[layer]
        for buf, x in zip(bufs, new):
            buf.index_copy_(buf.dim() - 2, self.pos_1, x)
        return tuple(buf.narrow(-2, 0, self.span) for buf in bufs)

    def room(self) -> int:
        """Positions every allocated layer can hold (0 before the first update)."""
        return min((b[0].shape[-2] for b in self.buffers.values()), default=0)

    def begin_static(self, pos_1: torch.Tensor, span: int) -> None:
        """Enter static mode: write at device position pos_1 (int64, (1,)), views of `span`
        positions. Every layer must already be allocated (prefill in eager mode first)."""
        if not self.buffers or span > self.room():
            raise ValueError(f"KVCache.begin_static: span {span} > room {self.room()}; "
                             "prefill first (eager) with max_len >= the final length")
        self.pos_1, self.span = pos_1, span
        self.key_mask_S = torch.arange(span, device=pos_1.device) <= pos_1

    def end_static(self, length: int | None = None) -> None:
        """Back to eager mode; with `length`, every layer now holds that many positions."""
        self.pos_1, self.span, self.key_mask_S = None, 0, None
        if length is not None:
            self.lengths = {layer: length for layer in self.buffers}

    def seq_len(self) -> int:
        return max(self.lengths.values(), default=0)


def causal_attention(q_BHTd, k_BHSd, v_BHSe, scale: float, pad_v: bool = False,
                     key_mask_S: torch.Tensor | None = None):
    """SDPA with the causal mask aligned to the end (queries are the last T of S positions).
    pad_v: when V's head dim is smaller than Q/K's, zero-pad V to it and slice the output (same
    result; lets SDPA pick the flash kernel, which needs equal head dims).
    key_mask_S: bool (S,), False for keys to ignore (a static-mode KVCache's unwritten tail);
    only for T = 1."""
    dv = v_BHSe.shape[-1]
    if pad_v and q_BHTd.shape[-1] > dv:
        v_BHSe = F.pad(v_BHSe, (0, q_BHTd.shape[-1] - dv))
        return causal_attention(q_BHTd, k_BHSd, v_BHSe, scale, key_mask_S=key_mask_S)[..., :dv]
    T, S = q_BHTd.shape[-2], k_BHSd.shape[-2]
    if key_mask_S is not None:
        if T != 1:
            raise ValueError(f"causal_attention: key_mask_S needs one query position, got {T}")
        return F.scaled_dot_product_attention(q_BHTd, k_BHSd, v_BHSe,
                                              attn_mask=key_mask_S.view(1, 1, 1, S), scale=scale)
    if T == S:
        return F.scaled_dot_product_attention(q_BHTd, k_BHSd, v_BHSe, is_causal=True, scale=scale)
    if T == 1:
        return F.scaled_dot_product_attention(q_BHTd, k_BHSd, v_BHSe, scale=scale)
    return F.scaled_dot_product_attention(q_BHTd, k_BHSd, v_BHSe,
                                          attn_mask=_end_causal_mask(T, S, q_BHTd.device),
                                          scale=scale)


def _end_causal_mask(T: int, S: int, device) -> torch.Tensor:
    """mask_TS: query t (position S-T+t) sees keys 0..S-T+t."""
    pos_T = torch.arange(S - T, S, device=device)
    return torch.arange(S, device=device)[None, :] <= pos_T[:, None]


class MHA(nn.Module):
    def __init__(self, cfg: MoEConfig, layer_idx: int):
        super().__init__()
        self.layer_idx, self.H, self.hd = layer_idx, cfg.n_heads, cfg.head_dim
        D, HD = cfg.d_model, cfg.n_heads * cfg.head_dim
        self.wq = nn.Linear(D, HD, bias=False)
        self.wk = nn.Linear(D, HD, bias=False)
        self.wv = nn.Linear(D, HD, bias=False)
        self.wo = nn.Linear(HD, D, bias=False)

    def forward(self, x_BTD, cos_TR, sin_TR, kv_cache: KVCache | None = None):
        B, T, _ = x_BTD.shape
        q = self.wq(x_BTD).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.wk(x_BTD).view(B, T, self.H, self.hd).transpose(1, 2)
        v = self.wv(x_BTD).view(B, T, self.H, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos_TR, sin_TR), apply_rope(k, cos_TR, sin_TR)
        key_mask_S = None
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)
            key_mask_S = kv_cache.key_mask_S
        o_BHTd = causal_attention(q, k, v, scale=self.hd ** -0.5, key_mask_S=key_mask_S)
        return self.wo(o_BHTd.transpose(1, 2).reshape(B, T, -1))


class MLA(nn.Module):
    """Multi-head latent attention (V2/V3): K and V are up-projected from a normalised latent
    c_kv (kv_lora_rank); a single RoPE key of qk_rope_head_dim is shared by all heads.

    With a KV cache only [c_kv | RoPE key] is cached; a few query positions attend to it with the
    up-projections absorbed (`_attend_absorbed`), a prefill expands K/V (`_attend_expanded`)."""

    def __init__(self, cfg: MoEConfig, layer_idx: int):
        super().__init__()
        self.layer_idx, self.H = layer_idx, cfg.n_heads
        self.dn, self.dr, self.dv, self.C = (cfg.qk_nope_head_dim, cfg.qk_rope_head_dim,
                                             cfg.v_head_dim, cfg.kv_lora_rank)
        self.pad_v = cfg.attn_pad_v
        D, H, dq = cfg.d_model, cfg.n_heads, cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        if cfg.q_lora_rank > 0:
            self.wq_a = nn.Linear(D, cfg.q_lora_rank, bias=False)
            self.q_norm = RMSNorm(cfg.q_lora_rank, cfg.norm_eps)
            self.wq_b = nn.Linear(cfg.q_lora_rank, H * dq, bias=False)
        else:
            self.wq = nn.Linear(D, H * dq, bias=False)
        self.wkv_a = nn.Linear(D, self.C + self.dr, bias=False)
        self.kv_norm = RMSNorm(self.C, cfg.norm_eps)
        self.wkv_b = nn.Linear(self.C, H * (self.dn + self.dv), bias=False)
        self.wo = nn.Linear(H * self.dv, D, bias=False)

    def forward(self, x_BTD, cos_TR, sin_TR, kv_cache: KVCache | None = None):
        q_nope, q_pe, c_kv_BTC, k_pe_B1TR = self._project(x_BTD, cos_TR, sin_TR)
        if kv_cache is None:
            return self._attend_expanded(q_nope, q_pe, c_kv_BTC, k_pe_B1TR)
        (kv_BSL,) = kv_cache.update(self.layer_idx,
                                    torch.cat([c_kv_BTC, k_pe_B1TR.squeeze(1)], dim=-1))
        if kv_cache.key_mask_S is not None or self.absorb_pays(x_BTD.shape[1]):
            return self._attend_absorbed(q_nope, q_pe, kv_BSL, kv_cache.key_mask_S)
        c_kv_BSC, k_pe_BSR = kv_BSL.split([self.C, self.dr], dim=-1)
        return self._attend_expanded(q_nope, q_pe, c_kv_BSC, k_pe_BSR.unsqueeze(1))

    def _project(self, x_BTD, cos_TR, sin_TR):
        """x_BTD -> q_nope (B,H,T,dn), q_pe (B,H,T,dr) roped, c_kv_BTC normalised, k_pe_B1TR
        roped."""
        B, T, _ = x_BTD.shape
        H, dn, dr = self.H, self.dn, self.dr
        q = self.wq_b(self.q_norm(self.wq_a(x_BTD))) if hasattr(self, "wq_a") else self.wq(x_BTD)
        q_nope, q_pe = q.view(B, T, H, dn + dr).transpose(1, 2).split([dn, dr], dim=-1)
        q_pe = apply_rope(q_pe, cos_TR, sin_TR)
        c_kv_BTC, k_pe = self.wkv_a(x_BTD).split([self.C, dr], dim=-1)
        c_kv_BTC = self.kv_norm(c_kv_BTC)
        k_pe_B1TR = apply_rope(k_pe.unsqueeze(1), cos_TR, sin_TR)
        return q_nope, q_pe, c_kv_BTC, k_pe_B1TR

    def _attend_expanded(self, q_nope, q_pe, c_kv_BSC, k_pe_B1SR):
        """Attention over K/V up-projected (wkv_b) at all S positions -> y_BTD (training path)."""
        B, H, T, _ = q_nope.shape
        dn, dr, dv = self.dn, self.dr, self.dv
        S = c_kv_BSC.shape[1]
        k_nope, v = self.wkv_b(c_kv_BSC).view(B, S, H, dn + dv).transpose(1, 2).split([dn, dv], -1)
        k = torch.cat([k_nope, k_pe_B1SR.expand(B, H, S, dr)], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)
        pad_v = self.pad_v if self.pad_v is not None else q.is_cuda  # None: pad on CUDA
        o_BHTv = causal_attention(q, k, v, scale=(dn + dr) ** -0.5, pad_v=pad_v)
        return self.wo(o_BHTv.transpose(1, 2).reshape(B, T, H * dv))

    def absorb_pays(self, T: int) -> bool:
        """Absorbed attention is cheaper than expanding K/V: per cached position it costs
        ~T*(2C+dr) MACs a head against C*(dn+dv) to up-project it (so: decode, short chunks)."""
        return T * (2 * self.C + self.dr) <= self.C * (self.dn + self.dv)

    def _attend_absorbed(self, q_nope_BHTd, q_pe_BHTr, kv_BSL, key_mask_S=None):
        """Attention on the cached latent, DeepSeek-V2's weight absorption -> y_BTD.

        q_nope.k_nope = (W_UK^T q_nope).c_kv and sum_s p_s W_UV c_kv_s = W_UV (sum_s p_s c_kv_s),
        so W_UK folds into the query and W_UV applies after attention: K/V are never expanded
        over the S positions. All heads share the one latent "KV head", so a row's T*H queries
        (ordered t, h) attend as one head of dim L = C + dr over kv_BSL = [c_kv | k_pe].
        key_mask_S: bool (S,), False for keys to ignore (static-mode cache)."""
        B, H, T, dn = q_nope_BHTd.shape
        C, dr, dv, S = self.C, self.dr, self.dv, kv_BSL.shape[1]
        w_uk_HdC, w_uv_HvC = self.wkv_b.weight.view(H, dn + dv, C).split([dn, dv], dim=1)
        q_lat_HNC = torch.bmm(q_nope_BHTd.permute(1, 0, 2, 3).reshape(H, B * T, dn), w_uk_HdC)
        q_lat_BRC = q_lat_HNC.view(H, B, T, C).permute(1, 2, 0, 3).reshape(B, T * H, C)
        q_pe_BRr = q_pe_BHTr.permute(0, 2, 1, 3).reshape(B, T * H, dr)
        q_B1RL = torch.cat([q_lat_BRC, q_pe_BRr], dim=-1).unsqueeze(1)
        mask = None
        if T > 1:
            mask = _end_causal_mask(T, S, kv_BSL.device).repeat_interleave(H, dim=0)
        if key_mask_S is not None:
            mask = key_mask_S[None, :] if mask is None else mask & key_mask_S[None, :]
        o_B1RC = F.scaled_dot_product_attention(
            q_B1RL, kv_BSL.unsqueeze(1), kv_BSL[..., :C].unsqueeze(1),
            attn_mask=None if mask is None else mask.view(1, 1, -1, S),
            scale=(dn + dr) ** -0.5)
        o_HNC = o_B1RC.view(B, T, H, C).permute(2, 0, 1, 3).reshape(H, B * T, C)
        o_HNv = torch.bmm(o_HNC, w_uv_HvC.transpose(1, 2))
        return self.wo(o_HNv.view(H, B, T, dv).permute(1, 2, 0, 3).reshape(B, T, H * dv))


class FFN(nn.Module):
    """Dense SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        return self.w2(swiglu(self.w1(x), self.w3(x)))


# ----------------------------------------------------------------------------- MoE

class Router(nn.Module):
    """Sigmoid affinities, bias-for-selection-only top-k, normalised gates (all fp32)."""

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.top_k, self.route_scale = cfg.top_k, cfg.route_scale
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.d_model))
        # b_i: a buffer (checkpointed, never trained by the optimiser), only used to choose.
        self.register_buffer("expert_bias", torch.zeros(cfg.n_routed_experts))

    def forward(self, x_ND: torch.Tensor):
        """x_ND -> topk_idx_NK (int64), gates_NK, scores_NE (sigmoid), logits_NE (fp32)."""
        with torch.autocast(device_type=x_ND.device.type, enabled=False):
            logits_NE = F.linear(x_ND.float(), self.weight.float())
        scores_NE = torch.sigmoid(logits_NE)
        topk_idx_NK = torch.topk(scores_NE.detach() + self.expert_bias, self.top_k, dim=-1).indices
        s_NK = scores_NE.gather(1, topk_idx_NK)
        gates_NK = s_NK / s_NK.sum(-1, keepdim=True) * self.route_scale
        return topk_idx_NK, gates_NK, scores_NE, logits_NE


@torch.compiler.disable
def _routed_experts(moe: "MoE", x_ND: torch.Tensor, topk_idx_NK, gates_NK):
    """The routed experts, always eager (data-dependent shapes; Triton autograd Functions):
    a `torch.compile`d block breaks its graph here and compiles what is around it."""
    dev = x_ND.device.type
    if torch.is_autocast_enabled(dev):  # autocast does not reach custom kernels: cast here
        x_ND = x_ND.to(torch.get_autocast_dtype(dev))
    if moe.ep is not None:  # expert parallel: this rank holds a slice (stages/expert_parallel)
        return moe.ep.routed_experts(x_ND, topk_idx_NK, gates_NK, moe.w_gate_EDF, moe.w_up_EDF,
                                     moe.w_down_EFD, backend=moe.cfg.moe_backend)
    return moe_experts(x_ND, topk_idx_NK, gates_NK, moe.w_gate_EDF, moe.w_up_EDF,
                       moe.w_down_EFD, backend=moe.cfg.moe_backend)


class MoE(nn.Module):
    """Shared experts (one SwiGLU of n_shared*d_ff_expert) + routed experts on stacked weights.

    Keeps `tokens_per_expert` (E,), the routed-assignment counts of the current step (summed
    over micro-batches while training) for `update_router_bias`. No host sync anywhere.
    """

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        E, D, Fe = cfg.n_routed_experts, cfg.d_model, cfg.d_ff_expert
        self.cfg = cfg
        self.router = Router(cfg)
        self.w_gate_EDF = nn.Parameter(torch.empty(E, D, Fe))
        self.w_up_EDF = nn.Parameter(torch.empty(E, D, Fe))
        self.w_down_EFD = nn.Parameter(torch.empty(E, Fe, D))
        self.shared = FFN(D, cfg.n_shared_experts * Fe) if cfg.n_shared_experts > 0 else None
        self.register_buffer("tokens_per_expert", torch.zeros(E), persistent=False)
        self.ep = None  # `expert_parallel.shard_experts` sets an ExpertShard: w_* hold a slice

    def forward(self, x_BTD: torch.Tensor):
        """x_BTD -> y_BTD, {'aux': seq-wise balance loss (x alpha), 'z': router z-loss (x w)}."""
        B, T, D = x_BTD.shape
        E, K = self.cfg.n_routed_experts, self.cfg.top_k
        x_ND = x_BTD.reshape(-1, D)
        topk_idx_NK, gates_NK, scores_NE, logits_NE = self.router(x_ND)
        # sel_BE[b, i] = #tokens of sequence b choosing expert i (also the step's load counts;
        # torch.bincount would sync with the host on CUDA)
        sel_BE = torch.zeros(B, E, device=x_BTD.device).scatter_add_(
            1, topk_idx_NK.view(B, T * K), torch.ones(B, T * K, device=x_BTD.device))
        if self.training:
            with torch.no_grad():
                self.tokens_per_expert += sel_BE.sum(0)
        y_ND = _routed_experts(self, x_ND, topk_idx_NK, gates_NK)
        if self.shared is not None:
            y_ND = y_ND + self.shared(x_ND)
        # Sequence-wise balance loss (V3 eq. 17-20): f_i = E/(K T) * #tokens of the sequence
        # choosing i; P_i = mean over the sequence of s_i / sum_j s_j.
        f_BE = sel_BE * (E / (K * T))
        scores_BTE = scores_NE.view(B, T, E)
        P_BE = (scores_BTE / scores_BTE.sum(-1, keepdim=True)).mean(1)
        aux = self.cfg.seq_aux_alpha * (f_BE * P_BE).sum(-1).mean()
        z = self.cfg.router_z_loss * torch.logsumexp(logits_NE, dim=-1).pow(2).mean()
        return y_ND.view(B, T, D), {"aux": aux, "z": z}


@torch.no_grad()
def router_load_ratios(model: nn.Module) -> torch.Tensor:
    """max load / mean load of every MoE layer (in `named_modules` order) from the counts
    gathered so far this step (this rank only), as a device tensor: no host sync."""
    loads_LE = torch.stack([m.tokens_per_expert for m in model.modules()
                            if isinstance(m, MoE)]).float()
    mean_L = loads_LE.mean(-1)
    return torch.where(mean_L > 0, loads_LE.amax(-1) / mean_L.clamp(min=1e-12),
                       torch.zeros_like(mean_L))


@torch.no_grad()
def update_router_bias(model: nn.Module, gamma: float, all_reduce=None,
                       return_stats: bool = True) -> dict[str, float]:
    """Aux-loss-free balancing, to call after the optimiser step (outside the loss).

    For every MoE layer: load_i = tokens routed to expert i this step (summed over ranks: by
    `all_reduce(tensor)` -- an in-place SUM -- if given, else torch.distributed when it is
    initialised); b_i -= gamma * sign(load_i - mean load); b re-centred to zero mean; the
    counts reset. Returns {layer name: max load / mean load} (before the update); with
    return_stats=False returns {} and never syncs with the host.
    """
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, MoE)]
    if not named:
        return {}
    loads_LE = torch.stack([m.tokens_per_expert for _, m in named]).float()
    if all_reduce is not None:
        all_reduce(loads_LE)
    elif dist.is_available() and dist.is_initialized():
        dist.all_reduce(loads_LE)
    mean_L1 = loads_LE.mean(-1, keepdim=True)
    step_LE = gamma * torch.sign(loads_LE - mean_L1)
    for l, (name, m) in enumerate(named):
        b = m.router.expert_bias
        b -= step_LE[l].to(b)
        b -= b.mean()
        m.tokens_per_expert.zero_()
    if not return_stats:
        return {}
    ratio_L = torch.where(mean_L1[:, 0] > 0, loads_LE.amax(-1) / mean_L1[:, 0].clamp(min=1e-12),
                          torch.zeros_like(mean_L1[:, 0])).tolist()  # one sync
    return {name: ratio_L[l] for l, (name, _) in enumerate(named)}


# ----------------------------------------------------------------------------- model

def head_cross_entropy(h_BTD: torch.Tensor, norm_weight: torch.Tensor, eps: float,
                       head_weight: torch.Tensor, targets_BT: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of head(RMSNorm(h)) against targets (-1 ignored), fp32 softmax.
    Eager it materialises fp32 logits; under `compile_regions` Inductor fuses the upcast,
    log-softmax and NLL so only the matmul's bf16 logits touch memory."""
    logits = F.linear(rms_norm(h_BTD, norm_weight, eps), head_weight)
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets_BT.reshape(-1),
                           ignore_index=-1)


class Block(nn.Module):
    def __init__(self, cfg: MoEConfig, layer_idx: int, moe: bool):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = (MLA if cfg.attention == "mla" else MHA)(cfg, layer_idx)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = MoE(cfg) if moe else FFN(cfg.d_model, cfg.d_ff_dense)

    def forward(self, x_BTD, cos_TR, sin_TR, kv_cache=None):
        x_BTD = x_BTD + self.attn(self.attn_norm(x_BTD), cos_TR, sin_TR, kv_cache)
        h = self.ffn(self.ffn_norm(x_BTD))
        if isinstance(h, tuple):
            h, aux = h
        else:
            zero = x_BTD.new_zeros((), dtype=torch.float32)
            aux = {"aux": zero, "z": zero}
        return x_BTD + h, aux


class MTP(nn.Module):
    """Depth-1 multi-token prediction: h'_t = Block(W [RMSNorm(h_t); RMSNorm(Emb(x_{t+1}))])
    predicts x_{t+2} through the shared head (with its own final norm)."""

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.norm_h = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.norm_e = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.proj = nn.Linear(2 * cfg.d_model, cfg.d_model, bias=False)
        self.block = Block(cfg, layer_idx=cfg.n_layers, moe=cfg.n_layers > cfg.n_dense_layers)
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)


class MoETransformer(nn.Module):
    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(
            Block(cfg, i, moe=i >= cfg.n_dense_layers) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.mtp = MTP(cfg) if cfg.mtp_depth else None
        rope_dim = cfg.head_dim if cfg.attention == "mha" else cfg.qk_rope_head_dim
        cos_TR, sin_TR = rope_tables(rope_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos_TR, persistent=False)
        self.register_buffer("rope_sin", sin_TR, persistent=False)
        self.loss_fn = head_cross_entropy  # `compile_regions` swaps in a compiled one
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """N(0, init_std) for matrices; output projections (attn wo, FFN w2, expert w_down, MTP
        proj) scaled by 1/sqrt(2 n_layers); norm weights 1; router bias 0."""
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)
            elif name.endswith(("wo.weight", "w2.weight", "w_down_EFD")):
                p.normal_(0.0, out_std)
            else:
                p.normal_(0.0, std)
        for m in self.modules():
            if isinstance(m, Router):
                m.expert_bias.zero_()

    def forward(self, idx_BT: torch.Tensor, targets_BT: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, start_pos: int = 0, return_logits: bool = True):
        """idx_BT (int64) -> (logits_BTV fp32, losses).

        losses (only with targets_BT; -1 targets are ignored): 'lm' cross-entropy, 'aux'
        seq-wise balance (already x alpha, summed over MoE layers), 'z' router z-loss (x weight),
        'mtp' (0 without MTP), 'total' = lm + aux + z + mtp_weight * mtp.
        kv_cache/start_pos: incremental decoding (positions start_pos..start_pos+T-1); MTP is
        skipped when a cache is given.
        return_logits=False (training, with targets): logits come back as None and the losses
        go through `self.loss_fn`, which never materialises fp32 logits when compiled.
        """
        B, T = idx_BT.shape
        if start_pos + T > self.cfg.max_seq_len:
            raise ValueError(f"sequence end {start_pos + T} > max_seq_len {self.cfg.max_seq_len}")
        cos_TR = self.rope_cos[start_pos:start_pos + T]
        sin_TR = self.rope_sin[start_pos:start_pos + T]
        h_BTD = self.embed(idx_BT)
        aux = h_BTD.new_zeros((), dtype=torch.float32)
        z = aux.clone()
        for layer in self.layers:
            h_BTD, a = layer(h_BTD, cos_TR, sin_TR, kv_cache)
            aux, z = aux + a["aux"], z + a["z"]
        if targets_BT is None:
            return self.head(self.norm(h_BTD)).float(), {}
        V = self.cfg.vocab_size
        if return_logits:
            logits_BTV = self.head(self.norm(h_BTD)).float()
            lm = F.cross_entropy(logits_BTV.view(-1, V), targets_BT.reshape(-1), ignore_index=-1)
        else:
            logits_BTV = None
            lm = self.loss_fn(h_BTD, self.norm.weight, self.norm.eps, self.head.weight, targets_BT)
        mtp = aux.new_zeros(())
        if self.mtp is not None and kv_cache is None and T > 1:
            # position t (< T-1) sees h_t and Emb(x_{t+1}) and predicts targets[t+1] = x_{t+2}
            e_BTD = self.embed(idx_BT[:, 1:])
            m_BTD = self.mtp.proj(torch.cat([self.mtp.norm_h(h_BTD[:, :-1]),
                                             self.mtp.norm_e(e_BTD)], dim=-1))
            m_BTD, a = self.mtp.block(m_BTD, cos_TR[:-1], sin_TR[:-1])
            aux, z = aux + a["aux"], z + a["z"]
            if return_logits:
                mtp_logits = self.head(self.mtp.norm(m_BTD)).float()
                mtp = F.cross_entropy(mtp_logits.reshape(-1, V), targets_BT[:, 1:].reshape(-1),
                                      ignore_index=-1)
            else:
                mtp = self.loss_fn(m_BTD, self.mtp.norm.weight, self.mtp.norm.eps,
                                   self.head.weight, targets_BT[:, 1:])
        total = lm + aux + z + self.cfg.mtp_weight * mtp
        return logits_BTV, {"lm": lm, "aux": aux, "z": z, "mtp": mtp, "total": total}

    # ------------------------------------------------------------------ accounting

    def _routed_params(self) -> int:
        return sum(m.w_gate_EDF.numel() + m.w_up_EDF.numel() + m.w_down_EFD.numel()
                   for m in self.modules() if isinstance(m, MoE))

    def num_params(self, active_only: bool = False) -> int:
        """All parameters (embedding, head and MTP included); active_only: those a token
        touches, i.e. routed experts counted at top_k / n_routed_experts."""
        total = sum(p.numel() for p in self.parameters())
        if not active_only:
            return total
        inactive = 1 - self.cfg.top_k / self.cfg.n_routed_experts
        return int(total - self._routed_params() * inactive)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (fwd+bwd), RECIPE.md's MFU formula:
        6 * active matmul params + 6 * L * n_h * (d_qk + d_v) * T.
        Active matmul params: all matrices touched per token (attention projections, dense and
        shared FFNs, top-k routed experts, router, head, MTP) -- not the embedding lookup, not
        norm weights. The head is shared by the main and the MTP loss, so it counts once per
        prediction depth (1 + mtp_depth). L counts the MTP block when present; T = seq_len or
        max_seq_len."""
        cfg = self.cfg
        T = seq_len or cfg.max_seq_len
        matmul = sum(p.numel() for n, p in self.named_parameters()
                     if p.dim() >= 2 and not n.startswith("embed."))
        matmul -= self._routed_params() * (1 - cfg.top_k / cfg.n_routed_experts)
        matmul += self.head.weight.numel() * cfg.mtp_depth  # the MTP loss runs the head again
        if cfg.attention == "mha":
            d_qk = d_v = cfg.head_dim
        else:
            d_qk, d_v = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
        L = cfg.n_layers + cfg.mtp_depth
        return 6 * matmul + 6 * L * cfg.n_heads * (d_qk + d_v) * T


def compile_regions(model: MoETransformer, **compile_kwargs) -> MoETransformer:
    """`torch.compile` the model where it pays and is safe: every Block (attention, norms,
    router, balance losses, shared experts; the graph breaks around the eager routed experts,
    see `_routed_experts`) and the head + cross-entropy (`loss_fn`, used with
    return_logits=False). Identical blocks share one compiled graph. Defaults: dynamic=False
    (fixed training shapes). The MTP block stays eager: it sees T-1 positions, another static
    shape, and would cost a second compile of the whole block. Returns the model, changed in
    place."""
    compile_kwargs.setdefault("dynamic", False)
    for blk in model.layers:
        blk.compile(**compile_kwargs)
    model.loss_fn = torch.compile(head_cross_entropy, **compile_kwargs)
    return model
