"""R1's rejection sampling: n samples per problem from the RL checkpoint, kept when correct
(`rewards.is_correct`) and readable (`readable`), one per distinct response."""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch.nn as nn

from .chat import ChatTokenizer
from .model_io import sampling_generator
from .rewards import extract_think, format_reward, is_correct, language_consistency_reward
from .rollout import sample_responses

_CODE_BLOCK = "```"


def readable(text: str, max_paragraph_chars: int, target_lang: str = "en") -> bool:
    """R1's readability filter: format valid, a single language in the CoT (language
    consistency 1.0, or no words at all), no code block, no paragraph of the CoT longer than
    max_paragraph_chars."""
    if format_reward(text) != 1.0 or _CODE_BLOCK in text:
        return False
    think = extract_think(text) or ""
    if re.search(r"[^\W\d_]", think) and language_consistency_reward(text, target_lang) < 1.0:
        return False
    return all(len(par) <= max_paragraph_chars for par in re.split(r"\n\s*\n", think))


def rejection_sample(model: nn.Module, problems: Sequence[Mapping], tokenizer: ChatTokenizer,
                     n: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                     max_paragraph_chars: int = 2000, seed: int = 0,
                     batch_rows: int = 64) -> tuple[list[dict], dict]:
    """n samples per problem (`generate` calls of at most batch_rows rows); keep the correct,
    readable (`readable`) ones, one per distinct response text per problem. Returns (kept rows
    {problem_id, task, prompt, response, sample_index, reward, response_tokens}, stats
    {sampled, correct, readable, kept, duplicates, problems_with_kept})."""
    gen = sampling_generator(model, seed)
    kept, stats = [], {"sampled": 0, "correct": 0, "readable": 0, "kept": 0, "duplicates": 0}
    covered = set()
    s = sample_responses(model, tokenizer, [p["prompt"] for p in problems], n, max_new_tokens,
                         temperature, top_p, "chat", gen, batch_rows)
    for p, texts, ids in zip(problems, s.texts, s.response_ids):
        seen = set()
        for g, text in enumerate(texts):
            stats["sampled"] += 1
            correct = is_correct(text, p)
            ok = readable(text, max_paragraph_chars)
            stats["correct"] += correct
            stats["readable"] += ok
            if not (correct and ok):
                continue
            key = " ".join(text.split())
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            covered.add(p["id"])
            kept.append({"problem_id": p["id"], "task": p["task"], "prompt": p["prompt"],
                         "response": text, "sample_index": g,
                         "reward": 1.0 + format_reward(text), "response_tokens": len(ids[g])})
    stats["kept"] = len(kept)
    stats["problems_with_kept"] = len(covered)
    return kept, stats
