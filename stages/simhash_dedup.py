"""Sentence-level near-duplicate removal with 64-bit SimHash (boilerplate across documents).

Global order of documents is ``(shard, row)``.  A sentence is removed from a document when a
sentence within Hamming distance ``max_distance`` (default 3) of its SimHash occurs in an
EARLIER document; the first document keeps it.  Repeats inside one document are left to the
quality heuristics.  A document that loses sentences and is left with fewer than ``min_words``
words is dropped.

Steps:

1. map, per shard: ``sentence_hashes(table, shard)`` -> ``(simhash, shard, row, sentence_idx)``
   for every sentence of >= ``min_sentence_words`` words.  Sentences are lines split further
   at ``.!?`` + space; features are the sentence's normalised words and word bigrams (SHA-1,
   64 bit), each adding +-1 per bit; everything vectorised over a shard's features.
2. reduce: ``duplicate_sentences(hash_table, max_distance)`` -> ``(shard, row, sentence_idx)``
   to remove.  Exact duplicates collapse first; near pairs among the distinct hashes are found
   with the permuted-blocks trick: the 64 bits are cut into ``max_distance + 1`` blocks, two
   hashes within distance k agree exactly on at least one block, so only hashes sharing a
   block value are compared (the reduce can be partitioned by (block, block value)).
3. apply, per shard: ``SentenceRemover()(table, shard, marks)`` rebuilds the texts.

Distance default, measured (``bench/curation_quality.py --simhash-sweep``, tests in
``tests/test_simhash_dedup.py``).  A one-word substitution in an m-word sentence changes 3 of its
2m - 1 features, so its expected Hamming distance is 64/pi * acos(1 - 3/(2m - 1)): 8.5 bits at
m = 18 (shared notices have 15-24 words), 4.6 at m = 60.  Distance 3 therefore removes
normalised copies, not edited ones, and no feature choice changes that much: words alone, with
trigrams or character 4-grams all sit on the same edit-recall / false-merge curve on the crawl
(5.3 to 8.9 bits mean for the crawl's edited notices).  A larger distance catches edits as far
as distinct sentences stay apart: on ``labelled_corpus`` prose (large lexicon) distance 9
removes 88 % of edited notices and 0.05 % of other sentences; on the generated crawl (tiny
profile), whose natural sentences are template fills -- 12 % of them one word away from an
earlier one -- distance 4 removes 16 % of edited notices and 1.3 % of natural sentences, 6:
44 % / 5.8 %, 8: 80 % / 17 %.  The default stays 3 (8 % / 0.4 %), the largest under the crawl's
1 % bound.  Larger distances also cost time: k + 1 blocks of 64/(k + 1) bits make ~N^2 (k + 1)
/ 2^(64/(k+1)) candidate pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from deeprecipe.pipeline.config import option
from deeprecipe.stages.text import combine_ngram_hashes, normalise_words, word_hash64

MAX_DISTANCE = 3
MIN_SENTENCE_WORDS = 5
MIN_DOC_WORDS = 50

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class SimhashConfig:
    max_distance: int = option("Hamming distance of 64-bit SimHashes from which two sentences "
                               "are duplicates")
    min_sentence_words: int = option("sentences shorter than this (words) are never hashed nor "
                                     "removed")
    min_doc_words: int = option("documents left with fewer words after sentence dedup are "
                                "dropped")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the sentences of ``text`` (lines, split at ``.!? ``)."""
    spans = []
    pos = 0
    for line in text.split("\n"):
        start = 0
        for m in _SENTENCE_END.finditer(line):
            if line[start : m.start()].strip():
                spans.append((pos + start, pos + m.start()))
            start = m.end()
        if line[start:].strip():
            spans.append((pos + start, pos + len(line.rstrip())))
        pos += len(line) + 1
    return spans


def simhash_bits(features: np.ndarray, owner: np.ndarray, n_owners: int) -> np.ndarray:
    """SimHash per owner: bit b set where more features have bit b set than not.

    features: uint64 ``(F,)``; owner: int ``(F,)`` in ``[0, n_owners)``.  Returns uint64 ``(n_owners,)``.
    Bits are unpacked to one uint8 per bit ``(F, 64)``, counted per owner and packed back.
    """
    out = np.zeros(n_owners, dtype=np.uint64)
    if len(features) == 0:
        return out
    order = np.argsort(owner, kind="stable")
    features, owner = features[order], owner[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    bytes_F8 = features.astype("<u8").view(np.uint8).reshape(-1, 8)
    bits_F64 = np.unpackbits(bytes_F8, axis=1, bitorder="little")  # bit b of feature f
    ones = np.add.reduceat(bits_F64, starts, axis=0, dtype=np.int32)
    sizes = np.diff(np.r_[starts, len(owner)])
    majority = 2 * ones > sizes[:, None]  # more features with the bit set than without
    out[owner[starts]] = np.packbits(majority, axis=1, bitorder="little").view("<u8").ravel()
    return out


def text_simhashes(sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """SimHash of each sentence -> ``(uint64 (S,), word counts int (S,))``."""
    words = [normalise_words(s) for s in sentences]
    counts = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    flat = [w for ws in words for w in ws]
    if not flat:
        return np.zeros(len(sentences), np.uint64), counts
    owner = np.repeat(np.arange(len(sentences)), counts)
    wh = word_hash64(flat)
    bigram = combine_ngram_hashes(wh, 2) if len(wh) > 1 else np.zeros(0, np.uint64)
    same = owner[1:] == owner[:-1]  # bigrams that stay inside one sentence
    feats = np.concatenate([wh, bigram[same]])
    owners = np.concatenate([owner, owner[1:][same]])
    return simhash_bits(feats, owners, len(sentences)), counts


HASH_SCHEMA = pa.schema([("simhash", pa.uint64()), ("shard", pa.int32()), ("row", pa.int64()),
                         ("sentence_idx", pa.int32())])
MARK_SCHEMA = pa.schema([("shard", pa.int32()), ("row", pa.int64()), ("sentence_idx", pa.int32())])


def sentence_hashes(
    table: pa.Table, shard: int, min_sentence_words: int = MIN_SENTENCE_WORDS, text_column: str = "text"
) -> pa.Table:
    """Map step: one row per sentence with >= ``min_sentence_words`` words."""
    sentences, rows, idx = [], [], []
    for r, text in enumerate(table.column(text_column).to_pylist()):
        text = text or ""
        for i, (s, e) in enumerate(sentence_spans(text)):
            sentences.append(text[s:e])
            rows.append(r)
            idx.append(i)
    batches = [text_simhashes(sentences[k : k + 20000]) for k in range(0, len(sentences), 20000)]
    hashes = np.concatenate([b[0] for b in batches]) if batches else np.zeros(0, np.uint64)
    counts = np.concatenate([b[1] for b in batches]) if batches else np.zeros(0, np.int64)
    keep = counts >= min_sentence_words
    return pa.table({"simhash": hashes[keep], "shard": np.full(int(keep.sum()), shard, np.int32),
                     "row": np.asarray(rows, np.int64)[keep], "sentence_idx": np.asarray(idx, np.int32)[keep]},
                    schema=HASH_SCHEMA)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of uint64 arrays."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def near_hash_pairs(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, i < j, of DISTINCT hashes within ``max_distance`` (blocks trick)."""
    n_blocks = max_distance + 1
    edges = np.linspace(0, 64, n_blocks + 1).astype(int)
    out_i, out_j = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        block = (hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(block, kind="stable")
        sb = block[order]
        d = 1
        alive = np.arange(len(order) - 1)
        while len(alive):
            alive = alive[alive + d < len(order)]
            alive = alive[sb[alive] == sb[alive + d]]
            i, j = order[alive], order[alive + d]
            close = hamming(hashes[i], hashes[j]) <= max_distance
            out_i.append(np.minimum(i, j)[close])
            out_j.append(np.maximum(i, j)[close])
            d += 1
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.stack([np.concatenate(out_i), np.concatenate(out_j)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def duplicate_sentences(hash_table: pa.Table, max_distance: int = MAX_DISTANCE) -> pa.Table:
    """Reduce step: sentences having a near-duplicate (<= ``max_distance``) in an earlier document."""
    h = hash_table.column("simhash").to_numpy()
    shard = hash_table.column("shard").to_numpy().astype(np.int64)
    row = hash_table.column("row").to_numpy().astype(np.int64)
    doc = (shard << 40) | row
    uniq, inv = np.unique(h, return_inverse=True)
    first_doc = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(first_doc, inv, doc)
    earliest = first_doc.copy()
    i, j = near_hash_pairs(uniq, max_distance)
    np.minimum.at(earliest, i, first_doc[j])
    np.minimum.at(earliest, j, first_doc[i])
    remove = earliest[inv] < doc
    return pa.table({"shard": shard[remove].astype(np.int32), "row": row[remove],
                     "sentence_idx": hash_table.column("sentence_idx").to_numpy()[remove]}, schema=MARK_SCHEMA)


@dataclass
class SimhashStats:
    docs_in: int = 0
    docs_out: int = 0
    docs_dropped: int = 0
    sentences_removed: int = 0
    chars_in: int = 0
    chars_removed: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def drop_spans(text: str, spans: list[tuple[int, int]], remove: set[int]) -> str:
    """``text`` without the sentences whose index is in ``remove``; emptied lines disappear."""
    out, pos = [], 0
    for k, (s, e) in enumerate(spans):
        if k in remove:
            out.append(text[pos:s])
            pos = e
            while pos < len(text) and text[pos] in " \t":
                pos += 1
    out.append(text[pos:])
    lines = [line.rstrip() for line in "".join(out).split("\n")]
    return "\n".join(line for line in lines if line.strip())


@dataclass
class SentenceRemover:
    """Apply step for one shard: remove marked sentences, drop docs left under ``min_words``."""

    min_words: int = MIN_DOC_WORDS
    text_column: str = "text"
    stats: SimhashStats = field(default_factory=SimhashStats)

    def __call__(self, table: pa.Table, shard: int, marks: pa.Table) -> pa.Table:
        m_shard = marks.column("shard").to_numpy()
        sel = m_shard == shard
        by_row: dict[int, set[int]] = {}
        for r, i in zip(marks.column("row").to_numpy()[sel], marks.column("sentence_idx").to_numpy()[sel]):
            by_row.setdefault(int(r), set()).add(int(i))
        texts = table.column(self.text_column).to_pylist()
        keep = np.ones(len(texts), dtype=bool)
        for r, text in enumerate(texts):
            text = text or ""
            self.stats.chars_in += len(text)
            if r not in by_row:
                continue
            new = drop_spans(text, sentence_spans(text), by_row[r])
            self.stats.sentences_removed += len(by_row[r])
            self.stats.chars_removed += len(text) - len(new)
            texts[r] = new
            if len(new.split()) < self.min_words:
                keep[r] = False
        idx = table.schema.get_field_index(self.text_column)
        out = table.set_column(idx, self.text_column, pa.array(texts, pa.string())).filter(pa.array(keep))
        self.stats.docs_in += table.num_rows
        self.stats.docs_out += out.num_rows
        self.stats.docs_dropped += int((~keep).sum())
        return out


def dedup_tables(
    shards: list[pa.Table], max_distance: int = MAX_DISTANCE, min_sentence_words: int = MIN_SENTENCE_WORDS,
    min_words: int = MIN_DOC_WORDS,
) -> tuple[list[pa.Table], SimhashStats]:
    """All three steps in one process (tests, the tiny profile)."""
    hashes = pa.concat_tables([sentence_hashes(t, k, min_sentence_words) for k, t in enumerate(shards)])
    marks = duplicate_sentences(hashes, max_distance)
    remover = SentenceRemover(min_words)
    return [remover(t, k, marks) for k, t in enumerate(shards)], remover.stats
