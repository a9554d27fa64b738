"""Deterministic labelled text corpus for tests and benchmarks of the data-curation stages.

Every generator is a plain function of a ``random.Random``; ``make_corpus(seed)`` assembles
them into ``(docs, truth)``:

- ``docs``: ``id, url, domain, lang, text, kind`` (kind = natural / neardup / farpair / spam_* /
  pii / code / math / boilerplate).
- ``truth``: ``kind, doc_id, other_id, label, value, text`` -- one row per fact to check:
  ``nearpair`` / ``farpair`` (value = TRUE Jaccard of the 5-gram shingle sets, measured with
  ``text.word_shingles``), ``boilerplate`` (a planted cross-site sentence occurrence;
  label ``first`` or ``repeat``; value = 0 for a normalised-exact copy, 1 for a one-word edit),
  ``pii`` (label = placeholder type, text = the planted string), ``lookalike`` (label = what it
  is: version, date, price, isbn, math, code, number, ...; must survive redaction), ``quality``
  (label ``high`` / ``low``), ``topic`` (label ``math`` for math pages).

The parts, one module each: ``labelled_prose`` (the generated languages, near-duplicate and
far pairs), ``labelled_pages`` (spam, code, math, boilerplate), ``labelled_pii`` (PII and
look-alikes) and ``eval_items`` (the held-out evaluation items that the crawl plants verbatim
and decontamination uses as its built-in eval set). ``stages.generators.synthetic_crawl`` fills
the same labelled structures with its news-site language packs.
"""
from __future__ import annotations

import random

import pyarrow as pa

from deeprecipe.stages.generators.labelled_pages import (SPAM_GENERATORS, boilerplate_sentences, boilerplate_variant,
                                                         code_page, math_page)
from deeprecipe.stages.generators.labelled_pii import pii_page
from deeprecipe.stages.generators.labelled_prose import LANGS, far_pair, natural_page, natural_sentence, near_duplicate

# ---------------------------------------------------------------------------------------------
# assembly
# ---------------------------------------------------------------------------------------------

DOC_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("domain", pa.string()),
                        ("lang", pa.string()), ("text", pa.string()), ("kind", pa.string())])
TRUTH_SCHEMA = pa.schema([("kind", pa.string()), ("doc_id", pa.string()), ("other_id", pa.string()),
                          ("label", pa.string()), ("value", pa.float64()), ("text", pa.string())])


class _Builder:
    def __init__(self, rng: random.Random):
        self.rng, self.docs, self.truth = rng, [], []

    def add(self, text: str, kind: str, lang: str = "en", domain: str | None = None) -> str:
        i = len(self.docs)
        domain = domain or f"site{self.rng.randint(0, 9999):04d}.{self.rng.choice(['com', 'org', 'net', 'de', 'fr', 'es'])}"
        doc_id = f"doc{i:06d}"
        self.docs.append(dict(id=doc_id, url=f"https://{domain}/{kind}/{i}.html", domain=domain, lang=lang,
                              text=text, kind=kind))
        return doc_id

    def fact(self, kind, doc_id, label, other_id=None, value=None, text=None):
        self.truth.append(dict(kind=kind, doc_id=doc_id, other_id=other_id, label=label, value=value, text=text))


def make_corpus(
    seed: int = 0, natural: int = 200, near_pairs: int = 200, far_pairs: int = 200, spam: int = 100,
    pii: int = 150, code: int = 20, math: int = 60, boilerplate_docs: int = 150,
    math_domains: int = 6,
) -> tuple[pa.Table, pa.Table]:
    """The labelled corpus: ``(docs, truth)`` (see the module docstring for the columns)."""
    b = _Builder(random.Random(seed))
    rng = b.rng
    for _ in range(natural):
        lang = rng.choice(LANGS)
        b.fact("quality", b.add(natural_page(rng, lang), "natural", lang), "high")
    for k in range(near_pairs):
        base = natural_page(rng, "en")
        target = rng.uniform(0.9, 0.99) if k % 4 else rng.uniform(0.6, 0.9)
        other, j = near_duplicate(rng, base, target)
        a, c = b.add(base, "neardup"), b.add(other, "neardup")
        b.fact("nearpair", a, "near", other_id=c, value=j)
    for _ in range(far_pairs):
        base = natural_page(rng, "en")
        other, j = far_pair(rng, base, rng.uniform(0.05, 0.5))
        a, c = b.add(base, "farpair"), b.add(other, "farpair")
        b.fact("farpair", a, "far", other_id=c, value=j)
    kinds = sorted(SPAM_GENERATORS)
    for k in range(spam):
        kind = kinds[k % len(kinds)]
        b.fact("quality", b.add(SPAM_GENERATORS[kind](rng, "en"), kind), "low")
    for _ in range(pii):
        text, planted, looks = pii_page(rng)
        d = b.add(text, "pii")
        for t, s in planted:
            b.fact("pii", d, t, text=s)
        for t, s in looks:
            b.fact("lookalike", d, t, text=s)
    for _ in range(code):
        b.add(code_page(rng), "code")
    mdomains = [f"math{i}.example.edu" for i in range(math_domains)]
    for _ in range(math):
        b.fact("topic", b.add(math_page(rng), "math", domain=rng.choice(mdomains)), "math")
    shared = boilerplate_sentences(rng, 12)
    seen: set[int] = set()
    for _ in range(boilerplate_docs):
        sents = [natural_sentence(rng, "en") for _ in range(rng.randint(6, 12))]
        planted = []
        for k in rng.sample(range(len(shared)), rng.randint(1, 2)):
            edit = k in seen and rng.random() < 0.25
            planted.append((k, edit, boilerplate_variant(rng, shared[k], edit)))
        for _, _, s in planted:
            sents.insert(rng.randrange(len(sents) + 1), s)
        d = b.add("\n".join(sents), "boilerplate")
        for k, edit, s in planted:
            b.fact("boilerplate", d, "repeat" if k in seen else "first", value=float(edit), text=s)
            seen.add(k)
    docs = pa.Table.from_pylist(b.docs, schema=DOC_SCHEMA)
    return docs, pa.Table.from_pylist(b.truth, schema=TRUTH_SCHEMA)


def seed_corpus(rng: random.Random, n: int, kind: str = "natural", lang: str = "en") -> list[str]:
    """Trusted seed texts (not in any crawl): ``natural`` pages of ``lang`` or ``math`` pages."""
    return [math_page(rng) if kind == "math" else natural_page(rng, lang) for _ in range(n)]
