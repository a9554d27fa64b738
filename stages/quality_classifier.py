"""fastText quality / domain classifier and the DeepSeekMath seed-iteration loop.

``FastTextClassifier.train(positives, negatives)`` writes a fastText training file to a temp
folder and trains a supervised model (labels ``__label__hq`` / ``__label__lq``; one thread and a
fixed seed, so runs are reproducible); ``score(texts)`` is P(``__label__hq``) per text, float64.
Models are saved in fastText's own ``.bin`` format (never pickle).

``iterate_seed`` is the DeepSeekMath loop: train on the seed (positives) against random crawl
pages (negatives), score the crawl, compute per URL prefix (domain + first path segment) the
share of pages scoring >= ``high_score``; prefixes with >= ``min_pages`` pages and a share
> ``prefix_hq_frac`` are marked positive and ALL their pages join the seed of the next round
(this recalls pages the classifier missed).  N rounds; per-round stats are returned.

On a real crawl there may be no trusted corpus to hand: ``lm_head_tail`` then takes the
positives from the crawl itself, the documents in the head of the reference LM (trained on real
text: ``wordfreq_lm``) within their language, and the negatives from its tail, as CCNet's
head / tail buckets; the classifier generalises them through word bigrams.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from deeprecipe.stages.url_dedup import normalize_url

import fasttext
import numpy as np
import pyarrow as pa

from deeprecipe.pipeline.config import option

HQ, LQ = "__label__hq", "__label__lq"
_PUNCT = re.compile(r"([^\w\s])", re.UNICODE)
_SPACE = re.compile(r"\s+")
_M_PERTURB = -6  # mallopt parameter, glibc malloc.h


@dataclass(frozen=True)
class QualityClassifierConfig:
    seed_source: str = option("positives: 'auto' (builtin for the generated crawl, lm_head for "
                              "a --source crawl), 'builtin' (generated seed), 'lm_head' (crawl "
                              "documents in the reference LM's head, per language; negatives "
                              "its tail) or a .txt/.jsonl/.parquet path")
    min_lang_docs: int = option("lm_head: languages with fewer crawl documents share pooled "
                                "head/tail cuts")
    chunk_words: int = option("lm_head: head/tail documents are cut into training rows of about "
                              "this many words (0: whole documents)")
    seed_docs: int = option("trusted seed documents used for training")
    rounds: int = option("DeepSeekMath-style rounds: each adds high-scoring URL prefixes to the "
                         "positives")
    high_score: float = option("classifier score from which a crawl page counts as high quality")
    min_pages: int = option("pages a URL prefix needs before it can join the positives")
    prefix_hq_frac: float = option("share of a prefix's pages that must score high for it to "
                                   "join the positives")
    max_crawl_docs: int = option("crawl documents scored per round (the negatives are drawn "
                                 "from them)")


def fasttext_line(text: str, max_chars: int = 20000) -> str:
    """One-line, lower-cased text with punctuation split off as tokens (fastText input)."""
    return _SPACE.sub(" ", _PUNCT.sub(r" \1 ", text[:max_chars].lower())).strip()


@contextlib.contextmanager
def zero_filled_malloc():
    """While inside, glibc's malloc hands out zero-filled memory (``mallopt(M_PERTURB, 0xff)``).

    fastText 0.9.x allocates its input matrix uninitialised (``intgemm::AlignedVector``) and,
    with ``thread=1``, draws random values into only its first tenth (``uniform(a, thread,
    seed)`` fills one tenth per thread). The rest is whatever the heap held: zeros on fresh
    pages, old Python objects after a long process has freed memory -- "Encountered NaN." or
    run-to-run differences (seen on the `small` profile's second seed-iteration round at any
    lr). Zero-filling makes those rows zero, as on fresh pages, so training is deterministic.
    Elsewhere than glibc this does nothing.
    """
    libc = glibc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_PERTURB, 0xFF)  # allocations are filled with 0xff ^ 0xff = 0
    try:
        yield
    finally:
        libc.mallopt(_M_PERTURB, 0)


def glibc():
    """glibc through ctypes, or None elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


@dataclass
class FastTextClassifier:
    """Binary fastText model; ``score`` gives P(hq) per text."""

    model: "fasttext.FastText._FastText"

    @classmethod
    def train(cls, positives: Sequence[str], negatives: Sequence[str], epoch: int = 10, lr: float = 0.3,
              word_ngrams: int = 2, dim: int = 32, min_count: int = 1, seed: int = 0,
              bucket: int = 400_000) -> "FastTextClassifier":
        rows = [f"{HQ} {fasttext_line(t)}" for t in positives] + [f"{LQ} {fasttext_line(t)}" for t in negatives]
        random.Random(seed).shuffle(rows)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "train.txt"
            path.write_text("\n".join(rows) + "\n", encoding="utf-8")
            with zero_filled_malloc():
                model = fasttext.train_supervised(
                    input=str(path), epoch=epoch, lr=lr, wordNgrams=word_ngrams, dim=dim, minCount=min_count,
                    thread=1, seed=seed, verbose=0, bucket=bucket)
        return cls(model)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(``__label__hq``) per text, float64 ``(len(texts),)``."""
        if not texts:
            return np.zeros(0)
        labels, probs = self.model.predict([fasttext_line(t or "") for t in texts], k=2)
        return np.array([dict(zip(ls, ps)).get(HQ, 0.0) for ls, ps in zip(labels, probs)], dtype=np.float64)

    def save(self, path: str | Path) -> None:
        self.model.save_model(str(path))

    @classmethod
    def load(cls, path: str | Path) -> "FastTextClassifier":
        return cls(fasttext.load_model(str(path)))


def url_prefix(url: str | None) -> str | None:
    """``domain/first-path-segment`` of the normalised URL (DeepSeekMath's URL-path statistics
    unit); None for a document without a URL."""
    if not url:
        return None
    parts = urlsplit(normalize_url(url))
    seg = parts.path.strip("/").split("/")[0] if parts.path.strip("/") else ""
    return f"{parts.netloc}/{seg}"


def hq_prefixes(urls: Sequence[str], scores: np.ndarray, high_score: float = 0.5, min_pages: int = 3,
                prefix_hq_frac: float = 0.1) -> dict[str, tuple[int, float]]:
    """URL prefixes with >= ``min_pages`` pages of which a share > ``prefix_hq_frac`` scores
    >= ``high_score``: ``{prefix: (pages, share)}``."""
    pages, high = Counter(), Counter()
    for u, s in zip(urls, scores):
        p = url_prefix(u)
        if p is None:
            continue
        pages[p] += 1
        high[p] += bool(s >= high_score)
    return {p: (n, high[p] / n) for p, n in pages.items() if n >= min_pages and high[p] / n > prefix_hq_frac}


@dataclass
class SeedIteration:
    """Result of ``iterate_seed``: final model and scores, discovered prefixes, per-round stats."""

    classifier: FastTextClassifier
    scores: np.ndarray
    prefixes: set[str]
    rounds: list[dict] = field(default_factory=list)


LM_HEAD = "lm_head"


def text_chunks(texts: Sequence[str], words: int) -> list[str]:
    """Each text cut at line ends into pieces of at least ``words`` words (a text's last piece
    is kept when it has at least ``words // 3``); ``words`` 0 keeps the texts whole. On a small
    crawl this gives fastText many rows instead of a few dozen documents, so it trains past
    P = 0.5 everywhere."""
    if not words:
        return list(texts)
    out = []
    for text in texts:
        piece: list[str] = []
        for line in text.split("\n"):
            piece += line.split()
            if len(piece) >= words:
                out.append(" ".join(piece))
                piece = []
        if len(piece) >= max(words // 3, 1):
            out.append(" ".join(piece))
    return out


def lm_head_tail(texts: Sequence[str], langs: Sequence[str], ppl: np.ndarray,
                 min_lang_docs: int) -> tuple[list[str], list[str]]:
    """(head, tail) texts: perplexity <= p33 / > p67 of the text's language (languages of fewer
    than ``min_lang_docs`` texts pooled, as in ``quality_filter.group_thresholds``)."""
    from deeprecipe.stages import quality_filter
    groups = [g or quality_filter.UNKNOWN_GROUP for g in langs]
    th = quality_filter.group_thresholds(groups, ppl, "lang", 95.0, 1.0, min_lang_docs)
    head, tail = [], []
    for text, g, p in zip(texts, groups, ppl):
        lo, hi = th["ccnet_head_middle"][quality_filter.threshold_group(th, g)]
        if p <= lo:
            head.append(text)
        elif p > hi:
            tail.append(text)
    return head, tail


def iterate_seed(
    seed_texts: Sequence[str], crawl: pa.Table, rounds: int = 3, high_score: float = 0.5, min_pages: int = 3,
    prefix_hq_frac: float = 0.1, negatives_ratio: float = 1.0, seed: int = 0,
    negatives: Sequence[str] | None = None, **train_kw,
) -> SeedIteration:
    """DeepSeekMath seed iteration over ``crawl`` (columns ``url``, ``text``). Negatives: random
    crawl pages (``negatives_ratio`` x the positives), or ``negatives`` when given."""
    rng = random.Random(seed)
    texts = crawl.column("text").to_pylist()
    urls = crawl.column("url").to_pylist()
    prefixes_of = [url_prefix(u) for u in urls]
    found: set[str] = set()
    history = []
    clf, scores = None, np.zeros(len(texts))
    for r in range(rounds):
        extra = [t for t, p in zip(texts, prefixes_of) if p in found]
        positives = list(seed_texts) + extra
        negs = (list(negatives) if negatives is not None
                else rng.sample(texts, min(len(texts), int(len(positives) * negatives_ratio))))
        clf = FastTextClassifier.train(positives, negs, seed=seed + r, **train_kw)
        scores = clf.score(texts)
        new = set(hq_prefixes(urls, scores, high_score, min_pages, prefix_hq_frac)) - found
        found |= new
        history.append({"round": r, "positives": len(positives), "negatives": len(negs),
                        "crawl_high": int((scores >= high_score).sum()), "new_prefixes": sorted(new)})
        if not new and r > 0:
            break
    return SeedIteration(clf, scores, found, history)
