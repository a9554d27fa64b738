"""quality_filter's per-group thresholds and keep / reject decision on hand-made scores."""
import numpy as np
import pyarrow as pa

from deeprecipe.stages.quality_filter import apply_thresholds, group_names, group_thresholds


def test_thresholds_are_per_group_and_never_below_the_median_ratio():
    groups = ["a"] * 100 + ["b"] * 100
    ppl = np.concatenate([np.arange(1, 101, dtype=float), np.full(100, 50.0)])
    th = group_thresholds(groups, ppl, "domain", drop_percentile=90, drop_min_ratio=1.5)
    assert th["group_column"] == "domain"
    assert th["ppl_drop_above"]["a"] == np.percentile(np.arange(1, 101), 90)  # 90.1 > 1.5 x 50.5
    assert th["ppl_drop_above"]["b"] == 75.0  # a uniform group: 1.5 x its median, not its p90
    lo, hi = th["ccnet_head_middle"]["a"]
    assert lo < hi and th["ccnet_head_middle"]["b"] == (50.0, 50.0)
    assert group_names(pa.array(["x", None, ""])) == ["x", "unknown", "unknown"]


def test_every_failed_rule_is_a_reason_and_only_clean_documents_are_kept():
    scored = pa.table({
        "text": ["one two", "three four five", "six", "seven eight"],
        "domain": ["a", "a", None, "a"],
        "lang": ["en", "en", "en", "de"],
        "q_kind": ["prose", "prose", "code", "prose"],
        "q_reasons": [[], ["curly_bracket"], ["too_short"], []],
        "ppl": [10.0, 20.0, 500.0, 10.0],
        "hq_score": [0.9, 0.9, 0.1, 0.9],
    })
    th = {"ccnet_head_middle": {"a": [12.0, 30.0], "code": [1.0, 2.0]},  # code pages: a group of their own
          "ppl_drop_above": {"a": 100.0, "code": 100.0}}
    kept, rejected, stats = apply_thresholds(scored, th, "domain", heuristics=True,
                                             ignore_rules=["curly_bracket"], min_hq_score=0.5,
                                             langs=["en"])
    assert kept.column("text").to_pylist() == ["one two", "three four five"]
    assert kept.column("ppl_bucket").to_pylist() == ["head", "middle"]
    assert rejected.column("q_reasons").to_pylist() == [["too_short", "perplexity", "hq_score"], ["lang"]]
    assert stats["removed_by_reason"] == {"too_short": 1, "perplexity": 1, "hq_score": 1, "lang": 1}
    assert stats["docs_in"] == 4 and stats["docs_out"] == 2 and stats["tokens_removed_approx"] == 3
    assert stats["docs_out_by_kind"] == {"prose": 2}
    _, rejected, _ = apply_thresholds(scored, th, "domain", heuristics=False, ignore_rules=[],
                                      min_hq_score=0.0, langs=[])
    assert rejected.column("text").to_pylist() == ["six"]  # only its perplexity is left
