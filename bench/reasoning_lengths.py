"""Worked-solution lengths in tokens per task and level of the generated reasoning problems:
do the cold-start solutions fit `small`'s 512-token responses (cold_start_sft drops longer
examples; GRPO and evaluate cut rollouts there)? And how the format reward reads them: the
mean number of reasoning steps (`stages.r1.rewards.reasoning_steps`) a solution holds, the
share scoring format 1 whole and cut to its last line (tiny's cold start), and the share of
their `<think></think>` shortcut (same answer) that does.

    python bench/reasoning_lengths.py --levels 1,2,3,4 --n 300

The tokenizer is `stages.tokenizer_train.train_tokenizer` (the pipeline's: one token per digit,
punctuation isolated, byte-level BPE) at `small`'s vocabulary, trained on --train-n problems a
(task, level) of another seed (prompt + solution): a stand-in for small's tokenizer, which is
trained on the curated crawl plus this kind of text. CPU only, ~10 s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deeprecipe.stages.generators import reasoning_data as rd  # noqa: E402
from deeprecipe.stages.r1.chat import shorten_solution  # noqa: E402
from deeprecipe.stages.r1.rewards import extract_think, format_reward, reasoning_steps  # noqa: E402
from deeprecipe.stages.tokenizer_train import train_tokenizer  # noqa: E402


def format_share(texts: list[str]) -> float:
    return sum(format_reward(t) for t in texts) / len(texts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="arithmetic,word_problem,counting")
    ap.add_argument("--levels", default="1,2,3,4")
    ap.add_argument("--n", type=int, default=300, help="problems measured a (task, level)")
    ap.add_argument("--train-n", type=int, default=400, help="tokenizer training problems")
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--limit", type=int, default=512, help="response tokens of the profile")
    args = ap.parse_args(argv)
    tasks, levels = args.tasks.split(","), [int(x) for x in args.levels.split(",")]
    corpus = rd.generate_problems(args.train_n, seed=1, tasks=tasks, levels=levels)
    tok = train_tokenizer((r["prompt"] + " " + r["solution"] for r in corpus), args.vocab)
    rows = rd.generate_problems(args.n, seed=0, tasks=tasks, levels=levels)
    print(f"| task | level | mean tokens | p90 | max | share > {args.limit} | mean chars "
          f"| reasoning steps | format 1 | last line: format 1 | shortcut: format 1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for task in tasks:
        for level in levels:
            group = [r for r in rows if r["task"] == task and r["level"] == level]
            sols = [r["solution"] for r in group]
            lens = sorted(len(tok.encode(s).ids) for s in sols)
            steps = [len(reasoning_steps(extract_think(r["solution"]), r["answer"]))
                     for r in group]
            shortcuts = ["<think></think><answer>" + r["answer"] + "</answer>" for r in group]
            print(f"| {task} | {level} | {statistics.mean(lens):.0f} | "
                  f"{lens[len(lens) * 9 // 10]} | {lens[-1]} | "
                  f"{sum(n > args.limit for n in lens) / len(lens):.3f} | "
                  f"{statistics.mean(len(s) for s in sols):.0f} | "
                  f"{statistics.mean(steps):.1f} | {format_share(sols):.3f} | "
                  f"{format_share([shorten_solution(s, 1) for s in sols]):.3f} | "
                  f"{format_share(shortcuts):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
