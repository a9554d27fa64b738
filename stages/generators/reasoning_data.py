"""Post-training data: generated verifiable problems and the user's own JSONL sets (the
non-reasoning prompts and the safety preference set: ``non_reasoning``).

Every problem row is a dict (or a pyarrow table of them, `rows_to_table`) with
    id, task, level, split, prompt, answer, solution, meta
`solution` is a full response `<think>step-by-step…</think>\\n<answer>…</answer>` (cold-start SFT
and the proof that the problem is solvable); `meta` is a JSON string ({} for most tasks; the
countdown numbers and target). Splits are 'train' (cold-start SFT and the pretraining corpus),
'rl' (the RL stages' prompts and rejection sampling: problems the policy has never seen solved)
and 'held_out' (evaluation), decided by a hash of the problem's canonical content
(`problem_id`), so one problem never lands in two, whatever the wording, seed or order it was
generated with.

Generated tasks (levels 1..4, harder upwards; level 4 of arithmetic, word_problem and counting
chains several steps and lives in `stages.generators.multistep`):
    arithmetic    column + / − with carries and borrows, long × with partial products;
                  4: `a x b ± c` / `c ± a x b` chains
    word_problem  a quantity changed by 2 / 3 / 4 templated steps; 4: 5 steps and a distractor
    countdown     reach a target with given numbers (any valid expression is accepted)
    counting      how many times a letter occurs in a word or phrase; 4: longer, mixed case
    sorting       sort a list of integers ascending or descending
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pyarrow as pa

from deeprecipe.pipeline.config import option

ROW_FIELDS = ("id", "task", "level", "split", "prompt", "answer", "solution", "meta")
ROW_SCHEMA = pa.schema([("id", pa.string()), ("task", pa.string()), ("level", pa.int32()),
                        ("split", pa.string()), ("prompt", pa.string()), ("answer", pa.string()),
                        ("solution", pa.string()), ("meta", pa.string())])
LEVELS = (1, 2, 3, 4)
MULTISTEP_LEVEL = 4  # arithmetic, word_problem, counting: `multistep.MAKERS`
TRAIN, RL, HELD_OUT = "train", "rl", "held_out"
SPLITS = (TRAIN, RL, HELD_OUT)

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {prompt}. Assistant:")


@dataclass(frozen=True)
class ReasoningDataConfig:
    seed: int = option("generator seed of the problems and rows")
    n_per_task_level: int = option("generated problems per (task, level)")
    tasks: list = option("problem tasks to generate (empty: all)", display_empty="all")
    levels: list = option("difficulty levels to generate, of 1-4 (4: multi-step problems, "
                          "`stages.generators.multistep`; empty: all)", display_empty="all")
    held_out_frac: float = option("share of problems (by id hash) held out for evaluation")
    rl_frac: float = option("share of problems (by id hash) kept for the RL stages and rejection "
                            "sampling, never solved in SFT or pretraining; 0: RL uses train")
    n_factual_qa: int = option("corpus sentences to blank")
    max_sentence_words: int = option("longest corpus sentence (words) turned into a factual-QA "
                                     "row")
    problem_files: list = option("your GSM8K-style JSONL files (question, answer with '#### N')")
    sft_files: list = option("your SFT JSONL files (prompt/response or chat messages)")


def r1_zero_prompt(prompt: str) -> str:
    """The R1-Zero training template around a question."""
    return R1_ZERO_TEMPLATE.format(prompt=prompt.rstrip(" ."))


def render_response(steps: Sequence[str], answer: str) -> str:
    """`<think>\\nstep\\nstep…\\n</think>\\n<answer>answer</answer>` (empty think when no steps)."""
    think = "\n".join(steps)
    return f"<think>\n{think}\n</think>\n<answer>{answer}</answer>" if steps else \
        f"<think>\n\n</think>\n<answer>{answer}</answer>"


# ----------------------------------------------------------------------------- ids and splits


def problem_id(task: str, key: str) -> str:
    """16 hex digits of sha256(task, canonical problem content)."""
    return hashlib.sha256(f"{task}\x00{key}".encode()).hexdigest()[:16]


def split_of(pid: str, held_out_frac: float, rl_frac: float = 0.0) -> str:
    """By the id's hash value u in [0, 1): 'held_out' for u < held_out_frac, 'rl' for the next
    rl_frac, else 'train'. Growing rl_frac moves problems from train to rl only."""
    u = int(pid, 16) / 16 ** len(pid)
    return HELD_OUT if u < held_out_frac else RL if u < held_out_frac + rl_frac else TRAIN


def with_rl_split(rows: Iterable[dict], held_out_frac: float, rl_frac: float) -> list[dict]:
    """Rows with `split` recomputed by `split_of` (generators and loaders cut train / held-out
    only); rl_frac 0 leaves every split as it was."""
    if not 0.0 <= rl_frac <= 1.0 - held_out_frac:
        raise ValueError(f"rl_frac {rl_frac} must be in [0, 1 - held_out_frac = "
                         f"{1 - held_out_frac}]")
    return [{**r, "split": split_of(r["id"], held_out_frac, rl_frac)} for r in rows]


def make_row(task: str, level: int, key: str, prompt: str, answer: str, solution: str,
             held_out_frac: float, meta: dict | None = None) -> dict:
    """A problem row; `key` is the canonical content its id (and so its split) is hashed from."""
    pid = problem_id(task, key)
    return {"id": pid, "task": task, "level": int(level), "split": split_of(pid, held_out_frac),
            "prompt": prompt, "answer": answer, "solution": solution,
            "meta": json.dumps(meta or {}, sort_keys=True)}


def rows_to_table(rows: Iterable[dict]) -> pa.Table:
    """Problem rows -> pyarrow table with ROW_SCHEMA (missing meta -> '{}')."""
    rows = list(rows)
    cols = {f: [r.get(f, "{}" if f == "meta" else None) for r in rows] for f in ROW_FIELDS}
    return pa.table(cols, schema=ROW_SCHEMA)


def table_to_rows(table: pa.Table) -> list[dict]:
    """The inverse of rows_to_table."""
    return table.to_pylist()


# ----------------------------------------------------------------------------- arithmetic

_PLACE = ["ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands",
          "millions", "ten-millions", "hundred-millions", "billions"]


def _place(i: int) -> str:
    return _PLACE[i] if i < len(_PLACE) else f"10^{i}"


def addition_steps(a: int, b: int) -> list[str]:
    """Column addition of non-negative a + b, one line per column, with carries."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps = [f"Add {a} and {b} column by column, starting from the ones."]
    carry, digits = 0, []
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        note = f" + carry {carry}" if carry else ""
        carry_out = f", carry {s // 10}" if s >= 10 else ""
        steps.append(f"{_place(i).capitalize()}: {x} + {y}{note} = {s}; write {s % 10}{carry_out}.")
        digits.append(str(s % 10))
        carry = s // 10
    if carry:
        steps.append(f"The final carry {carry} becomes the leading digit.")
        digits.append(str(carry))
    result = int("".join(reversed(digits)))
    steps.append(f"So {a} + {b} = {result}.")
    return steps


def subtraction_steps(a: int, b: int) -> list[str]:
    """Column subtraction a − b for a >= b >= 0, one line per column, with borrows."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps = [f"Subtract {b} from {a} column by column, starting from the ones."]
    borrow, digits = 0, []
    for i in range(len(da)):
        x = int(da[i]) - borrow
        y = int(db[i]) if i < len(db) else 0
        head = f"{_place(i).capitalize()}: " + (f"{da[i]} minus the borrowed 1 is {x}; "
                                                 if borrow else "")
        if x < y:
            steps.append(f"{head}{x} is less than {y}, so borrow 10: {x + 10} - {y} = "
                         f"{x + 10 - y}; write {x + 10 - y}.")
            digits.append(str(x + 10 - y))
            borrow = 1
        else:
            steps.append(f"{head}{x} - {y} = {x - y}; write {x - y}.")
            digits.append(str(x - y))
            borrow = 0
    result = int("".join(reversed(digits)))
    steps.append(f"So {a} - {b} = {result}.")
    return steps


def multiplication_steps(a: int, b: int) -> list[str]:
    """Long multiplication a × b (non-negative): a partial product per digit of b, each digit
    by digit with carries, then the partial products summed."""
    steps = [f"Multiply {a} by {b}: one partial product for each digit of {b}."]
    partials = []
    for i, d_ch in enumerate(str(b)[::-1]):
        d = int(d_ch)
        line, carry, digits = [], 0, []
        for j, x_ch in enumerate(str(a)[::-1]):
            p = int(x_ch) * d + carry
            line.append(f"{x_ch} x {d}" + (f" + {carry}" if carry else "") + f" = {p}")
            digits.append(str(p % 10))
            carry = p // 10
        if carry:
            digits.append(str(carry))
        partial = int("".join(reversed(digits)))
        shifted = partial * 10 ** i
        steps.append(f"Digit {d} ({_place(i)}): " + "; ".join(line) + f". So {a} x {d} = {partial}"
                     + (f", shifted {i} place{'s' if i > 1 else ''}: {shifted}." if i else "."))
        partials.append(shifted)
    total = partials[0]
    for p in partials[1:]:
        steps.append(f"Running sum: {total} + {p} = {total + p}.")
        total += p
    steps.append(f"So {a} x {b} = {total}.")
    return steps


_ARITH_DIGITS = {1: (2, 2), 2: (3, 4), 3: (5, 7)}   # digits of the operands of + and −
_MUL_DIGITS = {1: (1, 2), 2: (2, 3), 3: (3, 4)}     # digits of the factors of ×


def _n_digits(rng: random.Random, d: int) -> int:
    return rng.randint(10 ** (d - 1) if d > 1 else 2, 10 ** d - 1)


def multistep_maker(task: str) -> Callable[[random.Random, float], dict]:
    """The level-4 maker of a task (`multistep` builds on this module's step writers, so it is
    imported on first use)."""
    from deeprecipe.stages.generators import multistep
    return multistep.MAKERS[task]


def make_arithmetic(rng: random.Random, level: int, held_out_frac: float) -> dict:
    if level == MULTISTEP_LEVEL:
        return multistep_maker("arithmetic")(rng, held_out_frac)
    op = rng.choice("+-*")
    if op == "*":
        da, db = _MUL_DIGITS[level]
        a, b = _n_digits(rng, db), _n_digits(rng, da)
        steps, answer = multiplication_steps(a, b), a * b
    else:
        lo, hi = _ARITH_DIGITS[level]
        a, b = _n_digits(rng, rng.randint(lo, hi)), _n_digits(rng, rng.randint(lo, hi))
        if op == "+":
            steps, answer = addition_steps(a, b), a + b
        elif a >= b:
            steps, answer = subtraction_steps(a, b), a - b
        else:
            steps = [f"{b} is larger than {a}, so {a} - {b} is negative: compute {b} - {a} and "
                     f"negate it."] + subtraction_steps(b, a)
            answer = a - b
            steps.append(f"Negating: {a} - {b} = {answer}.")
    sym = {"+": "+", "-": "-", "*": "x"}[op]
    steps.append(f"Check the sign and size: the result {answer} is plausible for {a} {sym} {b}.")
    prompt = f"Compute {a} {sym} {b}."
    return make_row("arithmetic", level, f"{a}{op}{b}", prompt, str(answer),
                    render_response(steps, str(answer)), held_out_frac)


# ----------------------------------------------------------------------------- word problems

_NAMES = [("Ana", "she", "her"), ("Ben", "he", "his"), ("Chloe", "she", "her"),
          ("David", "he", "his"), ("Emma", "she", "her"), ("Farid", "he", "his"),
          ("Grace", "she", "her"), ("Hiro", "he", "his"), ("Ines", "she", "her"),
          ("Jonas", "he", "his")]
_ITEMS = ["apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "books"]
_FRIENDS = ["a friend", "a neighbour", "a classmate", "a cousin"]


def _word_step(rng: random.Random, x: int, who: tuple[str, str, str], item: str):
    """One step applied to the running quantity x -> (sentence, op key, new x, solution line)."""
    name, he, his = who
    kinds = ["add", "add_groups", "sub", "mul", "sub_groups"]
    divisors = [k for k in range(2, 7) if x % k == 0 and x // k > 0]
    if divisors:
        kinds.append("div")
    kind = rng.choice(kinds)
    if kind == "sub" and x < 2 or kind == "sub_groups" and x < 4:
        kind = "add"
    if kind == "add":
        b = rng.randint(2, 40)
        return (f"Then {he} finds {b} more {item}.", f"+{b}", x + b,
                f"{name} finds {b} more: {x} + {b} = {x + b} {item}.")
    if kind == "add_groups":
        b, c = rng.randint(2, 6), rng.randint(2, 12)
        return (f"Then {he} buys {b} packs with {c} {item} in each pack.", f"+{b}*{c}",
                x + b * c, f"{b} packs of {c} is {b} x {c} = {b * c} {item}; "
                           f"{x} + {b * c} = {x + b * c}.")
    if kind == "sub":
        b = rng.randint(1, x - 1)
        friend = rng.choice(_FRIENDS)
        return (f"Then {he} gives {b} {item} to {friend}.", f"-{b}", x - b,
                f"Giving away {b}: {x} - {b} = {x - b} {item}.")
    if kind == "sub_groups":
        c = rng.randint(2, min(5, x - 1))
        b = rng.randint(1, (x - 1) // c)
        return (f"Then {he} uses {b} {item} a day for {c} days.", f"-{b}*{c}", x - b * c,
                f"Using {b} a day for {c} days is {b} x {c} = {b * c}; "
                f"{x} - {b * c} = {x - b * c} {item}.")
    if kind == "mul":
        k = rng.randint(2, 4)
        word = {2: "doubles", 3: "triples", 4: "quadruples"}[k]
        return (f"Then the number of {his} {item} {word}.", f"*{k}", x * k,
                f"{word.capitalize()} means times {k}: {x} x {k} = {x * k} {item}.")
    k = rng.choice(divisors)
    return (f"Then {he} shares {his} {item} equally among {k} people, {name} included, and keeps "
            f"only {his} own share.", f"/{k}", x // k,
            f"Splitting {x} into {k} equal shares: {x} / {k} = {x // k} {item} each, "
            f"and {he} keeps one share.")


def make_word_problem(rng: random.Random, level: int, held_out_frac: float) -> dict:
    if level == MULTISTEP_LEVEL:
        return multistep_maker("word_problem")(rng, held_out_frac)
    n_steps = level + 1  # 2, 3, 4
    who, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    x = rng.randint(5, 60)
    sentences = [f"{who[0]} has {x} {item}."]
    lines = [f"Start: {who[0]} has {x} {item}."]
    key = [str(x)]
    for i in range(n_steps):
        sentence, op, x, line = _word_step(rng, x, who, item)
        sentences.append(sentence)
        lines.append(f"Step {i + 1}: {line}")
        key.append(op)
    sentences.append(f"How many {item} does {who[0]} have now?")
    lines.append(f"After all {n_steps} steps {who[0]} has {x} {item}.")
    return make_row("word_problem", level, " ".join(key), " ".join(sentences), str(x),
                    render_response(lines, str(x)), held_out_frac)


# ----------------------------------------------------------------------------- countdown

_COUNTDOWN_SHAPE = {1: (3, 1, 20), 2: (4, 1, 25), 3: (5, 1, 50), 4: (6, 1, 100)}  # count, low, high
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a // b}


def _combine(rng: random.Random, pool: list[tuple[int, str]]):
    """Pick two pool entries and an op that keeps values positive integers ->
    (i, j, op, value) or None."""
    for _ in range(20):
        i, j = rng.sample(range(len(pool)), 2)
        (a, _), (b, _) = pool[i], pool[j]
        ops = ["+", "*"] + (["-"] if a > b else []) + (["/"] if b > 1 and a % b == 0 else [])
        op = rng.choice(ops)
        value = _OPS[op](a, b)
        if value <= 10_000:
            return i, j, op, value
    return None


def _countdown_walk(rng: random.Random, numbers: list[int], n_use: int):
    """Combine n_use of the numbers -> (value, expression, solution lines) or None."""
    pool = [(n, str(n)) for n in rng.sample(numbers, n_use)]
    lines = []
    while len(pool) > 1:
        step = _combine(rng, pool)
        if step is None:
            return None
        i, j, op, value = step
        (a, ea), (b, eb) = pool[i], pool[j]
        expr = f"({ea} {op} {eb})"
        lines.append(f"{a} {op} {b} = {value}.")
        pool = [p for k, p in enumerate(pool) if k not in (i, j)] + [(value, expr)]
    value, expr = pool[0]
    return value, expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr, lines


def make_countdown(rng: random.Random, level: int, held_out_frac: float) -> dict:
    count, lo, hi = _COUNTDOWN_SHAPE[level]
    while True:
        numbers = [rng.randint(lo, hi) for _ in range(count)]
        found = _countdown_walk(rng, numbers, rng.randint(max(2, count - 1), count))
        if found and 10 <= found[0] <= 1000 and found[0] not in numbers:
            break
    target, expr, lines = found
    steps = [f"Goal: reach {target} using {', '.join(map(str, numbers))}, each at most once, "
             f"with + - * /."]
    attempt = _countdown_walk(rng, numbers, 2)
    if attempt and attempt[0] != target:
        side = "below" if attempt[0] < target else "above"
        steps.append(f"First try: {attempt[2][0]} That is {side} {target} and does not lead "
                     f"there directly, so try another combination.")
    for k, line in enumerate(lines, 1):
        steps.append(f"Step {k}: {line}")
    steps.append(f"Reached {target}. As one expression: {expr} = {target}. "
                 f"Each number is used at most once.")
    key = ",".join(map(str, sorted(numbers))) + f"->{target}"
    prompt = (f"Using the numbers {', '.join(map(str, numbers))}, create an expression that "
              f"equals {target}. You may use + - * / and parentheses, and each number at most "
              f"once. Give the expression as the answer.")
    return make_row("countdown", level, key, prompt, expr, render_response(steps, expr),
                    held_out_frac, meta={"numbers": numbers, "target": target})


# ----------------------------------------------------------------------------- counting, sorting

_WORDS = ["strawberry", "banana", "mississippi", "parallel", "committee", "bookkeeper",
          "occurrence", "assessment", "cinnamon", "possession", "referee", "necessary",
          "letter", "balloon", "address", "coffee", "engineer", "grammar", "tomorrow",
          "raspberry", "pepper", "success", "millennium", "embarrass", "tattoo", "giraffe",
          "hippopotamus", "abracadabra", "tennessee", "rhythm", "queue", "savannah"]
_COUNT_WORDS = {1: (1, 1), 2: (2, 3), 3: (4, 6)}


def _counting_token(rng: random.Random) -> str:
    """A real word (70 %) or a random letter string with repeats (an unbounded supply)."""
    if rng.random() < 0.7:
        return rng.choice(_WORDS)
    alphabet = rng.sample("abcdefghijklmnopqrstuvwxyz", 5)
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(5, 10)))


def make_counting(rng: random.Random, level: int, held_out_frac: float) -> dict:
    if level == MULTISTEP_LEVEL:
        return multistep_maker("counting")(rng, held_out_frac)
    lo, hi = _COUNT_WORDS[level]
    text = " ".join(_counting_token(rng) for _ in range(rng.randint(lo, hi)))
    letters = sorted(set(text.replace(" ", "")))
    letter = rng.choice(letters) if rng.random() < 0.85 else rng.choice("zxqjkvw")
    steps = [f"Go through \"{text}\" letter by letter and count the letter '{letter}'."]
    count = 0
    for word in text.split():
        marks = []
        for ch in word:
            if ch == letter:
                count += 1
                marks.append(f"{ch} -> {count}")
            else:
                marks.append(ch)
        steps.append(f"\"{word}\": " + ", ".join(marks) + f". Count so far: {count}.")
    steps.append(f"The letter '{letter}' appears {count} time{'s' if count != 1 else ''}.")
    prompt = f"How many times does the letter '{letter}' appear in \"{text}\"?"
    return make_row("counting", level, f"{letter}|{text}", prompt, str(count),
                    render_response(steps, str(count)), held_out_frac)


_SORT_SHAPE = {1: (5, 0, 99), 2: (8, -99, 99), 3: (12, -999, 999), 4: (12, -9999, 9999)}


def make_sorting(rng: random.Random, level: int, held_out_frac: float) -> dict:
    count, lo, hi = _SORT_SHAPE[level]
    numbers = [rng.randint(lo, hi) for _ in range(count)]
    descending = level >= 2 and rng.random() < 0.5
    order = "descending" if descending else "ascending"
    pick = max if descending else min
    steps = [f"Sort {numbers} in {order} order by repeatedly taking the "
             f"{'largest' if descending else 'smallest'} remaining number."]
    remaining, done = list(numbers), []
    while remaining:
        x = pick(remaining)
        remaining.remove(x)
        done.append(x)
        steps.append(f"Take {x}; sorted so far: {done}; left: {remaining}.")
    steps.append(f"All {count} numbers placed; the list has the same length as the input.")
    answer = ", ".join(map(str, done))
    prompt = f"Sort these numbers in {order} order: {', '.join(map(str, numbers))}."
    return make_row("sorting", level, f"{order}|{','.join(map(str, numbers))}", prompt, answer,
                    render_response(steps, answer), held_out_frac)


# ----------------------------------------------------------------------------- generation

GENERATORS: dict[str, Callable[[random.Random, int, float], dict]] = {
    "arithmetic": make_arithmetic, "word_problem": make_word_problem,
    "countdown": make_countdown, "counting": make_counting, "sorting": make_sorting,
}


def generate_problems(n_per_task_level: int, seed: int = 0,
                      tasks: Sequence[str] = tuple(GENERATORS), levels: Sequence[int] = LEVELS,
                      held_out_frac: float = 0.1) -> list[dict]:
    """n_per_task_level distinct problems for each (task, level), deterministic in seed.

    Each (task, level) draws from its own RNG (seeded by the string f"{seed}:{task}:{level}"),
    so adding a task does not change the others; empty ``tasks`` / ``levels`` mean all.
    Duplicates (same id) are redrawn; if the space
    of a (task, level) is too small to give n distinct problems, a ValueError says so.
    """
    tasks, levels = tasks or tuple(GENERATORS), levels or LEVELS  # empty: all
    unknown = [t for t in tasks if t not in GENERATORS]
    if unknown:
        raise ValueError(f"generate_problems: unknown tasks {unknown}; known: {sorted(GENERATORS)}")
    rows: list[dict] = []
    seen: set[str] = set()
    for task in tasks:
        for level in levels:
            if level not in LEVELS:
                raise ValueError(f"generate_problems: level {level} not in {LEVELS}")
            rng = random.Random(f"{seed}:{task}:{level}")
            made, tries = 0, 0
            while made < n_per_task_level:
                tries += 1
                if tries > 50 * n_per_task_level + 100:
                    raise ValueError(f"generate_problems: only {made} distinct {task} problems "
                                     f"at level {level}; ask for fewer")
                row = GENERATORS[task](rng, level, held_out_frac)
                if row["id"] in seen:
                    continue
                seen.add(row["id"])
                rows.append(row)
                made += 1
    return rows


# ----------------------------------------------------------------------------- user files


def _read_jsonl(path: str | Path, skipped: list[str]) -> Iterable[tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                skipped.append(f"{path}:{line_no}: not JSON ({e.msg})")
                continue
            if not isinstance(obj, dict):
                skipped.append(f"{path}:{line_no}: expected a JSON object")
                continue
            yield line_no, obj


_CALC_ANNOTATION = re.compile(r"<<[^<>]*>>")


def parse_gsm8k_answer(answer: str) -> tuple[str, str]:
    """GSM8K `answer` -> (reasoning without <<calc>> annotations, final answer after `####`,
    commas removed). ValueError if there is no `####`."""
    if "####" not in answer:
        raise ValueError("no '#### <final answer>' line")
    reasoning, final = answer.rsplit("####", 1)
    final = final.strip().replace(",", "")
    if not final:
        raise ValueError("empty final answer after '####'")
    return _CALC_ANNOTATION.sub("", reasoning).strip(), final


def load_gsm8k_jsonl(path: str | Path, task: str = "gsm8k",
                     held_out_frac: float = 0.1) -> tuple[list[dict], list[str]]:
    """GSM8K-style JSONL (`question`, `answer` ending in `#### 42`) -> (rows, skipped).

    The reasoning lines become the <think> block. Bad records are skipped and described as
    'path:line: why' in `skipped`; a file with no usable record raises ValueError.
    """
    rows, skipped, seen = [], [], set()
    for line_no, obj in _read_jsonl(path, skipped):
        q, a = obj.get("question"), obj.get("answer")
        if not isinstance(q, str) or not isinstance(a, str) or not q.strip():
            skipped.append(f"{path}:{line_no}: needs string fields 'question' and 'answer'")
            continue
        try:
            reasoning, final = parse_gsm8k_answer(a)
        except ValueError as e:
            skipped.append(f"{path}:{line_no}: {e}")
            continue
        steps = [s for s in reasoning.splitlines() if s.strip()]
        row = make_row(task, 0, q.strip(), q.strip(), final, render_response(steps, final),
                       held_out_frac)
        if row["id"] not in seen:
            seen.add(row["id"])
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no usable GSM8K record (each line needs 'question' and an "
                         f"'answer' ending in '#### <number>'); first problems: {skipped[:3]}")
    return rows, skipped


def render_messages(messages: Sequence[dict]) -> str:
    """Chat turns -> 'System: …\\n\\nUser: …\\n\\nAssistant: …' text ending with 'Assistant:'."""
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts + ["Assistant:"])


def load_sft_jsonl(path: str | Path, task: str = "sft",
                   held_out_frac: float = 0.0) -> tuple[list[dict], list[str]]:
    """The user's SFT file -> (rows, skipped). Each line is {'prompt', 'response'} or
    {'messages': [{'role', 'content'}, …]} whose last turn is the assistant's (the response;
    earlier turns are rendered into the prompt by `render_messages`). Responses are kept as
    written (no <think> tags are added); answer is ''.
    """
    rows, skipped, seen = [], [], set()
    for line_no, obj in _read_jsonl(path, skipped):
        if "messages" in obj:
            msgs = obj["messages"]
            ok = (isinstance(msgs, list) and len(msgs) >= 2 and all(
                isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str) for m in msgs)
                and msgs[-1]["role"] == "assistant")
            if not ok:
                skipped.append(f"{path}:{line_no}: 'messages' must be a list of "
                               f"{{role, content}} ending with an assistant turn")
                continue
            prompt, response = render_messages(msgs[:-1]), msgs[-1]["content"]
        elif isinstance(obj.get("prompt"), str) and isinstance(obj.get("response"), str):
            prompt, response = obj["prompt"], obj["response"]
        else:
            skipped.append(f"{path}:{line_no}: needs 'prompt' and 'response' strings, or "
                           f"'messages'")
            continue
        if not response.strip():
            skipped.append(f"{path}:{line_no}: empty response")
            continue
        row = make_row(task, 0, prompt + "\x00" + response, prompt, "", response, held_out_frac)
        if row["id"] not in seen:
            seen.add(row["id"])
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no usable SFT record; first problems: {skipped[:3]}")
    return rows, skipped


def rl_problems(data) -> list[dict]:
    """The RL stages' prompts from a reasoning_data artifact (`pipeline.store.Artifact`): its rl
    split (problems never shown solved), or its train split where the profile sets rl_frac 0
    (or the artifact predates the split)."""
    rl_file = "problems-rl.parquet"
    rows = data.read_table(rl_file).to_pylist() if data.files(rl_file) else []
    return rows or data.read_table("problems-train.parquet").to_pylist()
