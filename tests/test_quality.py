"""Quality filtering: rule heuristics, reference n-gram LM perplexity, fastText classifier."""

import functools
import random

import numpy as np
import pytest

from stages import quality_heuristics as qh
from stages.labelled_corpus import make_corpus, seed_corpus
from stages.ngram_lm import KneserNeyLM, perplexity_buckets
from stages.quality_classifier import FastTextClassifier, iterate_seed, url_prefix


@functools.lru_cache(maxsize=1)
def corpus():
    return make_corpus(seed=3, natural=200, near_pairs=0, far_pairs=0, spam=100, pii=40, code=20, math=60,
                       boilerplate_docs=0)


def auc(pos, neg):
    """P(score of a random positive > score of a random negative), ties count half."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


# ---- heuristics ----

EXPECTED_REASON = {"spam_lorem": "lorem_ipsum", "spam_keywords": "stop_words", "spam_repeated": "dup_lines",
                   "spam_javascript": "javascript_lines", "spam_bullets": "bullet_lines"}


def test_heuristics_pass_natural_fail_spam_with_the_right_reason():
    docs, _ = corpus()
    step = qh.HeuristicFilter()
    d = step(docs).to_pandas()
    natural_pass = d[d.kind == "natural"].q_pass.mean()
    spam = d[d.kind.str.startswith("spam")]
    spam_fail = 1 - spam.q_pass.mean()
    right = np.mean([EXPECTED_REASON[k] in r for k, r in zip(spam.kind, spam.q_reasons)])
    print(f"heuristics: natural pass {natural_pass:.3f}, spam fail {spam_fail:.3f}, expected reason {right:.3f}; "
          f"{dict(step.stats)}")
    assert natural_pass >= 0.98 and spam_fail >= 0.98 and right >= 0.95
    assert {f"q_{k}" for k in qh.score_text("x", "en")} <= set(d.columns)
    assert step.stats["docs_failed"] == (~d.q_pass).sum()


def test_heuristic_scores_and_rethresholding():
    s = qh.score_text("Hello world.\nHello world.\n• item…\n{ var x = 1 }", "en")
    assert s["dup_line_frac"] == pytest.approx(1 / 4) and s["bullet_line_frac"] == pytest.approx(1 / 4)
    assert s["ellipsis_line_frac"] == pytest.approx(1 / 4) and s["curly_bracket"] == 1.0
    assert s["stop_words"] == 0 and qh.score_text("x", "xx")["stop_words"] == -1  # unknown language: no rule
    text = " ".join(["the cat sat on the mat."] * 20)
    assert "top_2gram" in qh.failed_rules(qh.score_text(text, "en"))
    loose = qh.Thresholds(max_top_ngram_char_frac={}, max_dup_ngram_char_frac={}, min_words=1)
    assert qh.failed_rules(qh.score_text(text, "en"), loose) == []


# ---- n-gram LM ----

@functools.lru_cache(maxsize=1)
def reference_lm():
    return KneserNeyLM.train(seed_corpus(random.Random("lm-seed"), 150, "natural", "en"), order=3)


def test_kneser_ney_is_normalised():
    lm = reference_lm()
    vocab = [g[0] for g in lm.counts[0]]
    for ctx in (["the", "a"], ["unseen", "words"], ["<s>", "<s>"]):
        assert sum(lm.prob(ctx, w) for w in vocab) + lm.prob(ctx, "never-seen") == pytest.approx(1.0, abs=1e-9)


def test_perplexity_ranks_trusted_like_text_above_junk(tmp_path):
    docs, _ = corpus()
    d = docs.to_pandas()
    lm = reference_lm()
    trusted = d[(d.kind == "natural") & (d.lang == "en")].text
    junk = d[d.kind.isin(["spam_keywords", "spam_lorem", "spam_javascript"])].text
    p_trusted, p_junk = lm.perplexities(trusted), lm.perplexities(junk)
    a = auc(-p_trusted, -p_junk)
    print(f"LM: median ppl trusted-like {np.median(p_trusted):.0f}, junk {np.median(p_junk):.0f}, AUC {a:.3f}")
    assert a >= 0.98
    lm.save(tmp_path / "lm.json")
    again = KneserNeyLM.load(tmp_path / "lm.json")
    np.testing.assert_allclose(again.perplexities(trusted[:5]), p_trusted[:5])


def test_perplexity_buckets_per_group():
    ppl = np.r_[np.arange(1, 101), np.arange(1001, 1101)].astype(float)
    groups = ["en"] * 100 + ["de"] * 100
    labels, cuts = perplexity_buckets(ppl, groups)
    assert (labels[:100] == "head").sum() == 33 and (labels[:100] == "tail").sum() == 33
    assert (labels[100:] == "head").sum() == 33 and cuts["de"][0] > 1000


# ---- fastText ----

def test_fasttext_quality_score_separates_high_from_low(tmp_path):
    docs, _ = corpus()
    d = docs.to_pandas()
    rng = random.Random("ft")
    positives = seed_corpus(rng, 150, "natural", "en")
    negatives = rng.sample(d.text.tolist(), 150)  # random crawl
    clf = FastTextClassifier.train(positives, negatives)
    hq = clf.score(d[(d.kind == "natural") & (d.lang == "en")].text.tolist())
    # lexical junk; repeated-line and bullet pages are built from natural sentences, which a
    # bag-of-n-grams model cannot tell apart -- the heuristics catch those (test above)
    lq = clf.score(d[d.kind.isin(["spam_keywords", "spam_lorem", "spam_javascript"])].text.tolist())
    a = auc(hq, lq)
    per_kind = {k: round(float(clf.score(g.text.tolist()).mean()), 3) for k, g in d.groupby("kind")}
    print(f"fastText quality: mean P(hq) natural-en {hq.mean():.3f}, lexical junk {lq.mean():.3f}, AUC {a:.3f}; "
          f"per kind {per_kind}")
    assert a >= 0.95
    clf.save(tmp_path / "clf.bin")
    np.testing.assert_allclose(FastTextClassifier.load(tmp_path / "clf.bin").score(["Lorem ipsum dolor"]),
                               clf.score(["Lorem ipsum dolor"]))


def test_deepseekmath_seed_iteration_finds_math_domains():
    docs, _ = corpus()
    seed = seed_corpus(random.Random("math-seed"), 60, "math")
    result = iterate_seed(seed, docs, rounds=3)
    kinds = docs.column("kind").to_pylist()
    math_prefixes = {url_prefix(u) for u, k in zip(docs.column("url").to_pylist(), kinds) if k == "math"}
    is_math = np.array([k == "math" for k in kinds])
    a = auc(result.scores[is_math], result.scores[~is_math])
    print(f"seed iteration: rounds {result.rounds}; found {len(result.prefixes & math_prefixes)}/"
          f"{len(math_prefixes)} math prefixes, {len(result.prefixes - math_prefixes)} wrong; AUC {a:.3f}")
    assert result.prefixes == math_prefixes
    assert result.rounds[1]["positives"] > result.rounds[0]["positives"]
    assert a >= 0.95


def test_fasttext_training_is_deterministic_on_a_dirty_heap():
    rng = random.Random("det")
    pos, neg = seed_corpus(rng, 40, "math"), seed_corpus(rng, 40, "natural")
    first = FastTextClassifier.train(pos, neg).score(pos[:10] + neg[:10])
    for size in (20, 30, 25):  # free large blocks: raises glibc's mmap threshold, leaves garbage
        junk = np.full(size << 18, np.nan, dtype=np.float32)
        del junk
    second = FastTextClassifier.train(pos, neg).score(pos[:10] + neg[:10])
    np.testing.assert_array_equal(first, second)
