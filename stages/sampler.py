"""Batched autoregressive sampling with a KV cache, for GRPO rollouts and rejection sampling.

Model protocol: `model(idx_BT, kv_cache=cache, start_pos=int)` returns logits_BTV or a tuple
whose first item is logits_BTV (stages.moe_model.MoETransformer returns (logits, losses)); the
cache object comes from `new_cache()` (default `stages.moe_model.KVCache`) and the model appends
to it. `generate_no_cache` calls `model(idx_BT)` on the whole sequence at every step instead.

Prompts of different lengths are handled without padding or attention masks: all rows advance
one position per step; a row still inside its prompt is fed its own next prompt token (the
sampled one is discarded), a row past its prompt is fed what it sampled. So row b's tokens sit at
positions 0..len_b+N-1 exactly as if it ran alone, and the shared `start_pos` is right for every
row. The cost is that the batch prefill covers only the shortest prompt.

Shape suffixes: B rows, T positions, N max_new_tokens, V vocab.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn


@dataclass
class Generation:
    """tokens_BN: generated tokens (EOS included), pad_id after a row's end; lengths_B: tokens
    generated per row; logprobs_BN: log pi(token) under the model's own distribution
    (temperature 1, no top-p: what `grpo.token_logprobs` recomputes, so GRPO's first ratio is 1),
    0 at padding; finished_B: the row emitted EOS (False: it ran out of max_new_tokens)."""
    tokens_BN: torch.Tensor
    lengths_B: torch.Tensor
    logprobs_BN: torch.Tensor
    finished_B: torch.Tensor

    def mask_BN(self) -> torch.Tensor:
        """1.0 on generated tokens, 0.0 on padding (the GRPO loss mask)."""
        N = self.tokens_BN.shape[1]
        return (torch.arange(N, device=self.lengths_B.device)[None, :]
                < self.lengths_B[:, None]).float()


def _logits_of(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def top_p_filter(probs_BV: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero all but the smallest set of most likely tokens whose mass reaches top_p (the most
    likely token is always kept; ties keep the lower token id first); renormalised."""
    if top_p >= 1.0:
        return probs_BV
    sorted_BV, idx_BV = torch.sort(probs_BV, dim=-1, descending=True, stable=True)
    mass_before_BV = sorted_BV.cumsum(-1) - sorted_BV
    keep_sorted_BV = mass_before_BV < top_p
    keep_sorted_BV[:, 0] = True
    keep_BV = torch.zeros_like(keep_sorted_BV).scatter(-1, idx_BV, keep_sorted_BV)
    filtered_BV = probs_BV * keep_BV
    return filtered_BV / filtered_BV.sum(-1, keepdim=True)


def sample_next(logits_BV: torch.Tensor, temperature: float, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """Next tokens (B,) by argmax (temperature 0) or temperature + top-p sampling."""
    if temperature <= 0.0:
        return logits_BV.argmax(-1)
    probs_BV = torch.softmax(logits_BV.float() / temperature, dim=-1)
    probs_BV = top_p_filter(probs_BV, top_p)
    return torch.multinomial(probs_BV, 1, generator=generator).squeeze(-1)


def _model_max_len(model: nn.Module) -> int | None:
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "max_seq_len", None)


def unpad_left(idx_BT: torch.Tensor, lengths_B: torch.Tensor) -> list[list[int]]:
    """Left-padded prompts (the real tokens are the last lengths_B[b] of row b) -> lists."""
    T = idx_BT.shape[1]
    return [idx_BT[b, T - int(n):].tolist() for b, n in enumerate(lengths_B)]


@torch.no_grad()
def generate(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             eos_id: int | None, pad_id: int = 0, temperature: float = 1.0, top_p: float = 1.0,
             generator: torch.Generator | None = None, use_cache: bool = True,
             new_cache: Callable[[], object] | None = None) -> Generation:
    """Sample up to max_new_tokens after each prompt (lists of token ids, any lengths >= 1).

    A row stops at its first eos_id (kept in tokens_BN and lengths_B); the loop ends when all
    rows have. temperature 0 is greedy and deterministic; otherwise pass a seeded `generator`
    for reproducible samples. The model runs in eval mode (restored afterwards), so MoE load
    counters are not touched. use_cache=False recomputes the full sequence every step.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens={max_new_tokens} must be >= 1")
    device = next(model.parameters()).device
    B = len(prompts)
    lens_B = torch.tensor([len(p) for p in prompts], device=device)
    min_len, max_len = int(lens_B.min()), int(lens_B.max())
    total = max_len + max_new_tokens
    limit = _model_max_len(model)
    if limit is not None and total > limit:
        raise ValueError(f"generate: longest prompt {max_len} + max_new_tokens {max_new_tokens} "
                         f"= {total} exceeds the model's max_seq_len {limit}; shorten one")

    buf_BT = torch.full((B, total), pad_id, dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        buf_BT[b, :len(p)] = torch.as_tensor(list(p), dtype=torch.long, device=device)
    in_prompt_BT = torch.arange(total, device=device)[None, :] < lens_B[:, None]

    tokens_BN = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs_BN = torch.zeros((B, max_new_tokens), dtype=torch.float32, device=device)
    n_gen_B = torch.zeros(B, dtype=torch.long, device=device)
    done_B = torch.zeros(B, dtype=torch.bool, device=device)
    finished_B = torch.zeros(B, dtype=torch.bool, device=device)
    rows_B = torch.arange(B, device=device)

    if use_cache and new_cache is None:
        from stages.moe_model import KVCache
        new_cache = KVCache
    cache = new_cache() if use_cache else None
    was_training = model.training
    model.eval()
    try:
        fed = 0  # positions already in the cache
        for cur in range(min_len, total):
            if use_cache:
                out = model(buf_BT[:, fed:cur], kv_cache=cache, start_pos=fed)
                fed = cur
            else:
                out = model(buf_BT[:, :cur])
            logits_BV = _logits_of(out)[:, -1].float()
            next_B = sample_next(logits_BV, temperature, top_p, generator)
            generating_B = ~in_prompt_BT[:, cur] & ~done_B
            tok_B = torch.where(in_prompt_BT[:, cur], buf_BT[:, cur],
                                torch.where(generating_B, next_B, torch.full_like(next_B, pad_id)))
            buf_BT[:, cur] = tok_B
            if generating_B.any():
                rows, slot = rows_B[generating_B], n_gen_B[generating_B]
                tokens_BN[rows, slot] = tok_B[generating_B]
                lp_B = torch.log_softmax(logits_BV, -1).gather(-1, tok_B[:, None]).squeeze(-1)
                logprobs_BN[rows, slot] = lp_B[generating_B]
                n_gen_B += generating_B.long()
                if eos_id is not None:
                    hit_B = generating_B & (tok_B == eos_id)
                    finished_B |= hit_B
                    done_B |= hit_B
                done_B |= n_gen_B >= max_new_tokens
            if bool(done_B.all()):
                break
    finally:
        model.train(was_training)
    return Generation(tokens_BN=tokens_BN, lengths_B=n_gen_B, logprobs_BN=logprobs_BN,
                      finished_B=finished_B)


def generate_no_cache(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                      eos_id: int | None, **kw) -> Generation:
    """`generate` recomputing the whole sequence every step (no KV cache): the reference the
    cached path is tested against, and a fallback for models without a cache."""
    return generate(model, prompts, max_new_tokens, eos_id, use_cache=False, **kw)
