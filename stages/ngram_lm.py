"""Reference word n-gram LM (interpolated modified Kneser-Ney) and CCNet perplexity buckets.

KenLM itself ships only as a source distribution (needs a C++ toolchain, and training needs its
``lmplz`` binary), so this is a small pure-Python model with counts in dicts, meant for seed
corpora of up to a few million words.  Tokens are ``text.normalise_words`` of each
line, padded with ``<s>`` (order - 1 times) and closed with ``</s>``; unknown words share the
uniform floor ``1 / (|V| + 1)`` of the unigram level.

Model (Chen & Goodman 1998, interpolated, three discounts per order):
``P(w|h) = max(c(hw) - D(c(hw)), 0) / c(h.) + gamma(h) P(w|h')`` with
``gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / c(h.)``; the highest order uses raw
counts, lower orders continuation counts ``N1+(. h w)``.  Saved as JSON (no pickle).
"""

from __future__ import annotations

import re

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from deeprecipe.pipeline.config import option
from deeprecipe.stages.text import normalise_words

BOS, EOS = "<s>", "</s>"


@dataclass(frozen=True)
class ReferenceLmConfig:
    order: int = option("n-gram order of the Kneser-Ney reference LM")
    seed_source: str = option("'auto' (builtin for the generated crawl, wordfreq for a --source "
                              "crawl), 'builtin' (generated seed), 'wordfreq' (per-language "
                              "word frequencies of real text) or a .txt/.jsonl/.parquet path")
    seed_docs: int = option("trusted seed documents used for training")
    vocab_words: int = option("wordfreq: most frequent words kept per language")
    langs: list = option("wordfreq: languages with a table of their own (others use the pooled "
                         "table); empty: all 42 wordfreq languages", display_empty="all")


_DIGIT = re.compile(r"\d")


def line_tokens(text: str, order: int) -> Iterable[list[str]]:
    """Padded token lists, one per non-empty line of ``text``; digits become 0 (as in CCNet),
    so numbers do not count as unseen words."""
    for line in text.split("\n"):
        words = normalise_words(_DIGIT.sub("0", line))
        if words:
            yield [BOS] * (order - 1) + words + [EOS]


def _discounts(counts: Counter) -> tuple[float, float, float]:
    coc = Counter(c for c in counts.values() if c <= 4)
    n1, n2, n3, n4 = (coc.get(i, 0) for i in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return 0.5, 1.0, 1.5  # tiny corpora: fixed fallback
    y = n1 / (n1 + 2 * n2)
    return (max(0.0, 1 - 2 * y * n2 / n1), max(0.0, 2 - 3 * y * n3 / n2), max(0.0, 3 - 4 * y * n4 / n3))


@dataclass
class KneserNeyLM:
    """Interpolated modified Kneser-Ney word n-gram model. ``counts[k]``: (k+1)-gram tuple -> count."""

    order: int = 3
    counts: list[dict] = field(default_factory=list)
    discounts: list[tuple[float, float, float]] = field(default_factory=list)

    # derived per order: context -> (total, gamma numerator)
    _ctx: list[dict] = field(default_factory=list, repr=False)
    vocab_size: int = 0

    @classmethod
    def train(cls, texts: Iterable[str], order: int = 3) -> "KneserNeyLM":
        """Count n-grams of ``texts`` and derive discounts."""
        top: Counter = Counter()
        for text in texts:
            for toks in line_tokens(text, order):
                for i in range(len(toks) - order + 1):
                    top[tuple(toks[i : i + order])] += 1
        counts: list[dict] = [None] * order  # type: ignore[list-item]
        counts[order - 1] = dict(top)
        for k in range(order - 2, -1, -1):  # continuation counts: distinct left extensions
            cont: Counter = Counter()
            for gram in counts[k + 1]:
                cont[gram[1:]] += 1
            counts[k] = dict(cont)
        counts[0].pop((BOS,), None)  # <s> is never predicted
        model = cls(order, counts, [_discounts(Counter(c)) for c in counts])
        model._derive()
        return model

    def _derive(self) -> None:
        self._ctx = []
        for k, table in enumerate(self.counts):
            d1, d2, d3 = self.discounts[k]
            total: dict = defaultdict(int)
            gamma: dict = defaultdict(float)
            for gram, c in table.items():
                h = gram[:-1]
                total[h] += c
                gamma[h] += d1 if c == 1 else d2 if c == 2 else d3
            self._ctx.append({h: (total[h], gamma[h]) for h in total})
        self.vocab_size = len(self.counts[0])

    def _discount(self, k: int, c: int) -> float:
        d1, d2, d3 = self.discounts[k]
        return 0.0 if c == 0 else d1 if c == 1 else d2 if c == 2 else d3

    def prob(self, context: Sequence[str], word: str) -> float:
        """P(word | last order-1 words of context)."""
        p = 1.0 / (self.vocab_size + 1)  # uniform floor incl. <unk>
        ctx = tuple(context[len(context) - (self.order - 1) :]) if self.order > 1 else ()
        for k in range(self.order):  # unigram level up to full order
            h = ctx[len(ctx) - k :] if k else ()
            stats = self._ctx[k].get(h)
            if stats is None:
                continue  # unseen context: keep the lower-order estimate
            total, gamma_num = stats
            c = self.counts[k].get(h + (word,), 0)
            p = max(c - self._discount(k, c), 0.0) / total + gamma_num / total * p
        return p

    def log10_prob_text(self, text: str) -> tuple[float, int]:
        """Sum of log10 P over all tokens (incl. ``</s>``) of ``text``, and the token count."""
        total, n = 0.0, 0
        for toks in line_tokens(text, self.order):
            for i in range(self.order - 1, len(toks)):
                total += math.log10(self.prob(toks[i - self.order + 1 : i], toks[i]))
                n += 1
        return total, n

    def perplexity(self, text: str) -> float:
        """Per-token perplexity ``10 ** (-log10 P / tokens)``; ``inf`` for a text without words."""
        lp, n = self.log10_prob_text(text)
        return 10 ** (-lp / n) if n else float("inf")

    def perplexities(self, texts: Iterable[str], langs: Iterable[str] | None = None) -> np.ndarray:
        """float64 ``(len(texts),)`` (one model for every language: ``langs`` is not used)."""
        return np.array([self.perplexity(t or "") for t in texts], dtype=np.float64)

    # ---- persistence (JSON, no pickle) ----

    def save(self, path: str | Path) -> None:
        data = {"format": "deeprecipe.kneser_ney.v1", "order": self.order, "discounts": self.discounts,
                "counts": [[[*g, c] for g, c in table.items()] for table in self.counts]}
        Path(path).write_text(json.dumps(data, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> "KneserNeyLM":
        return cls.from_json(json.loads(Path(path).read_text()))

    @classmethod
    def from_json(cls, data: dict) -> "KneserNeyLM":
        if data.get("format") != "deeprecipe.kneser_ney.v1":
            raise ValueError(f"not a deeprecipe Kneser-Ney model (format {data.get('format')!r})")
        counts = [{tuple(row[:-1]): int(row[-1]) for row in table} for table in data["counts"]]
        model = cls(data["order"], counts, [tuple(d) for d in data["discounts"]])
        model._derive()
        return model


AUTO, WORDFREQ = "auto", "wordfreq"


def resolve_seed_source(seed_source: str, crawl_source: str) -> str:
    """``auto`` -> ``builtin`` for the generated crawl (no ``--source``: its languages are the
    generator's), ``wordfreq`` for a real crawl; any other value unchanged."""
    if seed_source != AUTO:
        return seed_source
    return WORDFREQ if crawl_source else "builtin"


def load_reference_lm(path: str | Path):
    """The reference LM saved at ``path``: ``KneserNeyLM`` or ``wordfreq_lm.UnigramLM`` (by its
    ``format``). Both have ``perplexities(texts, langs)``."""
    from deeprecipe.stages import wordfreq_lm
    data = json.loads(Path(path).read_text())
    if data.get("format") == wordfreq_lm.FORMAT:
        return wordfreq_lm.UnigramLM.from_json(data)
    return KneserNeyLM.from_json(data)


BUCKETS = ("head", "middle", "tail")


def perplexity_buckets(
    ppl: np.ndarray, groups: Sequence[str], percentiles: tuple[float, float] = (33, 67)
) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """CCNet split: per group (domain or language), ``head`` = perplexity <= p33 of the group,
    ``middle`` <= p67, else ``tail``.  Returns labels (object array, like ``ppl``) and the
    per-group thresholds ``{group: (p_lo, p_hi)}``."""
    ppl = np.asarray(ppl, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    labels = np.empty(len(ppl), dtype=object)
    cuts: dict[str, tuple[float, float]] = {}
    for g in np.unique(groups):
        m = groups == g
        lo, hi = np.percentile(ppl[m], percentiles)
        cuts[str(g)] = (float(lo), float(hi))
        labels[m] = np.where(ppl[m] <= lo, "head", np.where(ppl[m] <= hi, "middle", "tail"))
    return labels, cuts
