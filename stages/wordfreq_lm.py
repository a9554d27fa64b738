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

import heapq
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
    """``tables[lang]``: word -> log10 P(word | lang); ``unk[lang]``: log10 P of an unknown word.
    The pooled table (``POOLED``) is built on first use."""

    tables: dict[str, dict[str, float]] = field(default_factory=dict)
    unk: dict[str, float] = field(default_factory=dict)
    source: str = "wordfreq"

    @classmethod
    def from_wordfreq(cls, langs: Sequence[str] = (), vocab_words: int = 50_000) -> "UnigramLM":
        """Tables of the ``vocab_words`` most frequent words of each of ``langs`` (empty: every
        wordfreq language)."""
        import wordfreq
        tables, unk = {}, {}
        for lang in langs or wordfreq_languages():
            freqs = heapq.nlargest(vocab_words, wordfreq.get_frequency_dict(lang, "best").items(),
                                   key=lambda kv: kv[1])
            tables[lang] = {w: math.log10(f) for w, f in freqs if f > 0}
            unk[lang] = min(tables[lang].values()) - 1.0
        return cls(tables, unk, f"wordfreq {wordfreq_version()}")

    def _pooled(self) -> None:
        pooled: dict[str, float] = {}
        for table in self.tables.values():
            for w, lp in table.items():
                if lp > pooled.get(w, -math.inf):
                    pooled[w] = lp
        self.tables[POOLED], self.unk[POOLED] = pooled, min(self.unk.values())

    def table_of(self, lang: str | None) -> str:
        if lang in self.tables:
            return lang
        if POOLED not in self.tables:
            self._pooled()
        return POOLED

    def perplexity(self, text: str, lang: str | None = None) -> float:
        """Per-token perplexity ``10 ** (-mean log10 P(w | lang))``; ``inf`` without words."""
        words = normalise_words(_DIGIT.sub("0", text))
        if not words:
            return float("inf")
        key = self.table_of(lang)
        table, unk = self.tables[key], self.unk[key]
        return 10 ** (-sum(table.get(w, unk) for w in words) / len(words))

    def perplexities(self, texts: Iterable[str], langs: Iterable[str | None] | None = None) -> np.ndarray:
        """float64 ``(len(texts),)``; ``langs`` (one per text) picks each text's table."""
        texts = list(texts)
        langs = list(langs) if langs is not None else [None] * len(texts)
        return np.array([self.perplexity(t or "", g) for t, g in zip(texts, langs)], dtype=np.float64)

    def save(self, path: str | Path) -> None:
        """JSON: per language the words and their log10 P (3 decimals), as two lists."""
        own = [lang for lang in self.tables if lang != POOLED]
        data = {"format": FORMAT, "source": self.source, "unk": {g: self.unk[g] for g in own},
                "words": {g: list(self.tables[g]) for g in own},
                "log10p": {g: [round(lp, 3) for lp in self.tables[g].values()] for g in own}}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def from_json(cls, data: dict) -> "UnigramLM":
        if data.get("format") != FORMAT:
            raise ValueError(f"not a deeprecipe wordfreq unigram model (format {data.get('format')!r})")
        tables = {g: dict(zip(words, data["log10p"][g])) for g, words in data["words"].items()}
        return cls(tables, dict(data["unk"]), data.get("source", "wordfreq"))


def wordfreq_version() -> str:
    from importlib.metadata import version
    return version("wordfreq")
