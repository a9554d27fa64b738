"""Proposed faster ``signatures(..., method="word_combine")`` (benchmark prototype; the stage
module is owned elsewhere).  Bit-identical output, fewer Python-level operations:

- one word -> id dict per *shard* (SHA-1 once per distinct word of the shard, not once per
  distinct word of each document, and no per-document ``np.unique`` over an object array);
- the n-gram combine runs once over the concatenated word-hash array of the whole shard
  (n-grams crossing a document boundary are masked out);
- no per-document de-duplication of shingle hashes: the per-permutation minimum is the same
  with repeated hashes, so ``np.unique`` is dropped.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from stages import minhash_dedup as md  # noqa: E402


def signatures_word_combine_batched(table: pa.Table, num_perm: int = md.NUM_PERM, ngram: int = md.NGRAM,
                                    seed: int = md.SEED, text_column: str = "text") -> np.ndarray:
    texts = table.column(text_column).to_pylist()
    vocab: dict[str, int] = {}
    ids: list[int] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    for d, t in enumerate(texts):
        words = md.normalise_words(t or "")
        lengths[d] = len(words)
        for w in words:
            i = vocab.get(w)
            if i is None:
                i = vocab[w] = len(vocab)
            ids.append(i)
    vh = np.frombuffer(b"".join([hashlib.sha1(w.encode("utf-8")).digest()[:8] for w in vocab]),
                       dtype="<u8").astype(np.uint64)
    wh = vh[np.asarray(ids, dtype=np.int64)] if ids else np.zeros(0, dtype=np.uint64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    parts_h, parts_d = [], []
    m = len(wh) - ngram + 1
    if m > 0:
        acc = np.full(m, np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
        for j in range(ngram):
            acc = md.fmix64(acc ^ wh[j : j + m]) + np.uint64(j + 1)
        acc = md.fmix64(acc)
        doc_of = np.repeat(np.arange(len(texts)), lengths)[:m]
        valid = np.arange(m) + ngram <= ends[doc_of]
        parts_h.append((acc[valid] & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        parts_d.append(doc_of[valid])
    short = np.flatnonzero((lengths > 0) & (lengths < ngram))
    if len(short):  # fewer than n words: one shingle of all words (as md.combine_ngram_hashes)
        h = [md.combine_ngram_hashes(wh[starts[d] : ends[d]], ngram)[0] for d in short]
        parts_h.append((np.array(h, dtype=np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        parts_d.append(short)
    if not parts_h:
        return md.minhash_batch(np.zeros(0, np.uint32), np.zeros(0, np.int64), len(texts),
                                *md.permutations(num_perm, seed))
    hashes, doc_index = np.concatenate(parts_h), np.concatenate(parts_d)
    order = np.argsort(doc_index, kind="stable")
    a, b = md.permutations(num_perm, seed)
    return md.minhash_batch(hashes[order], doc_index[order], len(texts), a, b)
