"""Level 4 of the generated reasoning problems: multi-step problems with room for sharpening.

Levels 1-3 (`reasoning_data`) are one operation, one chain of 2-4 changes, or one phrase to
count in; a cold start on `small` solves most of them every time or never (BENCHMARKS.md,
run 8: 193 of 256 held-out problems right in 4 of 4 samples, 32 in none), so GRPO has few mixed
groups to learn from. Level 4 chains several of those skills, so one slip anywhere fails the
problem and a model that knows each step gets it right only some of the time:

    arithmetic    `a x b - c` / `c - a x b`-style chains (a 2x2-digit product and a 3-4-digit
                  term): the product first (two partial products and their sum), then the
                  addition or subtraction, each worked column by column; the result is
                  negative in ~27 % of the problems
    word_problem  5 changes to a quantity, and one distractor sentence about another person's
                  things (of the other pronoun, so every 'he' / 'she' stays unambiguous) that
                  must be left out
    counting      a 6-8-word phrase with capitalised words; the count takes capital and small
                  letters alike (the prompt says so)

Every answer is an integer and is graded exactly (`stages.r1.rewards.numbers_equal`: no
tolerance for an integer reference; `1,234` and `1234.0` are the same number). Rows have the
same fields, id hashing and splits as the other levels (`reasoning_data.make_row`).
"""
from __future__ import annotations

import random

from deeprecipe.stages.generators import reasoning_data as rd

LEVEL = 4
_CHAIN_TERMS = 1               # added / subtracted terms besides the product
_CHAIN_TERM_DIGITS = (3, 4)   # digits of the added / subtracted terms (either)
_PRODUCT_DIGITS = (2, 2)      # digits of the product's factors


def signed_steps(x: int, op: str, y: int) -> tuple[list[str], int]:
    """Worked lines of x + y or x - y for any integer x and y >= 0, column by column on the
    magnitudes (`rd.addition_steps`, `rd.subtraction_steps`) -> (lines, result)."""
    result = x + y if op == "+" else x - y
    if x >= 0 and op == "+":
        return rd.addition_steps(x, y), result
    if x >= 0:  # x - y
        if x >= y:
            return rd.subtraction_steps(x, y), result
        return ([f"{y} is larger than {x}, so {x} - {y} is negative: compute {y} - {x} and "
                 f"negate it."] + rd.subtraction_steps(y, x)
                + [f"Negating: {x} - {y} = {result}."]), result
    m = -x
    if op == "-":  # -m - y = -(m + y)
        return ([f"{x} - {y} = -({m} + {y}): add the magnitudes and keep the minus sign."]
                + rd.addition_steps(m, y) + [f"So {x} - {y} = {result}."]), result
    if y >= m:  # -m + y = y - m
        return ([f"{x} + {y} = {y} - {m}."] + rd.subtraction_steps(y, m)
                + [f"So {x} + {y} = {result}."]), result
    return ([f"{x} + {y} = -({m} - {y}): {m} is larger, so the result is negative."]
            + rd.subtraction_steps(m, y) + [f"So {x} + {y} = {result}."]), result


def make_arithmetic_chain(rng: random.Random, held_out_frac: float) -> dict:
    """`Compute ...`: one product `p x q` and _CHAIN_TERMS more terms joined by + or -, the
    product in any place. Sized so the worked solution stays under 512 tokens of a 32k BPE
    vocabulary (`bench/reasoning_lengths.py`: mean 378, largest 490 of 300)."""
    p = rd._n_digits(rng, _PRODUCT_DIGITS[0])
    q = rd._n_digits(rng, _PRODUCT_DIGITS[1])
    others = [rd._n_digits(rng, rng.choice(_CHAIN_TERM_DIGITS)) for _ in range(_CHAIN_TERMS)]
    slot = rng.randrange(_CHAIN_TERMS + 1)
    terms: list = others[:slot] + [(p, q)] + others[slot:]
    ops = [rng.choice("+-") for _ in range(_CHAIN_TERMS)]
    shown = [f"{t[0]} x {t[1]}" if isinstance(t, tuple) else str(t) for t in terms]
    expr = shown[0] + "".join(f" {op} {t}" for op, t in zip(ops, shown[1:]))
    steps = [f"Compute {expr}: the multiplication {p} x {q} first, then the rest from left "
             f"to right."]
    steps += rd.multiplication_steps(p, q)
    values = [p * q if isinstance(t, tuple) else t for t in terms]
    steps.append("Replacing the product: " + str(values[0])
                 + "".join(f" {op} {v}" for op, v in zip(ops, values[1:])) + ".")
    x = values[0]
    for op, y in zip(ops, values[1:]):
        lines, new = signed_steps(x, op, y)
        steps += lines
        x = new
    steps.append(f"So {expr} = {x}.")
    return rd.make_row("arithmetic", LEVEL, f"L4|{expr}", f"Compute {expr}.", str(x),
                       rd.render_response(steps, str(x)), held_out_frac)


_WORD_CHANGES = 5


def make_word_problem_distractor(rng: random.Random, held_out_frac: float) -> dict:
    """A quantity changed by 5 steps, with one sentence about another person's things."""
    who = rng.choice(rd._NAMES)
    other = rng.choice([n for n in rd._NAMES if n[1] != who[1]])  # 'he' / 'she' stay clear
    item = rng.choice(rd._ITEMS)
    x = rng.randint(5, 60)
    sentences = [f"{who[0]} has {x} {item}."]
    lines = [f"Start: {who[0]} has {x} {item}."]
    key = [str(x)]
    for i in range(_WORD_CHANGES):
        sentence, op, x, line = rd._word_step(rng, x, who, item)
        sentences.append(sentence)
        lines.append(f"Step {i + 1}: {line}")
        key.append(op)
    n_other, at = rng.randint(2, 60), rng.randint(1, _WORD_CHANGES)
    sentences.insert(at + 1, f"{other[0]} has {n_other} {item} of {other[2]} own.")
    lines.insert(at + 1, f"{other[0]}'s {n_other} {item} are not {who[0]}'s: they do not "
                         f"change {who[0]}'s count.")
    key.insert(at + 1, f"d{n_other}")
    sentences.append(f"How many {item} does {who[0]} have now?")
    lines.append(f"After all {_WORD_CHANGES} steps {who[0]} has {x} {item}.")
    return rd.make_row("word_problem", LEVEL, "L4|" + " ".join(key), " ".join(sentences), str(x),
                       rd.render_response(lines, str(x)), held_out_frac)


_COUNT_WORDS = (6, 8)
_CAPITALISED_SHARE = 0.4


def make_counting_mixed_case(rng: random.Random, held_out_frac: float) -> dict:
    """Count a letter, capital and small alike, in a 6-8-word phrase with capitalised words."""
    words = [rd._counting_token(rng) for _ in range(rng.randint(*_COUNT_WORDS))]
    words = [w.capitalize() if rng.random() < _CAPITALISED_SHARE else w for w in words]
    text = " ".join(words)
    letter = rng.choice(sorted(set(text.lower().replace(" ", ""))))
    steps = [f"Go through \"{text}\" letter by letter and count the letter '{letter}', "
             f"both '{letter.upper()}' and '{letter}'."]
    count = 0
    for word in words:
        marks = []
        for ch in word:
            if ch.lower() == letter:
                count += 1
                marks.append(f"{ch} -> {count}")
            else:
                marks.append(ch)
        steps.append(f"\"{word}\": " + ", ".join(marks) + f". Count so far: {count}.")
    steps.append(f"The letter '{letter}' appears {count} time{'s' if count != 1 else ''}, "
                 f"capital and small together.")
    prompt = (f"How many times does the letter '{letter}' appear in \"{text}\"? Count capital "
              f"and small letters alike.")
    return rd.make_row("counting", LEVEL, f"L4|{letter}|{text}", prompt, str(count),
                       rd.render_response(steps, str(count)), held_out_frac)


MAKERS = {"arithmetic": make_arithmetic_chain, "word_problem": make_word_problem_distractor,
          "counting": make_counting_mixed_case}
"""Level-4 problem makers by task: (rng, held_out_frac) -> row."""
