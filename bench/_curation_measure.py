"""Precision / recall of every curation stage against the labelled crawl's ground truth.

Shared by ``tests/test_curation_quality.py`` (which asserts thresholds on these numbers) and
``bench/curation_quality.py`` (which prints them). ``Run(store)`` reads one finished
``RunDataPipeline`` store: every stage's output keyed by normalised URL
(``url_dedup.normalize_url`` folds URL variants onto their page) plus the ground truth; each
``*_quality(run)`` function returns that stage's numbers as ``Ratio`` (hits / total) or counts,
so a check can also see how many labelled cases it had.
"""
from __future__ import annotations

import glob
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from deeprecipe.stages.text import normalise_words
from deeprecipe.stages.pii_redact import PLACEHOLDERS
from deeprecipe.stages.simhash_dedup import sentence_spans
from deeprecipe.stages.url_dedup import normalize_url

STAGES = ("crawl_ingest", "url_dedup", "minhash_dedup", "simhash_dedup", "quality_filter", "pii_redact",
          "decontaminate")
MIN_SENTENCE_WORDS = 5  # sentences shorter than simhash_dedup's default are never hashed


@dataclass(frozen=True)
class Ratio:
    """``hits`` of ``total`` labelled cases; ``value`` is 0.0 when there were none."""
    hits: int
    total: int

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.value:.3f} ({self.hits}/{self.total})"


def stage_folder(store: str, stage: str) -> str:
    folders = [os.path.dirname(m) for m in glob.glob(os.path.join(store, stage, "*", "_MANIFEST.json"))]
    assert len(folders) == 1, f"{stage}: expected one committed version, found {folders}"
    return folders[0]


def read_parts(folder: str, pattern: str = "part-*.parquet", columns=None) -> list[dict]:
    files = sorted(glob.glob(os.path.join(folder, pattern)))
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files]).to_pylist() if files else []


class Run:
    """Stage outputs of one pipeline run, keyed by normalised URL, plus the ground truth.

    ``docs[stage]`` keeps the stage's (shard, row) order (part files in order), the order in which
    simhash_dedup decides which copy of a sentence comes first.  (The ground-truth row of a URL
    can be a later re-crawl of the page, so its file/record index is not that order.)
    """

    def __init__(self, store: str):
        truth = pq.read_table(os.path.join(stage_folder(store, "synthetic_crawl"), "ground_truth.parquet"))
        self.store = store
        self.truth = [r for r in truth.to_pylist() if r["is_document"]]
        self.by_key = {normalize_url(r["url"]): r for r in self.truth}  # variants share their page's row
        self.pages = {r["page_id"]: r for r in self.truth if r["kind"] == "original"}
        self.docs = {s: {normalize_url(d["url"]): d for d in read_parts(stage_folder(store, s))} for s in STAGES}
        self.rows = {s: len(read_parts(stage_folder(store, s), columns=["url"])) for s in STAGES}
        folder = stage_folder(store, "quality_filter")
        columns = [c for c in ("url", "q_reasons", "ppl", "q_kind")
                   if c in pq.read_schema(sorted(glob.glob(os.path.join(folder, "rejected-*.parquet")))[0]).names]
        self.rejected = read_parts(folder, "rejected-*.parquet", columns=columns)

    def page_ids(self, stage: str, docs: dict | None = None) -> dict[int, int]:
        """page_id -> number of documents of that page in the stage's output (or in ``docs``)."""
        out: dict[int, int] = defaultdict(int)
        for key in self.docs[stage] if docs is None else docs:
            out[self.by_key[key]["page_id"]] += 1
        return out

    def has_page(self, stage: str, page_id: int) -> bool:
        return normalize_url(self.pages[page_id]["url"]) in self.docs[stage]

    def labelled(self, prefix: str) -> list[dict]:
        return [r for r in self.pages.values() if r["label"].split(":")[0] == prefix]

    def label_of(self, key: str) -> str:
        return self.by_key[key]["label"].split(":")[0]



def reached(run: Run, stage: str, rows: list[dict]) -> list[dict]:
    """The labelled pages of ``rows`` present in ``stage``'s output."""
    return [r for r in rows if normalize_url(r["url"]) in run.docs[stage]]


def pairs(run: Run, label: str) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for r in run.labelled(label):
        out[r["pair_id"]].append(r)
    return out


def kept(run: Run, before: str, after: str, rows: list[dict]) -> Ratio:
    """Pages of ``rows`` that reached ``before`` and are still in ``after``."""
    came = reached(run, before, rows)
    return Ratio(len(reached(run, after, came)), len(came))


def removed(run: Run, before: str, after: str, rows: list[dict]) -> Ratio:
    came = reached(run, before, rows)
    return Ratio(len(came) - len(reached(run, after, came)), len(came))


def normalised(text: str) -> str:
    return " ".join(normalise_words(text))


# ------------------------------------------------------------------------------- url_dedup

def url_dedup_quality(run: Run) -> dict:
    """Duplicate-URL rows removed (recall), canonical pages lost (1 - precision)."""
    ingested, out = run.docs["crawl_ingest"], run.docs["url_dedup"]
    variants = [r for r in run.truth if r["kind"] == "url_variant"]
    duplicate_rows = run.rows["crawl_ingest"] - len(ingested)  # rows whose normalised URL came before
    removed_rows = run.rows["crawl_ingest"] - run.rows["url_dedup"]
    lost = len(set(ingested) - set(out))
    return {"docs_in": run.rows["crawl_ingest"], "docs_out": run.rows["url_dedup"],
            "url_variants": len(variants), "duplicate_url_rows_removed": Ratio(removed_rows, duplicate_rows),
            "removed_rows_that_were_duplicates": Ratio(removed_rows - lost, removed_rows),
            "one_doc_per_url": run.rows["url_dedup"] == len(out), "pages_lost": lost,
            "variant_canonical_kept": Ratio(sum(normalize_url(r["canonical_url"]) in out for r in variants),
                                            len(variants))}


# --------------------------------------------------------------------------- minhash_dedup

def _near_pairs_reached(run: Run, lo: float, hi: float) -> list[list[dict]]:
    return [ms for ms in pairs(run, "near_dup").values()
            if lo <= ms[0]["jaccard"] < hi and all(run.has_page("url_dedup", m["page_id"]) for m in ms)]


def _one_survivor(run: Run, members: list[list[dict]]) -> tuple[Ratio, int]:
    survivors = [sum(run.has_page("minhash_dedup", m["page_id"]) for m in ms) for ms in members]
    return Ratio(sum(n == 1 for n in survivors), len(members)), sum(n == 0 for n in survivors)


def _minhash_removal_justified(run: Run, key: str, after: dict[int, int], near: dict[int, list[dict]]) -> bool:
    """A removed document is a true duplicate: its page survives in another document, or it is
    one page of a near-duplicate pair (``near``: pair_id -> pages) whose other page survives."""
    row = run.by_key[key]
    if after[row["page_id"]] >= 1:
        return True
    return row["label"] == "near_dup" and any(after[m["page_id"]] >= 1 for m in near[row["pair_id"]])


def minhash_quality(run: Run) -> dict:
    """Exact duplicates collapsed, near pairs (J >= 0.9) reduced to one page, far pairs (J <= 0.5)
    merged, natural pages lost, and the share of removals that were true duplicates."""
    dup_pages = {r["page_id"] for r in run.truth if r["kind"] == "exact_dup"}
    before, after = run.page_ids("url_dedup"), run.page_ids("minhash_dedup")
    high, high_none = _one_survivor(run, _near_pairs_reached(run, 0.9, 1.01))
    mid, mid_none = _one_survivor(run, _near_pairs_reached(run, 0.0, 0.9))
    far = [ms for ms in pairs(run, "far_pair").values()
           if all(run.has_page("url_dedup", m["page_id"]) for m in ms)]
    merged = sum(not all(run.has_page("minhash_dedup", m["page_id"]) for m in ms) for ms in far)
    natural = [r for r in run.labelled("natural") if run.has_page("url_dedup", r["page_id"])]
    gone = set(run.docs["url_dedup"]) - set(run.docs["minhash_dedup"])
    near = pairs(run, "near_dup")
    return {"docs_in": run.rows["url_dedup"], "docs_out": run.rows["minhash_dedup"],
            "exact_dup_pages_split": Ratio(sum(before[p] > 1 for p in dup_pages), len(dup_pages)),
            "exact_dup_pages_collapsed": Ratio(sum(after[p] == 1 for p in dup_pages), len(dup_pages)),
            "near_pairs_j90_one_kept": high, "near_pairs_j90_none_kept": high_none,
            "near_pairs_j60_90_one_kept": mid, "near_pairs_none_kept": high_none + mid_none,
            "far_pairs_max_jaccard": max((ms[0]["jaccard"] for ms in far), default=0.0),
            "far_pairs_j50_merged": Ratio(merged, len(far)),
            "natural_pages_kept": Ratio(sum(after[r["page_id"]] >= 1 for r in natural), len(natural)),
            "removed_docs_that_were_duplicates": Ratio(sum(_minhash_removal_justified(run, k, after, near)
                                                           for k in gone), len(gone))}


# --------------------------------------------------------------------------- simhash_dedup

def _sentences(text: str) -> list[str]:
    return [normalised(text[s:e]) for s, e in sentence_spans(text)]


def simhash_quality(run: Run, docs_out: dict | None = None) -> dict:
    """Sentence-level: in crawl order, the first copy of each shared notice (per language) stays,
    normalised-exact repeats go; one-word-edited copies of a notice seen earlier (same pool
    entry and language) are reported; natural pages lose only sentences that occur earlier word
    for word; a removal is justified when the sentence occurred earlier (normalised) or is a
    planted notice. ``docs_out``: another simhash output keyed like ``run.docs`` (a parameter
    sweep); default: the pipeline's."""
    docs_in = run.docs["minhash_dedup"]
    docs_out = run.docs["simhash_dedup"] if docs_out is None else docs_out
    planted = set()
    for r in run.labelled("boilerplate"):
        planted.update(normalised(text) for _, text, _ in json.loads(r["boilerplate_items"]))
    notice_seen: set[str] = set()  # normalised notice texts
    pool_seen: set[tuple[int, str]] = set()  # (pool entry, language) of notices seen
    firsts, repeats, edits = [0, 0], [0, 0], [0, 0]  # [hits, total]
    seen: set[str] = set()
    natural, natural_docs, dropped = [0, 0], [0, 0], Counter()
    justified, removals = 0, 0
    for key in docs_in:  # (shard, row) order
        out = docs_out.get(key)
        out_norm = normalised(out["text"]) if out else ""
        label = run.label_of(key)
        if out is None:
            dropped[label] += 1
        if label == "boilerplate":
            for entry, text, edited in json.loads(run.by_key[key]["boilerplate_items"]):
                norm, pool_key = normalised(text), (entry, run.by_key[key]["lang"])
                present = out is not None and norm in out_norm
                if edited and pool_key in pool_seen:
                    edits[0] += not present
                    edits[1] += 1
                elif norm not in notice_seen:
                    if not edited:
                        firsts[0] += present
                        firsts[1] += 1
                elif not edited:
                    repeats[0] += not present
                    repeats[1] += 1
                notice_seen.add(norm)
                pool_seen.add(pool_key)
        sentences = _sentences(docs_in[key]["text"])
        if out is not None:
            for s in sentences:
                if len(s.split()) >= MIN_SENTENCE_WORDS and s not in out_norm:
                    removals += 1
                    justified += s in seen or s in planted
                    if label == "natural":
                        natural[0] += s not in seen
            if label == "natural":
                natural[1] += sum(len(s.split()) >= MIN_SENTENCE_WORDS for s in sentences)
        if label == "natural":
            natural_docs[0] += out is not None
            natural_docs[1] += 1
        seen.update(sentences)
    return {"docs_in": len(docs_in), "docs_out": len(docs_out), "docs_dropped": dict(dropped),
            "notice_repeats_removed": Ratio(*repeats), "notice_first_copies_kept": Ratio(*firsts),
            "edited_notice_repeats_removed": Ratio(*edits),
            "natural_sentences_wrongly_removed": Ratio(*natural), "natural_docs_kept": Ratio(*natural_docs),
            "removed_sentences_justified": Ratio(justified, removals)}


# --------------------------------------------------------------------------- quality_filter

def quality_filter_quality(run: Run) -> dict:
    """Spam removed; natural, code, math, PII pages kept; the share of removals that were spam;
    detected kind (``q_kind``) of code and math pages; why non-spam pages were rejected."""
    def labelled_kept(prefix):
        return kept(run, "simhash_dedup", "quality_filter", run.labelled(prefix))

    spam = reached(run, "simhash_dedup", run.labelled("spam"))
    rejected = {normalize_url(r["url"]): r for r in run.rejected}
    gone = set(run.docs["simhash_dedup"]) - set(run.docs["quality_filter"])
    kind = {**{k: d.get("q_kind") for k, d in run.docs["quality_filter"].items()},
            **{k: r.get("q_kind") for k, r in rejected.items()}}
    reasons = Counter((run.label_of(k), x) for k, r in rejected.items() if run.label_of(k) != "spam"
                      for x in r["q_reasons"])

    def detected(prefix):
        pages = [normalize_url(r["url"]) for r in reached(run, "simhash_dedup", run.labelled(prefix))]
        return Ratio(sum(kind.get(k) == prefix for k in pages), len(pages))

    prose_as = Counter(kind.get(k) for k in run.docs["simhash_dedup"]
                       if run.label_of(k) not in ("code", "math", "spam"))
    return {"docs_in": run.rows["simhash_dedup"], "docs_out": run.rows["quality_filter"],
            "spam_removed": removed(run, "simhash_dedup", "quality_filter", spam),
            "spam_not_in_rejected": sum(normalize_url(r["url"]) not in rejected for r in spam),
            "natural_kept": labelled_kept("natural"), "code_kept": labelled_kept("code"),
            "math_kept": labelled_kept("math"), "pii_pages_kept": labelled_kept("pii"),
            "removed_docs_that_were_spam": Ratio(sum(run.label_of(k) == "spam" for k in gone), len(gone)),
            "code_detected_as_code": detected("code"), "math_detected_as_math": detected("math"),
            "other_pages_detected_as_code_or_math": Ratio(prose_as["code"] + prose_as["math"],
                                                          sum(prose_as.values())),
            "non_spam_rejections_by_label_reason": dict(reasons.most_common())}


# ------------------------------------------------------------------------------ pii_redact

def pii_quality(run: Run) -> dict:
    """Planted PII replaced (recall per type), look-alikes altered, placeholders that did not
    replace a planted item (false positives, over all pages)."""
    pages = reached(run, "pii_redact", run.labelled("pii"))
    found, planted, missing_before = Counter(), Counter(), 0
    looks, altered = 0, 0
    for r in pages:
        before = run.docs["quality_filter"][normalize_url(r["url"])]["text"]
        after = run.docs["pii_redact"][normalize_url(r["url"])]["text"]
        for kind, value in json.loads(r["pii_items"]):
            missing_before += value not in before
            planted[kind] += 1
            found[kind] += value not in after
        for _, value in json.loads(r["lookalikes"]):
            looks += 1
            altered += value not in after
    placeholders = Counter()
    for key, doc in run.docs["pii_redact"].items():
        before = run.docs["quality_filter"][key]["text"]
        for kind in PLACEHOLDERS:
            placeholders[kind] += doc["text"].count(f"<{kind}>") - before.count(f"<{kind}>")
    return {"docs_in": run.rows["quality_filter"], "docs_out": run.rows["pii_redact"], "pages": len(pages),
            "planted_found": Ratio(sum(found.values()), sum(planted.values())),
            "planted_found_by_type": {k: Ratio(found[k], planted[k]) for k in sorted(planted)},
            "planted_missing_before_redaction": missing_before,
            "lookalikes_altered": Ratio(altered, looks),
            "placeholders_for_planted": Ratio(sum(found.values()), sum(placeholders.values()))}


# --------------------------------------------------------------------------- decontaminate

def decontam_quality(run: Run) -> dict:
    """Contaminated pages removed (recall), natural pages kept, removals that were contaminated."""
    contaminated = reached(run, "pii_redact", run.labelled("contaminated"))
    gone = set(run.docs["pii_redact"]) - set(run.docs["decontaminate"])
    truth = {normalize_url(r["url"]) for r in contaminated}
    return {"docs_in": run.rows["pii_redact"], "docs_out": run.rows["decontaminate"],
            "contaminated_removed": removed(run, "pii_redact", "decontaminate", contaminated),
            "natural_kept": kept(run, "pii_redact", "decontaminate", run.labelled("natural")),
            "removed_docs_that_were_contaminated": Ratio(len(gone & truth), len(gone))}
