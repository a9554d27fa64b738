"""Gopher / C4 / FineWeb rule-based quality heuristics: a score column per rule, and reasons.

``score_text(text, lang)`` -> dict of scores; ``failed_rules(scores, thresholds)`` -> rule names;
``HeuristicFilter`` adds every score as a ``q_*`` column plus ``q_reasons`` (list of failed rules)
and ``q_pass`` to a table, so users can re-threshold without recomputing.  Units: counts are
words/lines, fractions are in [0, 1] (``*_char_frac``: share of characters).

Defaults (``Thresholds``) follow Gopher (MassiveText), C4 and FineWeb:
word count 50..100000, mean word length 3..10, symbol ('#', '...', '…') to word ratio <= 0.1,
lines starting with a bullet <= 0.9, lines ending in an ellipsis <= 0.3, >= 80 % of words with an
alphabetic character, >= 2 stop words of the document's language, duplicate-line fraction <= 0.3
(lines) and <= 0.2 (chars), most frequent 2/3/4-gram char share <= 0.20/0.18/0.16, duplicated
5..10-gram char share <= 0.15..0.10, no "lorem ipsum", no curly bracket (C4), share of lines
mentioning javascript <= 0.1, share of lines ending in terminal punctuation >= 0.12 (FineWeb).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

STOP_WORDS = {
    "en": {"the", "be", "to", "of", "and", "that", "have", "with", "a", "in", "is", "for", "this", "it"},
    "de": {"der", "die", "das", "und", "ist", "zu", "von", "mit", "ein", "eine", "in", "nicht", "es"},
    "fr": {"le", "la", "les", "de", "et", "un", "une", "est", "dans", "pour", "que", "à", "ce"},
    "es": {"el", "la", "los", "de", "y", "en", "un", "una", "es", "que", "para", "con", "a"},
    "it": {"il", "la", "di", "e", "che", "un", "una", "per", "in", "è", "con", "non"},
    "pt": {"o", "a", "os", "de", "e", "que", "um", "uma", "em", "para", "com", "não"},
    "nl": {"de", "het", "een", "en", "van", "is", "dat", "op", "te", "in", "met", "niet"},
}
BULLETS = ("•", "●", "○", "▪", "-", "*", "·", "‣", "–")
ELLIPSES = ("...", "…")
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ";")
_WORD = re.compile(r"\w+", re.UNICODE)
_ALPHA = re.compile(r"[^\W\d_]", re.UNICODE)
NGRAM_TOP = (2, 3, 4)
NGRAM_DUP = (5, 6, 7, 8, 9, 10)


def _top_ngram_char_frac(words: list[str], n: int, total_chars: int) -> float:
    """Share of word characters covered by the most frequent word n-gram (Gopher)."""
    if len(words) < n or total_chars == 0:
        return 0.0
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    gram, c = counts.most_common(1)[0]
    return c * sum(len(w) for w in gram) / total_chars if c > 1 else 0.0


def _dup_ngram_char_frac(words: list[str], n: int, total_chars: int) -> float:
    """Share of word characters inside n-grams that occur more than once (Gopher, no double count)."""
    if len(words) < n or total_chars == 0:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = bytearray(len(words))
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i : i + n] = b"\x01" * n
    return sum(len(w) for w, c in zip(words, covered) if c) / total_chars


def score_text(text: str, lang: str | None = None) -> dict[str, float]:
    """All heuristic scores of one document (see the module docstring for units)."""
    words = _WORD.findall(text.lower())
    raw_words = text.split()
    n_words = len(raw_words)
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    n_lines = max(1, len(lines))
    word_chars = sum(len(w) for w in words)
    line_counts = Counter(lines)
    dup_lines = sum(c - 1 for c in line_counts.values() if c > 1)
    dup_line_chars = sum(len(line) * (c - 1) for line, c in line_counts.items() if c > 1)
    lower = text.lower()
    stops = STOP_WORDS.get(lang or "", None)
    s = {
        "n_words": float(n_words),
        "mean_word_length": sum(len(w) for w in raw_words) / n_words if n_words else 0.0,
        "symbol_word_ratio": (text.count("#") + text.count("...") + text.count("…")) / max(1, n_words),
        "bullet_line_frac": sum(line.startswith(BULLETS) for line in lines) / n_lines,
        "ellipsis_line_frac": sum(line.endswith(ELLIPSES) for line in lines) / n_lines,
        "alpha_word_frac": sum(bool(_ALPHA.search(w)) for w in raw_words) / max(1, n_words),
        "stop_words": float(sum(w in stops for w in words)) if stops is not None else -1.0,
        "dup_line_frac": dup_lines / n_lines,
        "dup_line_char_frac": dup_line_chars / max(1, len(text)),
        "lorem_ipsum": float("lorem ipsum" in lower),
        "curly_bracket": float("{" in text or "}" in text),
        "javascript_line_frac": sum("javascript" in line.lower() for line in lines) / n_lines,
        "terminal_punct_line_frac": sum(line.endswith(TERMINAL) for line in lines) / n_lines,
    }
    for n in NGRAM_TOP:
        s[f"top_{n}gram_char_frac"] = _top_ngram_char_frac(words, n, word_chars)
    for n in NGRAM_DUP:
        s[f"dup_{n}gram_char_frac"] = _dup_ngram_char_frac(words, n, word_chars)
    return s


@dataclass
class Thresholds:
    """Rule bounds; a rule fails when its score is outside them."""

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_line_frac: float = 0.9
    max_ellipsis_line_frac: float = 0.3
    min_alpha_word_frac: float = 0.8
    min_stop_words: int = 2
    max_dup_line_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    max_top_ngram_char_frac: dict = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    max_dup_ngram_char_frac: dict = field(default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    max_javascript_line_frac: float = 0.1
    min_terminal_punct_line_frac: float = 0.12
    reject_lorem_ipsum: bool = True
    reject_curly_bracket: bool = True


def failed_rules(s: dict[str, float], t: Thresholds = Thresholds()) -> list[str]:
    """Names of the rules ``s`` fails (empty list = pass)."""
    r = []
    if not t.min_words <= s["n_words"] <= t.max_words:
        r.append("word_count")
    if not t.min_mean_word_length <= s["mean_word_length"] <= t.max_mean_word_length:
        r.append("mean_word_length")
    checks = [
        ("symbol_word_ratio", s["symbol_word_ratio"] > t.max_symbol_word_ratio),
        ("bullet_lines", s["bullet_line_frac"] > t.max_bullet_line_frac),
        ("ellipsis_lines", s["ellipsis_line_frac"] > t.max_ellipsis_line_frac),
        ("alpha_words", s["alpha_word_frac"] < t.min_alpha_word_frac),
        ("stop_words", 0 <= s["stop_words"] < t.min_stop_words),
        ("dup_lines", s["dup_line_frac"] > t.max_dup_line_frac),
        ("dup_line_chars", s["dup_line_char_frac"] > t.max_dup_line_char_frac),
        ("lorem_ipsum", t.reject_lorem_ipsum and s["lorem_ipsum"] > 0),
        ("curly_bracket", t.reject_curly_bracket and s["curly_bracket"] > 0),
        ("javascript_lines", s["javascript_line_frac"] > t.max_javascript_line_frac),
        ("terminal_punct_lines", s["terminal_punct_line_frac"] < t.min_terminal_punct_line_frac),
    ]
    r += [name for name, bad in checks if bad]
    r += [f"top_{n}gram" for n, m in t.max_top_ngram_char_frac.items() if s[f"top_{n}gram_char_frac"] > m]
    r += [f"dup_{n}gram" for n, m in t.max_dup_ngram_char_frac.items() if s[f"dup_{n}gram_char_frac"] > m]
    return r


@dataclass
class HeuristicFilter:
    """Table step: add ``q_<score>`` columns, ``q_reasons`` and ``q_pass``; count failures per rule.

    ``drop=True`` also removes failing rows (scores are kept on the survivors).
    """

    thresholds: Thresholds = field(default_factory=Thresholds)
    drop: bool = False
    stats: Counter = field(default_factory=Counter)

    def __call__(self, table: pa.Table) -> pa.Table:
        texts = table.column("text").to_pylist()
        langs = table.column("lang").to_pylist() if "lang" in table.column_names else [None] * len(texts)
        scores = [score_text(t or "", lang) for t, lang in zip(texts, langs)]
        reasons = [failed_rules(s, self.thresholds) for s in scores]
        out = table
        for name in (scores[0] if scores else score_text("", None)):
            out = out.append_column(f"q_{name}", pa.array([s[name] for s in scores], pa.float64()))
        out = out.append_column("q_reasons", pa.array(reasons, pa.list_(pa.string())))
        passed = [not r for r in reasons]
        out = out.append_column("q_pass", pa.array(passed, pa.bool_()))
        self.stats["docs_in"] += table.num_rows
        self.stats["docs_failed"] += len(passed) - sum(passed)
        for r in reasons:
            self.stats.update(f"fail_{x}" for x in r)
        if self.drop:
            out = out.filter(pa.array(passed))
        self.stats["docs_out"] += out.num_rows
        return out
