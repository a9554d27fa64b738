"""Texts the data stages compare the crawl against: a trusted seed corpus (for the reference
language model and the quality classifier's positives) and evaluation sets (for decontamination).

Sources are named: ``builtin`` (generated here, deterministic, never part of the generated
crawl), or a path/URI of a ``.txt`` (one text per line), ``.jsonl``/``.jsonl.gz`` (a ``text``
field; eval files may instead have ``question``/``prompt`` and ``answer``) or ``.parquet``
(a ``text`` column).
"""
from __future__ import annotations

import gzip
import io
import json

import fsspec
import pyarrow.parquet as pq

BUILTIN = "builtin"
SEED_OFFSET = 1_000_003  # a seed far from the crawl's, so trusted pages never repeat crawl pages


def builtin_trusted_texts(n: int, seed: int = 0) -> list[str]:
    """Clean article bodies from the crawl generator's own languages and vocabulary, drawn
    under a different seed: what a trusted encyclopedia is to Common Crawl, at our scale."""
    from deeprecipe.stages.generators.crawl_pages import render_natural_page
    from deeprecipe.stages.generators.crawl_spec import SyntheticCrawlConfig
    config = SyntheticCrawlConfig(seed=seed + SEED_OFFSET)
    return [" ".join(render_natural_page(config, i).article_sentences) for i in range(n)]


def builtin_eval_texts(seed: int = 0, crawl_eval_items: int = 50) -> list[str]:
    """The evaluation items the pipeline itself uses: held-out reasoning problems (prompt and
    reference solution) and the evaluation items the generated crawl (of this seed) plants."""
    from deeprecipe.stages.generators import eval_items, reasoning_data
    rows = reasoning_data.generate_problems(20, seed=seed)
    texts = [f"{r['prompt']} {r['solution']}" for r in rows if r["split"] != "train"]
    return texts + list(eval_items.eval_items(seed, crawl_eval_items))


def read_texts(uri: str, limit: int | None = None) -> list[str]:
    """Texts of one user file (see the module docstring for the formats)."""
    with fsspec.open(uri, "rb") as f:
        data = f.read()
    name = uri.lower()
    if name.endswith(".gz"):
        data, name = gzip.decompress(data), name[:-3]
    if name.endswith(".parquet"):
        texts = pq.read_table(io.BytesIO(data), columns=["text"])["text"].to_pylist()
    elif name.endswith(".jsonl"):
        texts = []
        for i, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{uri}:{i}: not JSON ({e})") from e
            text = obj.get("text") or " ".join(str(obj[k]) for k in ("question", "prompt", "answer") if obj.get(k))
            if text:
                texts.append(text)
    elif name.endswith(".txt"):
        texts = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    else:
        raise ValueError(f"{uri}: unknown text format; use .txt, .jsonl(.gz) or .parquet")
    return [t for t in texts if t][:limit]


def trusted_texts(source: str, n: int, seed: int = 0) -> list[str]:
    return builtin_trusted_texts(n, seed) if source == BUILTIN else read_texts(source, n)


def eval_texts(sources: list[str] | tuple[str, ...], seed: int = 0) -> list[str]:
    out: list[str] = []
    for s in sources:
        out += builtin_eval_texts(seed) if s == BUILTIN else read_texts(s)
    return out
