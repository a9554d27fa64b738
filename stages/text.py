"""Text primitives the dedup, decontamination and LM stages share: word normalisation, word
n-gram shingles, and 64-bit word and word-n-gram hashes."""
from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np

_NON_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)


def normalise_words(text: str) -> list[str]:
    """NFKC, lower-case, punctuation -> space, split on whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _NON_WORD.sub(" ", text).split()


def word_shingles(text: str, n: int = 5) -> list[str]:
    """Distinct word n-grams of ``text`` joined by one space, in first-seen order.

    A text with 1..n-1 words yields one shingle (all its words); an empty text yields none.
    """
    words = normalise_words(text)
    if not words:
        return []
    if len(words) < n:
        return [" ".join(words)]
    grams = (" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return list(dict.fromkeys(grams))


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finaliser on a uint64 array (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def word_hash64(words: list[str]) -> np.ndarray:
    """64-bit hash per word (first 8 SHA-1 bytes, little-endian); one call per distinct word."""
    vocab: dict[str, int] = {}
    ids = [vocab.setdefault(w, len(vocab)) for w in words]
    if not ids:
        return np.zeros(0, dtype=np.uint64)
    digests = b"".join([hashlib.sha1(w.encode("utf-8")).digest()[:8] for w in vocab])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)[np.asarray(ids, dtype=np.int64)]


def combine_ngram_hashes(word_hashes: np.ndarray, n: int) -> np.ndarray:
    """Hash of every consecutive n-gram of a word-hash sequence -> uint64 ``(len - n + 1,)``.

    Vectorised over n-grams (the loop runs over the n positions only).
    """
    m = len(word_hashes) - n + 1
    if m <= 0:
        m, n = 1, len(word_hashes)
    acc = np.full(m, np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
    for j in range(n):
        acc = fmix64(acc ^ word_hashes[j : j + m]) + np.uint64(j + 1)
    return fmix64(acc)
