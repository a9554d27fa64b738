"""Precision / recall of every curation stage on the labelled synthetic crawl.

Runs ``RunDataPipeline`` once on the default tiny source (the generated crawl with its ground
truth) and checks each stage's numbers from ``bench/_curation_measure.py`` (documents matched by
URL; ``bench/curation_quality.py`` prints the same numbers). Every check also asserts that it
saw enough labelled cases, so none passes vacuously.
"""
from __future__ import annotations

import pytest

from bench._curation_measure import (Run, decontam_quality, minhash_quality, pii_quality,
                                     quality_filter_quality, simhash_quality, url_dedup_quality)
from tests.conftest import luigi_cmd, run


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Run:
    store = str(tmp_path_factory.mktemp("curation") / "store")
    run(luigi_cmd("--module", "workflows", "RunDataPipeline", "--store", store), timeout=240)
    return Run(store)


# ------------------------------------------------------------------------------- url_dedup

def test_url_dedup_keeps_one_doc_per_canonical_url(pipeline):
    q = url_dedup_quality(pipeline)
    assert q["url_variants"] >= 50 and q["duplicate_url_rows_removed"].total >= 50  # variants were ingested
    assert q["duplicate_url_rows_removed"].value == 1.0
    assert q["one_doc_per_url"] and q["pages_lost"] == 0
    assert q["variant_canonical_kept"].value == 1.0


# --------------------------------------------------------------------------- minhash_dedup

def test_exact_duplicates_are_gone_after_minhash(pipeline):
    q = minhash_quality(pipeline)
    split, collapsed = q["exact_dup_pages_split"], q["exact_dup_pages_collapsed"]
    assert split.total >= 30 and split.hits >= 30  # exact dups sit under URLs of their own
    assert collapsed.value == 1.0


def test_minhash_removes_one_member_of_each_near_duplicate_pair(pipeline):
    q = minhash_quality(pipeline)
    assert q["near_pairs_j90_one_kept"].total >= 20
    assert q["near_pairs_none_kept"] == 0  # a cluster always keeps one page
    assert q["near_pairs_j90_one_kept"].value >= 0.98
    assert q["removed_docs_that_were_duplicates"].value >= 0.99


def test_minhash_keeps_both_pages_of_far_pairs_and_natural_pages(pipeline):
    q = minhash_quality(pipeline)
    assert q["far_pairs_j50_merged"].total >= 20 and q["far_pairs_max_jaccard"] <= 0.5
    assert q["far_pairs_j50_merged"].value <= 0.01
    assert q["natural_pages_kept"].value >= 0.99


# --------------------------------------------------------------------------- simhash_dedup

def test_simhash_removes_repeated_boilerplate_after_its_first_occurrence(pipeline):
    """In (shard, row) order the first copy of each shared notice (per language) stays,
    normalised-exact repeats go; edited repeats are only reported (see simhash_dedup's docstring)."""
    q = simhash_quality(pipeline)
    repeats, firsts = q["notice_repeats_removed"], q["notice_first_copies_kept"]
    print(f"simhash: {q}")
    assert repeats.total >= 30 and firsts.total >= 10
    assert repeats.value >= 0.95
    assert firsts.value >= 0.9


def test_simhash_leaves_natural_text_intact(pipeline):
    """Natural pages lose only sentences that occur earlier in the crawl word for word (the
    generator's template sentences repeat by chance); SimHash false positives <= 1 %."""
    q = simhash_quality(pipeline)
    assert q["natural_sentences_wrongly_removed"].total >= 10_000
    assert q["natural_docs_kept"].value >= 0.99  # no natural page dropped
    assert q["natural_sentences_wrongly_removed"].value <= 0.01


# --------------------------------------------------------------------------- quality_filter

def test_quality_filter_removes_spam_and_keeps_natural_pages(pipeline):
    q = quality_filter_quality(pipeline)
    print(f"quality_filter: {q}")
    assert q["spam_removed"].total >= 20 and q["spam_removed"].value >= 0.95
    assert q["natural_kept"].total >= 500 and q["natural_kept"].value >= 0.9
    assert q["spam_not_in_rejected"] == 0  # rejected docs are kept with reasons


def test_quality_filter_keeps_code_and_math_pages(pipeline):
    """Code pages all failed the prose heuristics (alpha_words, duplicated n-grams) and half the
    math pages did; per-kind exemptions keep them. Math pages can still go by perplexity (the
    top of a small domain's distribution)."""
    q = quality_filter_quality(pipeline)
    assert q["code_kept"].total >= 10 and q["math_kept"].total >= 20
    assert q["code_detected_as_code"].value == 1.0 and q["math_detected_as_math"].value == 1.0
    assert q["other_pages_detected_as_code_or_math"].value <= 0.01
    assert q["code_kept"].value >= 0.9 and q["math_kept"].value >= 0.8


def test_quality_filter_keeps_pii_pages_for_redaction(pipeline):
    q = quality_filter_quality(pipeline)
    assert q["pii_pages_kept"].total >= 20 and q["pii_pages_kept"].value >= 0.9


# ------------------------------------------------------------------------------ pii_redact

def test_pii_redact_removes_planted_pii_and_keeps_lookalikes(pipeline):
    q = pii_quality(pipeline)
    assert q["pages"] >= 10 and q["planted_missing_before_redaction"] == 0  # pages reached redaction with their PII
    assert q["planted_found"].total >= 20 and q["lookalikes_altered"].total >= 20
    assert q["planted_found"].value >= 0.99
    assert q["lookalikes_altered"].value <= 0.01


# --------------------------------------------------------------------------- decontaminate

def test_decontaminate_removes_contaminated_pages_only(pipeline):
    q = decontam_quality(pipeline)
    assert q["contaminated_removed"].total >= 1, "no contaminated page reached decontaminate"
    assert q["contaminated_removed"].value == 1.0
    assert q["natural_kept"].total >= 500 and q["natural_kept"].value == 1.0
    assert q["removed_docs_that_were_contaminated"].value == 1.0  # nothing else removed
