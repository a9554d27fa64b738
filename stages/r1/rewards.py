"""Rule rewards of DeepSeek-R1: format, accuracy, language consistency, and their weighted sum.

A response is scored as text; a problem is a row of `stages.generators.reasoning_data` (a dict with at least
`task` and `answer`; countdown rows also carry `meta` = {"numbers": [...], "target": n}, as a
dict or a JSON string). No neural reward model: every reward here is a rule you can read.

    format_reward(text)                         1.0 / 0.0 (tags in order, a real reasoning block)
    accuracy_reward(text, problem)              1.0 / 0.0
    language_consistency_reward(text, 'en')     share in [0, 1]
    combined_reward(text, problem, weights)     {'format', 'accuracy', 'language', 'total'}
"""
from __future__ import annotations

import ast
import json
import re
import unicodedata
from fractions import Fraction
from functools import lru_cache
from typing import Any, Mapping

# ----------------------------------------------------------------------------- format

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_FORMAT_RE = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)


def format_reward(text: str, require_reasoning: bool = True) -> float:
    """1.0 iff `text` is exactly `<think>…</think>` then `<answer>…</answer>`, nothing after,
    and (require_reasoning) the think block is a real reasoning block (`reasoning_steps`).

    Structure: each of the four tags occurs exactly once; only whitespace before `<think>`,
    between `</think>` and `<answer>`, and after `</answer>`; the answer is non-empty. The
    reasoning rule closes the `<think></think><answer>50</answer>` shortcut (issue 24, after
    run 9's grpo_zero: the accuracy reward collected behind an empty or token reasoning block)
    for every prompt style alike (the chat template and the R1-Zero one produce the same tags). Pass
    require_reasoning=False only for replies that are meant to carry an empty CoT (R1's
    non-reasoning data: greetings, the preference prompts of final RL).
    """
    if any(text.count(tag) != 1 for tag in _TAGS):
        return 0.0
    m = _FORMAT_RE.fullmatch(text)
    if m is None or not m.group(2).strip():
        return 0.0
    if require_reasoning and not reasoning_steps(m.group(1), m.group(2)):
        return 0.0
    return 1.0


MIN_STEP_TOKENS = 3
"""Tokens a line of the think block needs, besides the answer and announcement words, to be a
reasoning step (`reasoning_steps`)."""
_STEP_TOKEN_RE = re.compile(r"[^\W_]+|[-+*/=<>^%\u00d7\u00f7\u2212]")
_ANNOUNCEMENT_WORDS = frozenset(
    "the answer final result is so thus therefore hence i we think get it equals my".split()
    + "reasoning process here".split())  # the R1-Zero template's placeholder, copied


def _step_tokens(s: str) -> list[str]:
    return _STEP_TOKEN_RE.findall(unicodedata.normalize("NFKC", s).lower())


def reasoning_steps(think: str, answer: str) -> list[str]:
    """The lines of a think block that are reasoning steps, not the answer repeated.

    A line is a step when, after dropping every token of `answer` and the words that only
    announce an answer (`_ANNOUNCEMENT_WORDS`: "the answer is", "so", "therefore", "I think", …,
    and the R1-Zero template's placeholder "reasoning process here"),
    it still holds MIN_STEP_TOKENS tokens, a token being a word, a number or an operator sign
    (+ - * / x = < > ^ %). So `12 + 38 = 50`, `Ana has 5 apples.` and every line of the
    generated solutions' steps count; an empty block, `50`, `The answer is 50.` or `So the
    final answer is 50 apples` do not. The rule is textual: it cannot tell a right step from a
    wrong one (the accuracy reward grades the answer) nor a copied question from worked text.
    """
    drop = set(_step_tokens(answer)) | _ANNOUNCEMENT_WORDS
    return [line.strip() for line in think.splitlines()
            if sum(t not in drop for t in _step_tokens(line)) >= MIN_STEP_TOKENS]


def extract_think(text: str) -> str | None:
    """The content of the single `<think>…</think>` block, or None if there is not exactly one."""
    if text.count("<think>") != 1 or text.count("</think>") != 1:
        return None
    m = re.search(r"<think>(.*?)</think>", text, re.DOTALL)
    return m.group(1) if m else None


def extract_answer(text: str) -> str | None:
    """The stripped content of the single `<answer>…</answer>` block, else None.

    Several answer blocks give None: a response may not hedge by listing candidates.
    """
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return None
    m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return m.group(1).strip() if m else None


# ----------------------------------------------------------------------------- answer parsing

_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_FRACTION_RE = re.compile(r"([+-]?\d+)\s*/\s*(\d+)")


def parse_number(s: str) -> Fraction | None:
    """A single number written in `s` as an exact Fraction, else None.

    Accepts `1000`, `1,000`, `1000.0`, `-3.5`, `1e3`, `3/4`, `$12`, `45%`, `\\boxed{7}`, a
    trailing period. Anything else around the number (words, a second number) gives None.
    """
    s = s.strip()
    boxed = re.fullmatch(r"\\boxed\{(.*)\}", s)
    if boxed:
        s = boxed.group(1).strip()
    s = s.rstrip(".").strip()
    s = s.replace("\u2212", "-")  # unicode minus
    s = re.sub(r"^([+-]?)\$", r"\1", s).rstrip("%").strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    if _NUMBER_RE.fullmatch(s):
        try:
            return Fraction(s)
        except (ValueError, ZeroDivisionError):
            return None
    m = _FRACTION_RE.fullmatch(s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    return None


def numbers_equal(got: Fraction, reference: Fraction, rel_tol: float = 1e-9) -> bool:
    """Exact for an integer reference (an off-by-one is wrong at any size); otherwise
    |got - reference| <= rel_tol * max(1, |reference|), for decimals written to many places."""
    if reference.denominator == 1:
        return got == reference
    return abs(got - reference) <= Fraction(rel_tol) * max(Fraction(1), abs(reference))


def parse_number_list(s: str) -> list[Fraction] | None:
    """`[3, 5, 9]`, `3, 5, 9` or `3 5 9` -> [3, 5, 9]; None if any item is not a number."""
    s = s.strip()
    if s[:1] in "[(" and s[-1:] in "])":
        s = s[1:-1]
    items = [t for t in re.split(r"[,\s;]+", s) if t]
    if not items:
        return None
    out = [parse_number(t) for t in items]
    return None if any(x is None for x in out) else out


def normalize_text(s: str) -> str:
    """Lowercase, strip punctuation at the ends and collapse whitespace (for short text answers)."""
    s = unicodedata.normalize("NFKC", s).lower().strip()
    s = re.sub(r"\s+", " ", s)
    return s.strip(" .,!?;:\"'`")


# ----------------------------------------------------------------------------- countdown

MAX_EXPRESSION_CHARS = 200
_ALLOWED_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
                   ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def evaluate_countdown_expression(expr: str) -> tuple[Fraction, list[int]] | None:
    """Safely evaluate an arithmetic expression of non-negative integers with + - * / and
    parentheses, exactly (Fractions). Returns (value, integers used in order) or None if the
    expression is anything else (names, calls, attributes, powers, unary minus, floats,
    division by zero, too long). Parsed with `ast`, never `eval`.
    """
    expr = expr.replace("\u00d7", "*").replace("\u00f7", "/").replace("\u2212", "-").strip()
    if not expr or len(expr) > MAX_EXPRESSION_CHARS:
        return None
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError):
        return None
    used: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _ALLOWED_BINOPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise ZeroDivisionError
            return _ALLOWED_BINOPS[type(node.op)](left, right)
        if (isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0):
            used.append(node.value)
            return Fraction(node.value)
        raise ValueError(f"disallowed node {type(node).__name__}")

    try:
        value = walk(tree.body)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None
    return value, used


def countdown_correct(answer: str, numbers: list[int], target: int) -> bool:
    """True iff `answer` is an expression reaching `target` that uses each given number at most
    once (a number given twice may be used twice). An optional `= target` suffix is allowed."""
    if answer.count("=") > 1:
        return False
    if "=" in answer:
        answer, rhs = answer.split("=")
        rhs_value = parse_number(rhs)
        if rhs_value is None or rhs_value != target:
            return False
    result = evaluate_countdown_expression(answer)
    if result is None:
        return False
    value, used = result
    available = list(numbers)
    for n in used:
        if n not in available:
            return False
        available.remove(n)
    return value == target


# ----------------------------------------------------------------------------- accuracy

VERIFIER_OF_TASK = {
    "arithmetic": "number", "word_problem": "number", "counting": "number", "gsm8k": "number",
    "countdown": "countdown", "sorting": "list", "factual_qa": "text",
}


def _meta(problem: Mapping[str, Any]) -> dict:
    meta = problem.get("meta") or {}
    return json.loads(meta) if isinstance(meta, str) else dict(meta)


def verify_answer(answer: str, problem: Mapping[str, Any]) -> bool:
    """Is the extracted `answer` right for `problem`? Dispatch on VERIFIER_OF_TASK[task]; an
    unknown task is checked as a number when its reference parses as one, else as text."""
    reference = str(problem.get("answer", ""))
    kind = VERIFIER_OF_TASK.get(problem.get("task", ""))
    if kind is None:
        kind = "number" if parse_number(reference) is not None else "text"
    if kind == "countdown":
        meta = _meta(problem)
        if "numbers" not in meta or "target" not in meta:
            raise ValueError(f"countdown problem {problem.get('id')!r} lacks meta numbers/target")
        return countdown_correct(answer, [int(n) for n in meta["numbers"]], int(meta["target"]))
    if not reference.strip():
        raise ValueError(f"problem {problem.get('id')!r} (task {problem.get('task')!r}) has no "
                         f"reference answer to verify against")
    if kind == "number":
        got, want = parse_number(answer), parse_number(reference)
        if want is None:
            raise ValueError(f"reference answer {reference!r} of {problem.get('id')!r} "
                             f"is not a number")
        return got is not None and numbers_equal(got, want)
    if kind == "list":
        got, want = parse_number_list(answer), parse_number_list(reference)
        return got is not None and want is not None and got == want
    return normalize_text(answer) == normalize_text(reference)


def accuracy_reward(text: str, problem: Mapping[str, Any]) -> float:
    """1.0 iff the single `<answer>` block of `text` verifies against `problem`, else 0.0."""
    answer = extract_answer(text)
    if answer is None:
        return 0.0
    return 1.0 if verify_answer(answer, problem) else 0.0


# ----------------------------------------------------------------------------- language


@lru_cache(maxsize=65536)
def char_script(ch: str) -> str:
    """The Unicode script family of a letter, from its Unicode name: 'LATIN', 'CJK' (Han
    ideographs), 'HIRAGANA', 'KATAKANA', 'HANGUL', 'CYRILLIC', 'GREEK', 'ARABIC', …; 'OTHER'
    for unnamed characters."""
    name = unicodedata.name(ch, "")
    if not name:
        return "OTHER"
    first = name.split(" ", 1)[0]
    return "CJK" if first in ("CJK", "IDEOGRAPHIC") else first


# Scripts whose characters are each counted as one word (no spaces between words).
_PER_CHAR_SCRIPTS = {"CJK", "HIRAGANA", "KATAKANA"}

SCRIPTS_OF_LANGUAGE: dict[str, frozenset[str]] = {
    **{lang: frozenset({"LATIN"}) for lang in ("en", "fr", "de", "es", "it", "pt", "nl", "vi")},
    "zh": frozenset({"CJK"}),
    "ja": frozenset({"CJK", "HIRAGANA", "KATAKANA"}),
    "ko": frozenset({"HANGUL"}),
    "ru": frozenset({"CYRILLIC"}), "uk": frozenset({"CYRILLIC"}),
    "el": frozenset({"GREEK"}), "ar": frozenset({"ARABIC"}), "he": frozenset({"HEBREW"}),
    "hi": frozenset({"DEVANAGARI"}),
}


def script_words(text: str) -> list[tuple[str, str]]:
    """Split text into (word, script) pairs. A word is a maximal run of letters of one script;
    Han/kana characters count one word each. Digits, symbols and punctuation are not words."""
    words: list[tuple[str, str]] = []
    for run in re.findall(r"[^\W\d_]+", text):
        current, current_script = "", None
        for ch in run:
            script = char_script(ch)
            if script in _PER_CHAR_SCRIPTS:
                if current:
                    words.append((current, current_script))
                current, current_script = "", None
                words.append((ch, script))
            elif script == current_script:
                current += ch
            else:
                if current:
                    words.append((current, current_script))
                current, current_script = ch, script
        if current:
            words.append((current, current_script))
    return words


def language_consistency_reward(text: str, target_lang: str = "en") -> float:
    """Share of the chain-of-thought words written in the target language's script (R1).

    The CoT is the `<think>` block (the whole text unless there is exactly one). This is a *script*
    detector, not a language identifier: for 'en' any Latin-script word counts (a French or
    German word passes), so it catches the failure R1 reports (switching to Chinese mid-CoT) but
    not a switch between two Latin-script languages. Han and kana characters count one word
    each; numbers and math symbols are ignored. A CoT without any word scores 0.0.
    """
    if target_lang not in SCRIPTS_OF_LANGUAGE:
        raise ValueError(f"language_consistency_reward: unknown target_lang {target_lang!r}; "
                         f"known: {sorted(SCRIPTS_OF_LANGUAGE)}")
    think = extract_think(text)
    words = script_words(text if think is None else think)
    if not words:
        return 0.0
    scripts = SCRIPTS_OF_LANGUAGE[target_lang]
    return sum(script in scripts for _, script in words) / len(words)


# ----------------------------------------------------------------------------- combined

R1_ZERO_WEIGHTS = {"accuracy": 1.0, "format": 1.0, "language": 0.0}
R1_REASONING_WEIGHTS = {"accuracy": 1.0, "format": 1.0, "language": 1.0}


def combined_reward(text: str, problem: Mapping[str, Any],
                    weights: Mapping[str, float] | None = None,
                    target_lang: str = "en") -> dict[str, float]:
    """{'accuracy', 'format', 'language', 'total'}; total = sum of weight * part.

    R1 sums the rule rewards directly: R1-Zero uses accuracy + format (R1_ZERO_WEIGHTS, the
    default); reasoning RL after cold start adds language consistency (R1_REASONING_WEIGHTS).
    Parts with weight 0 are still reported.
    """
    weights = dict(R1_ZERO_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(R1_ZERO_WEIGHTS)
    if unknown:
        raise ValueError(f"combined_reward: unknown weight keys {sorted(unknown)}; "
                         f"use {sorted(R1_ZERO_WEIGHTS)}")
    parts = {"accuracy": accuracy_reward(text, problem), "format": format_reward(text),
             "language": language_consistency_reward(text, target_lang)}
    parts["total"] = sum(weights.get(k, 0.0) * v for k, v in parts.items())
    return parts


def is_correct(text: str, problem: Mapping) -> bool:
    """The single <answer> block verifies against the problem."""
    answer = extract_answer(text)
    return answer is not None and verify_answer(answer, problem)
