"""Reasoning text for the pretraining mix (DeepSeekMath style): train-split problems with their
worked solutions, as plain documents.

R1-Zero rests on a base that has seen mathematics: DeepSeek-V3-Base's corpus holds math and
code from the web (DeepSeekMath's 120B-token math corpus is the model). A base pretrained only
on our synthetic crawl never writes a correct or formatted answer, so GRPO's group advantages
are all zero. This module turns verifiable problems into documents that `tokenize_pack` mixes
in as their own source at a fixed share of the training tokens.

Documents (one per problem; the style is a hash of the problem id, so it does not depend on
order or seed):

    solution  "Problem: {prompt}\\nSolution:\\n{step lines}\\nAnswer: {answer}"   (textbook prose)
    tagged    "Q: {prompt}\\nA: <think>\\n{step lines}\\n</think>\\n<answer>{answer}</answer>"
              a share `tagged_frac` (default small): Q/A threads whose answers carry reasoning
              tags, as a web-scale base meets them in the wild. Packed with the tags as their
              special ids (the source is generated, not crawled), so an R1-Zero policy has a
              non-zero chance of emitting them; without any, the format can never emerge from
              RL. (A first form, "{prompt}\\n<think>…", taught the base to restate the question
              and skip the opening tag after "Assistant:": R1-Zero format stayed at 0.)

Only train-split problems are used: a generated problem whose id hashes into the held-out or
the RL share (`reasoning_data.split_of`, the rule the evaluation set and the RL prompts are cut
with) is dropped, and so is any problem whose prompt equals a held-out or RL prompt (the user's
own files can word the same question twice). Both are counted. So neither evaluation nor RL
ever meets a problem the model has read worked.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import pyarrow as pa

from deeprecipe.stages.generators import reasoning_data as rd
from deeprecipe.stages.tokenize_pack import hash_uniform
from deeprecipe.pipeline.config import option

STYLES = ("solution", "tagged")
SOURCE = "<reasoning>"   # the source name in tokenize_pack's mixture: cannot be a web domain
DOC_SCHEMA = pa.schema([("id", pa.string()), ("task", pa.string()), ("level", pa.int32()),
                        ("style", pa.string()), ("text", pa.string())])
_SOLUTION_RE = re.compile(r"<think>\n?(.*?)\n?</think>\s*<answer>(.*?)</answer>\s*\Z", re.S)


@dataclass(frozen=True)
class ReasoningCorpusConfig:
    seed: int = option("seed of the extra generated problems")
    extra_per_task_level: int = option("generated problems per (task, level) beyond "
                                       "reasoning_data's")
    tagged_frac: float = option("share of documents with <think>/<answer> tags")


def solution_steps(solution: str) -> tuple[list[str], str] | None:
    """(non-empty reasoning lines, answer) of a `<think>…</think><answer>…</answer>` solution,
    or None if it is not in that form."""
    m = _SOLUTION_RE.search(solution)
    if m is None:
        return None
    return [ln for ln in m.group(1).split("\n") if ln.strip()], m.group(2).strip()


def document_style(problem_id: str, tagged_frac: float, seed: int) -> str:
    """'tagged' for a share `tagged_frac` of problem ids (by hash), else 'solution'."""
    if not 0.0 <= tagged_frac <= 1.0:
        raise ValueError(f"tagged_frac {tagged_frac} is outside [0, 1]")
    return "tagged" if hash_uniform(problem_id, seed, "reasoning-style") < tagged_frac else "solution"


def render_document(row: dict, style: str) -> str | None:
    """One problem row as a pretraining document in `style`; None when its solution has no
    reasoning lines to show."""
    parsed = solution_steps(row["solution"])
    if parsed is None or not parsed[0]:
        return None
    steps, answer = parsed
    prompt = row["prompt"].strip()
    if style == "solution":
        return f"Problem: {prompt}\nSolution:\n" + "\n".join(steps) + f"\nAnswer: {answer}"
    if style == "tagged":
        return f"Q: {prompt}\nA: {rd.render_response(steps, answer)}"
    raise ValueError(f"unknown document style {style!r}; choose one of {STYLES}")


def normalised_prompt(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def extra_train_problems(n_per_task_level: int, seed: int, tasks: Sequence[str],
                         levels: Sequence[int], held_out_frac: float,
                         exclude_ids: set[str], max_misses_in_a_row: int = 200,
                         rl_frac: float = 0.0) -> tuple[list[dict], Counter]:
    """Up to n_per_task_level more train-split problems per (task, level), none in exclude_ids.

    Draws from each generator with its own RNG (string seed f"corpus:{seed}:{task}:{level}");
    held-out and RL draws (`rd.split_of` with held_out_frac, rl_frac) and repeats are skipped
    and counted. A (task, level) whose space runs out
    (`max_misses_in_a_row` skipped draws in a row) gives fewer, also counted; never an error."""
    rows: list[dict] = []
    stats: Counter = Counter()
    seen = set(exclude_ids)
    tasks, levels = tasks or tuple(rd.GENERATORS), levels or rd.LEVELS  # empty: all
    for task in tasks:
        for level in levels:
            rng = random.Random(f"corpus:{seed}:{task}:{level}")
            made, misses = 0, 0
            while made < n_per_task_level and misses < max_misses_in_a_row:
                row = rd.GENERATORS[task](rng, level, held_out_frac)
                if rd.split_of(row["id"], held_out_frac, rl_frac) != rd.TRAIN:
                    stats["non_train_draws_skipped"] += 1
                    misses += 1
                elif row["id"] in seen:
                    stats["repeat_draws_skipped"] += 1
                    misses += 1
                else:
                    seen.add(row["id"])
                    rows.append(row)
                    made, misses = made + 1, 0
            stats["short_of_target"] += n_per_task_level - made
    return rows, stats


def corpus_documents(rows: Iterable[dict], excluded_prompts: Iterable[str], tagged_frac: float,
                     seed: int) -> tuple[pa.Table, dict]:
    """Train-split problem rows -> (DOC_SCHEMA table, counts). Rows not in the train split,
    repeats of an id, prompts equal to an excluded (held-out or RL) prompt (case and spacing
    ignored) and solutions without reasoning lines are skipped and counted."""
    banned = {normalised_prompt(p) for p in excluded_prompts}
    cols: dict[str, list] = {f: [] for f in DOC_SCHEMA.names}
    stats: Counter = Counter()
    seen: set[str] = set()
    for row in rows:
        if row["split"] != rd.TRAIN:
            stats["non_train_rows_skipped"] += 1
            continue
        if row["id"] in seen:
            stats["repeats_skipped"] += 1
            continue
        seen.add(row["id"])
        if normalised_prompt(row["prompt"]) in banned:
            stats["excluded_prompt_matches_skipped"] += 1
            continue
        style = document_style(row["id"], tagged_frac, seed)
        text = render_document(row, style)
        if text is None:
            stats["no_reasoning_skipped"] += 1
            continue
        for f, v in (("id", row["id"]), ("task", row["task"]), ("level", int(row["level"])),
                     ("style", style), ("text", text)):
            cols[f].append(v)
        stats[f"docs_{style}"] += 1
    stats["docs"] = len(cols["text"])
    return pa.table(cols, schema=DOC_SCHEMA), dict(stats)


def mixture_table(texts: pa.ChunkedArray | pa.Array, source_column: str) -> pa.Table:
    """The corpus's documents as tokenize_pack's mixture reads a web shard: ``text`` and
    ``source_column`` (= ``SOURCE`` for every row)."""
    return pa.table({"text": texts, source_column: pa.array([SOURCE] * len(texts), pa.string())})
