"""Batched autoregressive sampling with a KV cache, for GRPO rollouts and rejection sampling.

Model protocol: `model(idx_BT, kv_cache=cache, start_pos=int)` returns logits_BTV or a tuple
whose first item is logits_BTV (stages.moe_model.MoETransformer returns (logits, losses)); the
cache object comes from `new_cache()` (default: a `stages.moe_model.KVCache` preallocated for
the longest prompt + max_new_tokens) and the model appends to it. `generate_no_cache` calls
`model(idx_BT)` on the whole sequence at every step instead.

Prompts of different lengths are handled without padding or attention masks: all rows advance
one position per step; a row still inside its prompt is fed its own next prompt token (the
sampled one is discarded), a row past its prompt is fed what it sampled. So row b's tokens sit at
positions 0..len_b+N-1 exactly as if it ran alone, and the shared `start_pos` is right for every
row. The cost is that the batch prefill covers only the shortest prompt.

Decode steps never sync with the host (the all-rows-done check runs every `DONE_CHECK_EVERY`
steps, and not at all without an EOS). On CUDA, a `MoETransformer` with the default cache runs
its one-token steps as CUDA graph replays (`GraphedDecoder`): one graph per span of
`GRAPH_SPAN` cached positions, attention masked past the current one.

Shape suffixes: B rows, T positions, N max_new_tokens, V vocab.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

DONE_CHECK_EVERY = 16   # steps between host checks for "every row hit EOS"
GRAPH_SPAN = 64         # cached positions per CUDA graph bucket
GRAPH_MIN_STEPS = 16    # fewer decode steps than this: capturing graphs does not pay


@dataclass
class Generation:
    """tokens_BN: generated tokens (EOS included), pad_id after a row's end; lengths_B: tokens
    generated per row; logprobs_BN: log pi(token) under the model's own distribution
    (temperature 1, no top-p: what `grpo_loss.token_logprobs` recomputes, so GRPO's first ratio
    is 1), 0 at padding; finished_B: the row emitted EOS (False: it ran out of max_new_tokens)."""
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


# ----------------------------------------------------------------------------- decode step

def static_decode_logits(model: nn.Module, cache, tok_B1: torch.Tensor, pos_1: torch.Tensor,
                         span: int) -> torch.Tensor:
    """One decode step of a `MoETransformer` with every shape fixed (CUDA-graph safe): tok_B1
    (int64) at device position pos_1 (int64, (1,)), attending to the first `span` cache
    positions (keys past pos_1 masked) -> logits_BV fp32. Same result as
    `model(tok_B1, kv_cache=cache, start_pos=pos)[0][:, -1]` up to float rounding."""
    cache.begin_static(pos_1, span)
    try:
        cos_1R = model.rope_cos.index_select(0, pos_1)
        sin_1R = model.rope_sin.index_select(0, pos_1)
        h_B1D = model.embed(tok_B1)
        for layer in model.layers:
            h_B1D, _ = layer(h_B1D, cos_1R, sin_1R, cache)
        return model.head(model.norm(h_B1D[:, -1])).float()
    finally:
        cache.end_static()  # the caller sets the cached length (pos + 1)


class GraphedDecoder:
    """Decode steps of a `MoETransformer` as CUDA graph replays of `static_decode_logits`.

    One graph per attended span (positions rounded up to a multiple of `span_step`), captured
    the first time a step needs it (see `_capture`). Inputs are copied into static buffers; the
    returned logits_BV are overwritten by the next replay. Should a capture fail, it warns and
    runs the remaining steps eagerly (the same static step, without a graph).
    """

    def __init__(self, model: nn.Module, cache, batch: int, device: torch.device,
                 span_step: int = GRAPH_SPAN):
        self.model, self.cache, self.span_step = model, cache, span_step
        self.tok_B1 = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.pos_1 = torch.zeros(1, dtype=torch.long, device=device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = None
        self.failed = False

    def span(self, pos: int) -> int:
        return min(self.cache.room(), -(-(pos + 1) // self.span_step) * self.span_step)

    def __call__(self, tok_B1: torch.Tensor, pos: int) -> torch.Tensor:
        """tok_B1 at position pos -> logits_BV (valid until the next call)."""
        self.tok_B1.copy_(tok_B1)
        self.pos_1.fill_(pos)
        span = self.span(pos)
        try:
            if self.failed:
                return self._step(span)
            if span not in self.graphs:
                return self._capture(span)
            graph, logits_BV = self.graphs[span]
            graph.replay()
            return logits_BV
        finally:
            self.cache.end_static(pos + 1)

    def _step(self, span: int) -> torch.Tensor:
        return static_decode_logits(self.model, self.cache, self.tok_B1, self.pos_1, span)

    def _capture(self, span: int) -> torch.Tensor:
        """Capture the step for `span`; return this step's logits_BV. The first capture is
        preceded by the step run eagerly on a side stream (lazy inits, Triton autotuning), whose
        result is this step's; later ones replay their new graph instead."""
        warm_BV = None
        if not self.graphs:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                warm_BV = self._step(span)  # the real step (its cache write is idempotent)
            torch.cuda.current_stream().wait_stream(side)
            warm_BV.record_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                static_BV = self._step(span)
        except RuntimeError as err:  # e.g. a host sync inside the step
            warnings.warn(f"generate: CUDA graph capture failed ({err}); decoding eagerly")
            self.failed = True
            return warm_BV if warm_BV is not None else self._step(span)
        self.pool = graph.pool()
        self.graphs[span] = (graph, static_BV)
        if warm_BV is not None:
            return warm_BV
        graph.replay()
        return static_BV


def _use_graphs(cuda_graph: bool | None, model: nn.Module, cache, device: torch.device,
                n_steps: int) -> bool:
    """CUDA graphs for the decode steps: asked for, or (None) on CUDA for a MoETransformer with
    a preallocated KVCache and enough steps to pay for the captures, outside autocast or under
    one whose weight-cast cache is off (a cached cast would be freed under the graph), and with
    no `torch.compile`d block (compiling inside a capture is not supported)."""
    from deeprecipe.stages.moe_model import KVCache, MoETransformer
    able = (device.type == "cuda" and isinstance(model, MoETransformer)
            and isinstance(cache, KVCache) and cache.max_len is not None)
    if cuda_graph and not able:
        raise ValueError("generate(cuda_graph=True) needs CUDA, a MoETransformer and the "
                         "default (preallocated) KVCache")
    if cuda_graph is None:
        autocast_ok = (not torch.is_autocast_enabled("cuda")
                       or not torch.is_autocast_cache_enabled())
        return (able and n_steps >= GRAPH_MIN_STEPS and autocast_ok
                and all(getattr(b, "_compiled_call_impl", None) is None for b in model.layers))
    return bool(cuda_graph)


# ----------------------------------------------------------------------------- generation

def _prompt_buffer(prompts: Sequence[Sequence[int]], total: int, pad_id: int,
                   device: torch.device) -> torch.Tensor:
    """buf_BT (int64): row b = prompts[b] then pad_id, built on the host, copied once."""
    buf_BT = torch.full((len(prompts), total), pad_id, dtype=torch.long)
    for b, p in enumerate(prompts):
        buf_BT[b, :len(p)] = torch.as_tensor(list(p), dtype=torch.long)
    return buf_BT.to(device)


@torch.no_grad()
def generate(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             eos_id: int | None, pad_id: int = 0, temperature: float = 1.0, top_p: float = 1.0,
             generator: torch.Generator | None = None, use_cache: bool = True,
             new_cache: Callable[[], object] | None = None,
             cuda_graph: bool | None = None, stop_ids: Sequence[int] = ()) -> Generation:
    """Sample up to max_new_tokens after each prompt (lists of token ids, any lengths >= 1).

    A row stops at its first eos_id or any of stop_ids (kept in tokens_BN and lengths_B, and
    the row counts as finished: vLLM's stop_token_ids); the loop ends when all rows have.
    temperature 0 is greedy and deterministic; otherwise pass a seeded `generator`
    for reproducible samples. The model runs in eval mode (restored afterwards), so MoE load
    counters are not touched. use_cache=False recomputes the full sequence every step.
    cuda_graph: replay the one-token steps from CUDA graphs (None: when it applies, see
    `_use_graphs`; True raises where it cannot).
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens={max_new_tokens} must be >= 1")
    device = next(model.parameters()).device
    B, N = len(prompts), max_new_tokens
    min_len, max_len = min(len(p) for p in prompts), max(len(p) for p in prompts)
    total = max_len + N
    limit = _model_max_len(model)
    if limit is not None and total > limit:
        raise ValueError(f"generate: longest prompt {max_len} + max_new_tokens {N} "
                         f"= {total} exceeds the model's max_seq_len {limit}; shorten one")

    buf_BT = _prompt_buffer(prompts, total, pad_id, device)
    lens_B = torch.tensor([len(p) for p in prompts], device=device)
    in_prompt_BT = torch.arange(total, device=device)[None, :] < lens_B[:, None]
    tokens_BN = torch.full((B, N), pad_id, dtype=torch.long, device=device)
    logprobs_BN = torch.zeros((B, N), dtype=torch.float32, device=device)
    n_gen_B = torch.zeros(B, dtype=torch.long, device=device)
    done_B = torch.zeros(B, dtype=torch.bool, device=device)
    finished_B = torch.zeros(B, dtype=torch.bool, device=device)

    if use_cache and new_cache is None:
        from deeprecipe.stages.moe_model import KVCache
        new_cache = functools.partial(KVCache, max_len=total)
    cache = new_cache() if use_cache else None
    stops = ([] if eos_id is None else [eos_id]) + [int(i) for i in stop_ids]
    stop_S = torch.tensor(stops, dtype=torch.long, device=device)
    graphed = None
    if use_cache and _use_graphs(cuda_graph, model, cache, device, total - min_len - 1):
        graphed = GraphedDecoder(model, cache, B, device)
    was_training = model.training
    model.eval()
    try:
        for step, cur in enumerate(range(min_len, total)):
            if not use_cache:
                logits_BV = _logits_of(model(buf_BT[:, :cur]))[:, -1].float()
            elif step == 0:  # prefill the shortest prompt
                logits_BV = _logits_of(model(buf_BT[:, :cur], kv_cache=cache))[:, -1].float()
            elif graphed is not None:
                logits_BV = graphed(buf_BT[:, cur - 1:cur], cur - 1)
            else:
                out = model(buf_BT[:, cur - 1:cur], kv_cache=cache, start_pos=cur - 1)
                logits_BV = _logits_of(out)[:, -1].float()
            next_B = sample_next(logits_BV, temperature, top_p, generator)
            gen_B = ~in_prompt_BT[:, cur] & ~done_B
            tok_B = torch.where(in_prompt_BT[:, cur], buf_BT[:, cur],
                                torch.where(gen_B, next_B, torch.full_like(next_B, pad_id)))
            buf_BT[:, cur] = tok_B
            lp_B = (logits_BV.gather(-1, tok_B[:, None]).squeeze(-1)
                    - torch.logsumexp(logits_BV, dim=-1))
            _record(tokens_BN, n_gen_B, gen_B, tok_B)
            _record(logprobs_BN, n_gen_B, gen_B, lp_B)
            n_gen_B += gen_B.long()
            done_B |= n_gen_B >= N
            if stops:  # (without any, the longest prompt's row runs to the end)
                hit_B = gen_B & torch.isin(tok_B, stop_S)
                finished_B |= hit_B
                done_B |= hit_B
                if step % DONE_CHECK_EVERY == DONE_CHECK_EVERY - 1 and bool(done_B.all()):
                    break
    finally:
        model.train(was_training)
    return Generation(tokens_BN=tokens_BN, lengths_B=n_gen_B, logprobs_BN=logprobs_BN,
                      finished_B=finished_B)


def _record(out_BN: torch.Tensor, n_gen_B: torch.Tensor, gen_B: torch.Tensor,
            val_B: torch.Tensor) -> None:
    """out_BN[b, n_gen_B[b]] = val_B[b] where gen_B[b], in place, without a host sync."""
    slot_B1 = n_gen_B.clamp(max=out_BN.shape[1] - 1)[:, None]
    keep_B = out_BN.gather(1, slot_B1).squeeze(1)
    out_BN.scatter_(1, slot_B1, torch.where(gen_B, val_B.to(out_BN.dtype), keep_B)[:, None])


def generate_no_cache(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                      eos_id: int | None, **kw) -> Generation:
    """`generate` recomputing the whole sequence every step (no KV cache): the reference the
    cached path is tested against, and a fallback for models without a cache."""
    return generate(model, prompts, max_new_tokens, eos_id, use_cache=False, **kw)
