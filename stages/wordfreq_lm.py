"""Per-language unigram reference LM built from ``wordfreq``'s word frequencies (real text).

``wordfreq`` (PyPI; code Apache-2.0, word lists CC BY-SA 4.0) ships, offline, the frequencies
of words in 42 languages measured on real human-written text: Wikipedia, subtitles, news,
books, web text, Reddit and Twitter. That is the trusted reference CCNet takes from Wikipedia,
reduced to what fits in a pip package: a unigram distribution per language, so a document's
perplexity measures how ordinary its words are for its language (word order is not modelled;
the heuristics and the fastText classifier see it).

Model: ``P(w | lang)`` = wordfreq's frequency of ``w`` among the ``vocab_words`` most frequent
words of ``lang``; any other word gets ``P_unk(lang)`` = a tenth of the rarest kept word's
frequency. Documents of a language without a table use the pooled table (for each word its
largest frequency over all languages). Tokens are ``text.normalise_words`` with digits as 0 (as
in ``ngram_lm.line_tokens``), so scripts without spaces (zh, ja) are scored per run of
characters and come out as unknown words: no real model for them. Saved as JSON (no pickle).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from deeprecipe.stages.text import normalise_words

FORMAT = "deeprecipe.wordfreq_unigram.v1"
POOLED = "*"  # the table of documents whose language has none of its own
_DIGIT = re.compile(r"\d")


def wordfreq_languages() -> list[str]:
    """The languages wordfreq has a list for (its ``best`` word lists)."""
    import wordfreq
    return sorted(wordfreq.available_languages("best"))


@dataclass
class UnigramLM:
    """``tables[lang]``: word -> log10 P(word | lang); ``unk[lang]``: log10 P of an unknown word."""

    tables: dict[str, dict[str, float]] = field(default_factory=dict)
    unk: dict[str, float] = field(default_factory=dict)
    source: str = "wordfreq"

    @classmethod
    def from_wordfreq(cls, langs: Sequence[str] = (), vocab_words: int = 50_000) -> "UnigramLM":
        """Tables of the ``vocab_words`` most frequent words of each of ``langs`` (empty: every
        wordfreq language), plus the pooled table."""
        import wordfreq
        tables, unk = {}, {}
        for lang in langs or wordfreq_languages():
            words = wordfreq.top_n_list(lang, vocab_words, wordlist="best")
            freqs = {w: wordfreq.word_frequency(w, lang, wordlist="best") for w in words}
            freqs = {w: f for w, f in freqs.items() if f > 0}
            tables[lang] = {w: math.log10(f) for w, f in freqs.items()}
            unk[lang] = math.log10(min(freqs.values())) - 1.0
        pooled: dict[str, float] = {}
        for table in tables.values():
            for w, lp in table.items():
                if lp > pooled.get(w, -math.inf):
                    pooled[w] = lp
        tables[POOLED], unk[POOLED] = pooled, min(unk.values())
        return cls(tables, unk, f"wordfreq {wordfreq_version()}")

    def table_of(self, lang: str | None) -> str:
        return lang if lang in self.tables else POOLED

    def perplexity(self, text: str, lang: str | None = None) -> float:
        """Per-token perplexity ``10 ** (-mean log10 P(w | lang))``; ``inf`` without words."""
        key = self.table_of(lang)
        table, unk = self.tables[key], self.unk[key]
        words = normalise_words(_DIGIT.sub("0", text))
        if not words:
            return float("inf")
        return 10 ** (-sum(table.get(w, unk) for w in words) / len(words))

    def perplexities(self, texts: Iterable[str], langs: Iterable[str | None] | None = None) -> np.ndarray:
        """float64 ``(len(texts),)``; ``langs`` (one per text) picks each text's table."""
        texts = list(texts)
        langs = list(langs) if langs is not None else [None] * len(texts)
        return np.array([self.perplexity(t or "", g) for t, g in zip(texts, langs)], dtype=np.float64)

    def save(self, path: str | Path) -> None:
        data = {"format": FORMAT, "source": self.source, "unk": self.unk,
                "tables": {lang: [[w, round(lp, 4)] for w, lp in t.items()] for lang, t in self.tables.items()}}
        Path(path).write_text(json.dumps(data, ensure_ascii=False))

    @classmethod
    def from_json(cls, data: dict) -> "UnigramLM":
        if data.get("format") != FORMAT:
            raise ValueError(f"not a deeprecipe wordfreq unigram model (format {data.get('format')!r})")
        tables = {lang: {w: lp for w, lp in rows} for lang, rows in data["tables"].items()}
        return cls(tables, dict(data["unk"]), data.get("source", "wordfreq"))


def wordfreq_version() -> str:
    from importlib.metadata import version
    return version("wordfreq")
