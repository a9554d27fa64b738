"""Precision / recall of every curation stage on the labelled synthetic crawl.

Runs ``RunDataPipeline`` once on the default tiny source (the generated crawl with its ground
truth) and checks each stage's output against the labels, matching documents by URL
(``url_dedup.normalize_url`` folds URL variants onto their page). Every check also asserts that
it saw enough labelled cases, so none passes vacuously.
"""
from __future__ import annotations

import glob
import json
import os
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.minhash_dedup import normalise_words
from stages.simhash_dedup import sentence_spans
from stages.url_dedup import normalize_url
from tests.conftest import luigi_cmd, run

STAGES = ("crawl_ingest", "url_dedup", "minhash_dedup", "simhash_dedup", "quality_filter", "pii_redact",
          "decontaminate")


def stage_folder(store: str, stage: str) -> str:
    folders = [os.path.dirname(m) for m in glob.glob(os.path.join(store, stage, "*", "_MANIFEST.json"))]
    assert len(folders) == 1, f"{stage}: expected one committed version, found {folders}"
    return folders[0]


def read_parts(folder: str, pattern: str = "part-*.parquet", columns=None) -> list[dict]:
    files = sorted(glob.glob(os.path.join(folder, pattern)))
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files]).to_pylist() if files else []


class Run:
    """Stage outputs of one pipeline run, keyed by normalised URL, plus the ground truth."""

    def __init__(self, store: str):
        truth = pq.read_table(os.path.join(stage_folder(store, "synthetic_crawl"), "ground_truth.parquet"))
        self.truth = [r for r in truth.to_pylist() if r["is_document"]]
        self.by_key = {normalize_url(r["url"]): r for r in self.truth}  # variants share their page's row
        self.pages = {r["page_id"]: r for r in self.truth if r["kind"] == "original"}
        self.docs = {s: {normalize_url(d["url"]): d for d in read_parts(stage_folder(store, s))} for s in STAGES}
        self.rows = {s: len(read_parts(stage_folder(store, s), columns=["url"])) for s in STAGES}
        self.rejected = read_parts(stage_folder(store, "quality_filter"), "rejected-*.parquet",
                                   columns=["url", "q_reasons", "ppl"])

    def page_ids(self, stage: str) -> dict[int, int]:
        """page_id -> number of documents of that page in the stage's output."""
        out: dict[int, int] = defaultdict(int)
        for key in self.docs[stage]:
            out[self.by_key[key]["page_id"]] += 1
        return out

    def has_page(self, stage: str, page_id: int) -> bool:
        return normalize_url(self.pages[page_id]["url"]) in self.docs[stage]

    def labelled(self, prefix: str) -> list[dict]:
        return [r for r in self.pages.values() if r["label"].split(":")[0] == prefix]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Run:
    store = str(tmp_path_factory.mktemp("curation") / "store")
    run(luigi_cmd("--module", "workflows", "RunDataPipeline", "--store", store), timeout=240)
    return Run(store)


def rate(hits: int, total: int) -> float:
    return hits / total if total else 0.0


# ------------------------------------------------------------------------------- url_dedup

def test_url_dedup_keeps_one_doc_per_canonical_url(pipeline):
    ingested, kept = pipeline.docs["crawl_ingest"], pipeline.docs["url_dedup"]
    variants = [r for r in pipeline.truth if r["kind"] == "url_variant"]
    assert len(variants) >= 50 and pipeline.rows["crawl_ingest"] - len(ingested) >= 50  # variants were ingested
    assert pipeline.rows["url_dedup"] == len(kept)  # one document per normalised URL
    assert set(kept) == set(ingested)  # and none lost
    for r in variants:
        assert normalize_url(r["canonical_url"]) in kept


def test_exact_duplicates_are_gone_after_minhash(pipeline):
    dup_pages = {r["page_id"] for r in pipeline.truth if r["kind"] == "exact_dup"}
    assert len(dup_pages) >= 30
    before, after = pipeline.page_ids("url_dedup"), pipeline.page_ids("minhash_dedup")
    assert sum(before[p] > 1 for p in dup_pages) >= 30  # exact dups sit under URLs of their own
    assert all(after[p] == 1 for p in dup_pages)


# --------------------------------------------------------------------------- minhash_dedup

def pairs(pipeline: Run, label: str) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for r in pipeline.labelled(label):
        out[r["pair_id"]].append(r)
    return out


def test_minhash_removes_one_member_of_each_near_duplicate_pair(pipeline):
    reached = [ms for ms in pairs(pipeline, "near_dup").values()
               if ms[0]["jaccard"] >= 0.9 and all(pipeline.has_page("url_dedup", m["page_id"]) for m in ms)]
    assert len(reached) >= 20
    survivors = [sum(pipeline.has_page("minhash_dedup", m["page_id"]) for m in ms) for ms in reached]
    assert all(n >= 1 for n in survivors)  # a cluster always keeps one page
    assert rate(sum(n == 1 for n in survivors), len(reached)) >= 0.98


def test_minhash_keeps_both_pages_of_far_pairs_and_natural_pages(pipeline):
    reached = [ms for ms in pairs(pipeline, "far_pair").values()
               if all(pipeline.has_page("url_dedup", m["page_id"]) for m in ms)]
    assert len(reached) >= 20 and all(ms[0]["jaccard"] <= 0.5 for ms in reached)
    merged = sum(not all(pipeline.has_page("minhash_dedup", m["page_id"]) for m in ms) for ms in reached)
    assert rate(merged, len(reached)) <= 0.01
    natural = [r for r in pipeline.labelled("natural") if pipeline.has_page("url_dedup", r["page_id"])]
    after = pipeline.page_ids("minhash_dedup")
    assert rate(sum(after[r["page_id"]] >= 1 for r in natural), len(natural)) >= 0.99


# --------------------------------------------------------------------------- simhash_dedup

def test_simhash_removes_repeated_boilerplate_after_its_first_occurrence(pipeline):
    """Occurrences in crawl order (= simhash's (shard, row) order): the first copy of each shared
    notice (per language) stays, normalised-exact repeats go; edited repeats are only reported."""
    docs_in, docs_out = pipeline.docs["minhash_dedup"], pipeline.docs["simhash_dedup"]
    pages = sorted((r for r in pipeline.labelled("boilerplate") if normalize_url(r["url"]) in docs_in),
                   key=lambda r: (r["file_index"], r["record_index"]))
    seen: set[str] = set()
    first_kept, firsts, repeat_removed, repeats = 0, 0, 0, 0
    for r in pages:
        out = docs_out.get(normalize_url(r["url"]))
        out_norm = " ".join(normalise_words(out["text"])) if out else ""
        for _, text, edited in json.loads(r["boilerplate_items"]):
            norm = " ".join(normalise_words(text))
            present = out is not None and norm in out_norm
            if norm not in seen:
                seen.add(norm)
                if not edited:
                    firsts += 1
                    first_kept += present
            elif not edited:
                repeats += 1
                repeat_removed += not present
    assert repeats >= 30 and firsts >= 10
    assert rate(repeat_removed, repeats) >= 0.95
    assert rate(first_kept, firsts) >= 0.9


def test_simhash_leaves_natural_text_intact(pipeline):
    """Natural pages lose only sentences that occur earlier in the crawl word for word (the
    generator's template sentences repeat by chance); SimHash false positives <= 1 %."""
    docs_in, docs_out = pipeline.docs["minhash_dedup"], pipeline.docs["simhash_dedup"]
    ordered = sorted(docs_in, key=lambda k: (pipeline.by_key[k]["file_index"], pipeline.by_key[k]["record_index"]))
    seen: set[str] = set()
    natural_sentences, false_removals, natural_docs = 0, 0, 0
    for key in ordered:
        text = docs_in[key]["text"]
        sentences = [" ".join(normalise_words(text[s:e])) for s, e in sentence_spans(text)]
        if pipeline.by_key[key]["label"] == "natural" and key in docs_out:
            natural_docs += 1
            kept = " ".join(normalise_words(docs_out[key]["text"]))
            for s in sentences:
                if len(s.split()) >= 5:
                    natural_sentences += 1
                    false_removals += s not in kept and s not in seen
        seen.update(sentences)
    natural_in = sum(pipeline.by_key[k]["label"] == "natural" for k in docs_in)
    assert natural_sentences >= 10_000
    assert rate(natural_docs, natural_in) >= 0.99  # no natural page dropped
    assert rate(false_removals, natural_sentences) <= 0.01


# --------------------------------------------------------------------------- quality_filter

def reached(pipeline: Run, stage: str, rows: list[dict]) -> list[dict]:
    return [r for r in rows if normalize_url(r["url"]) in pipeline.docs[stage]]


def test_quality_filter_removes_spam_and_keeps_natural_pages(pipeline):
    spam = reached(pipeline, "simhash_dedup", pipeline.labelled("spam"))
    assert len(spam) >= 20
    assert rate(len(spam) - len(reached(pipeline, "quality_filter", spam)), len(spam)) >= 0.95
    natural = reached(pipeline, "simhash_dedup", pipeline.labelled("natural"))
    assert len(natural) >= 500
    assert rate(len(reached(pipeline, "quality_filter", natural)), len(natural)) >= 0.9
    rejected = {normalize_url(r["url"]) for r in pipeline.rejected}
    assert {normalize_url(r["url"]) for r in spam} <= rejected  # rejected docs are kept with reasons


def test_quality_filter_keeps_pii_pages_for_redaction(pipeline):
    pii = reached(pipeline, "simhash_dedup", pipeline.labelled("pii"))
    assert len(pii) >= 20
    assert rate(len(reached(pipeline, "pii_redact", pii)), len(pii)) >= 0.9


# ------------------------------------------------------------------------------ pii_redact

def test_pii_redact_removes_planted_pii_and_keeps_lookalikes(pipeline):
    pages = reached(pipeline, "pii_redact", pipeline.labelled("pii"))
    assert len(pages) >= 10
    planted = looks = found = altered = 0
    for r in pages:
        before = pipeline.docs["quality_filter"][normalize_url(r["url"])]["text"]
        after = pipeline.docs["pii_redact"][normalize_url(r["url"])]["text"]
        for _, value in json.loads(r["pii_items"]):
            assert value in before  # the page reached redaction with its PII
            planted += 1
            found += value not in after
        for _, value in json.loads(r["lookalikes"]):
            looks += 1
            altered += value not in after
    assert planted >= 20 and looks >= 20
    assert rate(found, planted) >= 0.99
    assert rate(altered, looks) <= 0.01


# --------------------------------------------------------------------------- decontaminate

def test_decontaminate_removes_contaminated_pages_only(pipeline):
    contaminated = reached(pipeline, "pii_redact", pipeline.labelled("contaminated"))
    assert contaminated, "no contaminated page reached decontaminate"
    assert not reached(pipeline, "decontaminate", contaminated)
    natural = reached(pipeline, "pii_redact", pipeline.labelled("natural"))
    assert len(natural) >= 500
    assert len(reached(pipeline, "decontaminate", natural)) == len(natural)
    removed = set(pipeline.docs["pii_redact"]) - set(pipeline.docs["decontaminate"])
    assert removed == {normalize_url(r["url"]) for r in contaminated}  # nothing else removed
