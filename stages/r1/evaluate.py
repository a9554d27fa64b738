"""R1's evaluation: pass@1 over k samples per held-out problem, unbiased pass@k, standard
errors and paired differences between models."""
from __future__ import annotations

import math
import statistics
from typing import Mapping, Sequence

import torch.nn as nn

from .chat import ChatTokenizer
from .model_io import sampling_generator
from .rewards import format_reward, is_correct
from .rollout import mean, sample_responses


def pass_at_1(correct_PK: Sequence[Sequence[bool]]) -> float:
    """pass@1 estimated from k samples per problem: mean over problems of (correct / k)."""
    if not correct_PK:
        return float("nan")
    return mean([mean([float(c) for c in row]) for row in correct_PK])


def pass_at_k(correct_P: Sequence[int], n: int, k: int) -> float:
    """Unbiased pass@k from n samples per problem (Chen et al. 2021, the Codex paper): the mean
    over problems of 1 - C(n - c, k) / C(n, k), c = correct samples of the problem: the chance
    that at least one of k samples drawn without replacement from the n is right. k <= n; nan
    without problems. A model's pass@k at large k is about as far as RL sharpens its pass@1
    without teaching it something new (Yue et al. 2025: RL-trained models rarely exceed their
    start's pass@k at large k)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if not correct_P:
        return float("nan")
    return mean([1.0 - math.comb(n - c, k) / math.comb(n, k) for c in correct_P])


def pass_at_k_ladder(correct_P: Sequence[int], n: int) -> dict[str, float]:
    """{'1': pass@1, '2': pass@2, '4': ..., str(n): pass@n}: powers of two up to n, and n."""
    ks = sorted({2 ** i for i in range(n.bit_length()) if 2 ** i <= n} | {n})
    return {str(k): pass_at_k(correct_P, n, k) for k in ks}


def pass_rate_stderr(correct_P: Sequence[int], k: int) -> float:
    """Standard error of pass@1 over problems: sample std of the per-problem rates
    (correct_P[i] / k) / sqrt(P); nan with fewer than 2 problems. It covers the draw of problems
    and of the k samples, not retraining."""
    if len(correct_P) < 2:
        return float("nan")
    return statistics.stdev(c / k for c in correct_P) / math.sqrt(len(correct_P))


def paired_pass_difference(correct_a_P: Sequence[int], correct_b_P: Sequence[int],
                           k: int) -> tuple[float, float]:
    """pass@1(a) - pass@1(b) and its standard error, paired over the same problems: the std
    of the per-problem rate differences / sqrt(P) (tighter than combining two unpaired errors
    when both models find the same problems hard)."""
    if len(correct_a_P) != len(correct_b_P):
        raise ValueError(f"paired_pass_difference: {len(correct_a_P)} vs {len(correct_b_P)} "
                         f"problems")
    diffs = [a - b for a, b in zip(correct_a_P, correct_b_P)]
    return sum(diffs) / (k * max(len(diffs), 1)), pass_rate_stderr(diffs, k)


def evaluate(model: nn.Module, problems: Sequence[Mapping], tokenizer: ChatTokenizer, k: int,
             temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 64,
             style: str = "chat", seed: int = 0, batch_rows: int = 64,
             n_wrong_examples: int = 4) -> dict:
    """R1's evaluation: k samples per problem at temperature/top_p (`generate` calls of at most
    batch_rows rows) -> {'pass@1', 'pass@1_stderr' (`pass_rate_stderr`), 'pass@k'
    ({k: unbiased pass@k} for k = 1, 2, 4, ..., k: `pass_at_k_ladder`), 'correct_per_problem'
    (correct samples of each problem, in order: for paired comparisons), 'format_rate',
    'mean_response_tokens', 'finished_rate',
    'per_task': {task: pass@1}, 'per_level': {'task/level': pass@1}, 'n_problems', 'k',
    'examples' (the first sample of the first 3 problems), 'wrong_examples' (up to
    n_wrong_examples {prompt, answer, response} whose first sample is wrong)}."""
    gen = sampling_generator(model, seed)
    s = sample_responses(model, tokenizer, [p["prompt"] for p in problems], k, max_new_tokens,
                         temperature, top_p, style, gen, batch_rows)
    correct = [[is_correct(t, p) for t in texts] for texts, p in zip(s.texts, problems)]
    by_task: dict[str, list] = {}
    by_level: dict[str, list] = {}
    wrong = []
    for p, texts, row in zip(problems, s.texts, correct):
        by_task.setdefault(p["task"], []).append(row)
        by_level.setdefault(f"{p['task']}/{p.get('level', 0)}", []).append(row)
        if not row[0] and len(wrong) < n_wrong_examples:
            wrong.append({"prompt": p["prompt"], "answer": p["answer"], "response": texts[0]})
    correct_P = [sum(row) for row in correct]
    return {"pass@1": pass_at_1(correct), "pass@1_stderr": pass_rate_stderr(correct_P, k),
            "pass@k": pass_at_k_ladder(correct_P, k), "correct_per_problem": correct_P,
            "format_rate": mean([format_reward(t) for texts in s.texts for t in texts]),
            "mean_response_tokens": mean([len(r) for g in s.response_ids for r in g]),
            "finished_rate": mean([float(f) for g in s.finished for f in g]),
            "per_task": {t: pass_at_1(rows) for t, rows in sorted(by_task.items())},
            "per_level": {t: pass_at_1(rows) for t, rows in sorted(by_level.items())},
            "n_problems": len(problems), "k": k,
            "examples": [s.texts[i][0] for i in range(min(3, len(problems)))],
            "wrong_examples": wrong}
