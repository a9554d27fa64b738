"""Sampling responses to chat prompts (`stages.r1.sampler.generate`, rows batched by prompt
length), the seeded problem subsets the samplers draw from, and averages over rollouts.

Shape suffixes: B rows, G samples per prompt, N new tokens."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from .chat import ChatTokenizer, prompt_text
from .sampler import generate


def mean(xs: Sequence[float]) -> float:
    """The mean of xs; 0.0 for none."""
    return float(sum(xs) / len(xs)) if xs else 0.0


def subset(rows: Sequence, n: int | None, seed: int) -> list:
    """n rows drawn without replacement by a seeded draw, in their original order (all rows when
    n is None/0 or >= len(rows)): a held-out subset that covers every task and level."""
    if not n or n >= len(rows):
        return list(rows)
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]


@dataclass
class Samples:
    """G samples for each of P prompts: texts[p][g], token ids (without prompt, EOS kept),
    whether each finished with EOS, and the sampling model's log-prob of each response token
    (temperature 1, no top-p: `stages.r1.sampler.Generation.logprobs_BN`)."""
    prompt_ids: list[list[int]]
    response_ids: list[list[list[int]]]
    texts: list[list[str]]
    finished: list[list[bool]]
    logprobs: list[list[list[float]]]


@torch.no_grad()
def sample_responses(model: nn.Module, tokenizer: ChatTokenizer, prompts: Sequence[str],
                     n: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                     style: str = "chat", generator: torch.Generator | None = None,
                     batch_rows: int = 64) -> Samples:
    """n samples for each prompt (rendered in `style`), in `generate` calls of at most
    batch_rows rows. Rows go to the calls in order of prompt length: a call's decode steps are
    its longest prompt minus its shortest plus max_new_tokens (see `stages.r1.sampler`)."""
    prompt_ids = [tokenizer.encode(prompt_text(p, style)) for p in prompts]
    stops = tokenizer.stop_ids(style)
    flat = [ids for ids in prompt_ids for _ in range(n)]
    order = sorted(range(len(flat)), key=lambda i: len(flat[i]))
    resp: list[list[int]] = [[] for _ in flat]
    fin = [False] * len(flat)
    lps: list[list[float]] = [[] for _ in flat]
    for i in range(0, len(order), batch_rows):
        rows = order[i:i + batch_rows]
        out = generate(model, [flat[r] for r in rows], max_new_tokens, tokenizer.eos_id,
                       pad_id=tokenizer.pad_id, temperature=temperature, top_p=top_p,
                       generator=generator, stop_ids=stops)
        tokens_BN, lengths_B = out.tokens_BN.cpu(), out.lengths_B.tolist()
        finished_B, logprobs_BN = out.finished_B.tolist(), out.logprobs_BN.float().cpu()
        for b, r in enumerate(rows):
            resp[r] = tokens_BN[b, :lengths_B[b]].tolist()
            lps[r] = logprobs_BN[b, :lengths_B[b]].tolist()
            fin[r] = bool(finished_B[b])
    texts = [tokenizer.decode_response(r) for r in resp]
    group = lambda xs: [xs[p * n:(p + 1) * n] for p in range(len(prompts))]  # noqa: E731
    return Samples(prompt_ids, group(resp), group(texts), group(fin), group(lps))
