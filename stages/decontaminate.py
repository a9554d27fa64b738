"""Decontamination: drop training documents sharing a long word n-gram with any evaluation item.

The index holds the 64-bit hashes of every word n-gram (default 13, the GPT-3 / Llama choice;
words normalised like ``text.normalise_words``) of every eval item as a sorted uint64
array with the owning item per hash; a document is looked up with one ``np.searchsorted`` over
all its n-gram hashes.  Eval items shorter than n words are indexed by their whole word sequence
(an n-gram of their length), matched against document n-grams of that length.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from deeprecipe.stages.text import combine_ngram_hashes, normalise_words, word_hash64

from deeprecipe.pipeline.config import option

NGRAM = 13


@dataclass(frozen=True)
class DecontaminateConfig:
    ngram: int = option("word n-gram length shared with an evaluation item that removes a "
                        "document")
    eval_sources: list = option("'builtin' and/or eval files")


def ngram_hashes(text: str, n: int = NGRAM) -> np.ndarray:
    """uint64 hashes of all word n-grams of ``text`` (a text of k < n words: one k-gram)."""
    words = normalise_words(text)
    if not words:
        return np.zeros(0, dtype=np.uint64)
    return combine_ngram_hashes(word_hash64(words), min(n, len(words)))


@dataclass
class EvalIndex:
    """Sorted n-gram hashes of eval items. ``hashes``: uint64 (H,), ``item``: int64 (H,)."""

    n: int
    hashes: np.ndarray
    item: np.ndarray
    item_names: list[str]
    short_lengths: tuple[int, ...]  # lengths (< n) of eval items indexed whole

    @classmethod
    def build(cls, eval_texts: list[str], n: int = NGRAM, names: list[str] | None = None) -> "EvalIndex":
        names = names or [f"eval{i}" for i in range(len(eval_texts))]
        hs, owners, short = [], [], set()
        for i, text in enumerate(eval_texts):
            h = ngram_hashes(text, n)
            hs.append(h)
            owners.append(np.full(len(h), i, dtype=np.int64))
            k = len(normalise_words(text))
            if 0 < k < n:
                short.add(k)
        h = np.concatenate(hs) if hs else np.zeros(0, np.uint64)
        o = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        order = np.lexsort((o, h))
        return cls(n, h[order], o[order], list(names), tuple(sorted(short)))

    def hits(self, text: str) -> set[int]:
        """Indices of eval items sharing an n-gram with ``text``."""
        words = normalise_words(text)
        if not words or len(self.hashes) == 0:
            return set()
        wh = word_hash64(words)
        lengths = ([self.n] if len(words) >= self.n else []) + [k for k in self.short_lengths if k <= len(words)]
        found: set[int] = set()
        for k in lengths:
            q = combine_ngram_hashes(wh, k)
            pos = np.searchsorted(self.hashes, q)
            pos = pos[pos < len(self.hashes)]
            matched = np.unique(self.hashes[pos][np.isin(self.hashes[pos], q)])
            if len(matched):
                lo = np.searchsorted(self.hashes, matched, side="left")
                hi = np.searchsorted(self.hashes, matched, side="right")
                for a, b in zip(lo, hi):
                    found.update(self.item[a:b].tolist())
        return found


@dataclass
class Decontaminator:
    """Table step: drop documents hitting the index; ``stats`` counts removals and eval hits."""

    index: EvalIndex
    text_column: str = "text"
    stats: Counter = field(default_factory=Counter)
    item_hits: Counter = field(default_factory=Counter)  # eval item name -> documents removed
    removed_ids: list = field(default_factory=list)

    def __call__(self, table: pa.Table) -> pa.Table:
        texts = table.column(self.text_column).to_pylist()
        ids = table.column("id").to_pylist() if "id" in table.column_names else list(range(len(texts)))
        keep = []
        for doc_id, text in zip(ids, texts):
            hit = self.index.hits(text or "")
            keep.append(not hit)
            if hit:
                self.removed_ids.append(doc_id)
                self.item_hits.update(self.index.item_names[i] for i in hit)
        out = table.filter(pa.array(keep, pa.bool_()))
        self.stats["docs_in"] += table.num_rows
        self.stats["docs_removed"] += table.num_rows - out.num_rows
        self.stats["docs_out"] += out.num_rows
        self.stats["eval_items_hit"] = len(self.item_hits)
        return out
