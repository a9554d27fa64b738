"""quality_filter's decisions, as three steps over Arrow tables (one Luigi task per shard or one
for all in ``workflows/curation.py``):

1. ``score_table`` (per shard): the heuristic scores and reasons (``quality_heuristics``), the
   perplexity under the reference LM (``ppl``) and the quality classifier's score
   (``hq_score``), one column each.
2. ``group_thresholds`` (over all shards, two columns read): per group (a language, as CCNet
   does, or a domain) CCNet's head / middle / tail perplexity cuts (p33, p67) and the
   perplexity above which a document is dropped. Groups of fewer than ``min_group_docs``
   documents share the thresholds of their pooled documents (CCNet pools rare languages);
   when those are still too few, the thresholds over all documents.
3. ``apply_thresholds`` (per shard): each document's bucket and reasons; kept = no reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deeprecipe.pipeline.config import option
from deeprecipe.stages import ngram_lm, quality_heuristics

UNKNOWN_GROUP = "unknown"  # the group of a document whose group column is empty
POOLED_GROUP = "*pooled*"  # the thresholds of groups too small for their own


@dataclass(frozen=True)
class QualityFilterConfig:
    group_column: str = option("perplexity buckets per: lang (CCNet) | domain")
    min_group_docs: int = option("groups with fewer documents share pooled perplexity "
                                 "thresholds")
    ppl_drop_percentile: float = option("drop documents above this perplexity percentile of "
                                        "their group")
    ppl_drop_min_ratio: float = option("never drop below this multiple of the group's median "
                                       "perplexity")
    min_hq_score: float = option("drop documents whose classifier score is below this (0: keep "
                                 "all)")
    langs: list = option("languages kept; empty keeps all", display_empty="all")
    heuristics: bool = option("apply the Gopher/C4/FineWeb heuristic rules")
    ignore_rules: list = option("heuristic rules not applied to any page (code and math pages "
                                "are already exempt from curly_bracket)")


def group_names(column: pa.ChunkedArray | pa.Array, kinds: pa.ChunkedArray | pa.Array | None = None) -> list[str]:
    """The perplexity group of each document: its ``q_kind`` for code and math pages (a prose
    LM ranks them against each other, not against the prose of their language), else its group
    column's value (``UNKNOWN_GROUP`` where empty)."""
    values = column.to_pylist()
    kinds = kinds.to_pylist() if kinds is not None else [None] * len(values)
    return [k if k in (quality_heuristics.CODE, quality_heuristics.MATH) else g or UNKNOWN_GROUP
            for g, k in zip(values, kinds)]


def score_table(table: pa.Table, lm: ngram_lm.KneserNeyLM, classifier) -> pa.Table:
    """``table`` with the heuristic columns (``q_*``), ``ppl`` (perplexity under ``lm``) and
    ``hq_score`` (``classifier.score``, e.g. ``quality_classifier.FastTextClassifier``)."""
    texts = table.column("text").to_pylist()
    scored = quality_heuristics.HeuristicFilter()(table)
    langs = table.column("lang").to_pylist() if "lang" in table.column_names else None
    scored = scored.append_column("ppl", pa.array(lm.perplexities(texts, langs), pa.float64()))
    return scored.append_column("hq_score", pa.array(classifier.score(texts), pa.float64()))


def group_thresholds(groups: Sequence[str], ppl: np.ndarray, group_column: str,
                     drop_percentile: float, drop_min_ratio: float, min_group_docs: int = 1) -> dict:
    """Per-group perplexity thresholds over the whole corpus (JSON-ready):
    ``ccnet_head_middle[g]`` = (p33, p67) of group g; ``ppl_drop_above[g]`` = the larger of the
    ``drop_percentile`` percentile and ``drop_min_ratio`` x the group's median perplexity (the
    tail of a uniform domain is not junk: drop only what is also far from its median).
    Groups of fewer than ``min_group_docs`` documents are listed in ``pooled_groups`` and get no
    entry: they use ``POOLED_GROUP``'s, computed over their documents together, or over all
    documents when those are fewer than ``min_group_docs`` too."""
    ppl = np.asarray(ppl, dtype=np.float64)
    groups_N = np.array(groups, dtype=object)
    sizes = Counter(groups)
    pooled = sorted(g for g, n in sizes.items() if n < min_group_docs)
    is_pooled = np.isin(groups_N, pooled)
    own = groups_N[~is_pooled]
    ccnet, drop = {}, {}
    pool_mask = is_pooled if is_pooled.sum() >= min_group_docs else np.ones(len(ppl), bool)
    for g, ppl_g in [(g, ppl[groups_N == g]) for g in sorted(set(own))] + [(POOLED_GROUP, ppl[pool_mask])]:
        if not len(ppl_g):
            continue
        lo, hi = np.percentile(ppl_g, (33, 67))
        ccnet[g] = (float(lo), float(hi))
        drop[g] = max(float(np.percentile(ppl_g, drop_percentile)),
                      drop_min_ratio * float(np.median(ppl_g)))
    return {"group_column": group_column, "ccnet_head_middle": ccnet, "ppl_drop_above": drop,
            "pooled_groups": pooled, "min_group_docs": min_group_docs}


def threshold_group(thresholds: dict, group: str) -> str:
    """The key of ``group``'s thresholds: its own, else the pooled ones."""
    return group if group in thresholds["ppl_drop_above"] else POOLED_GROUP


def apply_thresholds(scored: pa.Table, thresholds: dict, group_column: str, heuristics: bool,
                     ignore_rules: Sequence[str], min_hq_score: float, langs: Sequence[str]
                     ) -> tuple[pa.Table, pa.Table, dict]:
    """(kept, rejected, stats) of a ``score_table`` output. Both tables get ``ppl_bucket``
    (head | middle | tail of the document's group) and ``q_reasons`` rewritten to every reason
    it fails: its heuristic rules (when ``heuristics``, less ``ignore_rules``), ``perplexity``
    (above its group's drop threshold), ``hq_score`` (below ``min_hq_score``) and ``lang`` (not
    in ``langs``; empty keeps all). Stats: documents in and out, removals per reason, documents
    in and out per page kind, and the rejected documents' whitespace words."""
    groups = group_names(scored.column(group_column), scored.column("q_kind"))
    ppl, hq = scored.column("ppl").to_numpy(), scored.column("hq_score").to_numpy()
    doc_langs = scored.column("lang").to_pylist()
    bucket, reasons = [], []
    for i, g in enumerate(groups):
        g = threshold_group(thresholds, g)
        lo, hi = thresholds["ccnet_head_middle"][g]
        bucket.append("head" if ppl[i] <= lo else "middle" if ppl[i] <= hi else "tail")
        r = [x for x in scored.column("q_reasons")[i].as_py() if x not in ignore_rules] if heuristics else []
        if ppl[i] > thresholds["ppl_drop_above"][g]:
            r.append("perplexity")
        if hq[i] < min_hq_score:
            r.append("hq_score")
        if langs and doc_langs[i] not in langs:
            r.append("lang")
        reasons.append(r)
    t = scored.append_column("ppl_bucket", pa.array(bucket, pa.string()))
    t = t.set_column(t.schema.get_field_index("q_reasons"), "q_reasons", pa.array(reasons, pa.list_(pa.string())))
    keep = pa.array([not r for r in reasons], pa.bool_())
    kept, rejected = t.filter(keep), t.filter(pc.invert(keep))
    removed: dict[str, int] = {}
    for r in reasons:
        for x in set(r):
            removed[x] = removed.get(x, 0) + 1
    kinds_in, kinds_out = t.column("q_kind").to_pylist(), kept.column("q_kind").to_pylist()
    stats = {"docs_in": t.num_rows, "docs_out": kept.num_rows, "removed_by_reason": removed,
             "docs_in_by_kind": {k: kinds_in.count(k) for k in set(kinds_in)},
             "docs_out_by_kind": {k: kinds_out.count(k) for k in set(kinds_out)},
             "tokens_removed_approx": int(sum(len((x or "").split()) for x in rejected.column("text").to_pylist()))}
    return kept, rejected, stats
