"""The generated crawl: deterministic bytes, a real WARC.gz, the promised mix of records, and the
labelled benchmark pages with their ground truth, checked through ingest."""
from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from warcio.archiveiterator import ArchiveIterator

from deeprecipe.stages.generators import crawl_pages
from deeprecipe.stages.crawl_ingest import ingest_file
from deeprecipe.stages.generators.eval_items import eval_items
from deeprecipe.stages.generators.labelled_pages import SPAM_GENERATORS
from deeprecipe.stages.generators.labelled_prose import shingle_jaccard
from deeprecipe.stages.quality_classifier import url_prefix
from deeprecipe.stages.generators.crawl_languages import LANGUAGE_PACKS
from deeprecipe.stages.generators.crawl_pages import render_natural_page, render_page
from deeprecipe.stages.generators.crawl_spec import (CODE_SITES, MATH_SITES, NON_DOCUMENT_KINDS, SITES, SPAM_SITES,
                                                     URL_VARIANT_KINDS, SyntheticCrawlConfig)
from deeprecipe.stages.generators.synthetic_crawl import (GROUND_TRUTH_SCHEMA, ground_truth, ground_truth_table,
                                                          url_variant, warc_file_name, write_warc_file)

SMALL = SyntheticCrawlConfig(seed=3, num_files=2, pages_per_file=120)


def warc_bytes(config: SyntheticCrawlConfig, file_index: int) -> tuple[bytes, list[dict]]:
    buffer = io.BytesIO()
    rows = write_warc_file(buffer, config, file_index)
    return buffer.getvalue(), rows


@pytest.fixture(scope="module")
def small_file():
    return warc_bytes(SMALL, 0)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(small_file):
    data, rows = small_file
    again, rows_again = warc_bytes(SMALL, 0)
    assert again == data and rows_again == rows
    other, _ = warc_bytes(SyntheticCrawlConfig(seed=4, num_files=2, pages_per_file=120), 0)
    assert other != data
    assert warc_bytes(SMALL, 1)[0] != data


def test_warcio_reads_every_record_at_the_reported_offsets(small_file):
    data, rows = small_file
    iterator = ArchiveIterator(io.BytesIO(data))
    seen = []
    for record in iterator:
        payload = record.content_stream().read()
        seen.append((iterator.get_record_offset(), record.rec_type,
                     record.rec_headers.get_header("WARC-Target-URI") or "",
                     record.rec_headers.get_header("WARC-Date"), payload))
    assert [(r["record_offset"], r["record_type"], r["url"]) for r in rows] == [s[:3] for s in seen]
    assert all(data[r["record_offset"]:r["record_offset"] + 2] == b"\x1f\x8b" for r in rows)  # gzip per record
    dates = {s[3] for s in seen}
    assert all(d.startswith("2024-") for d in dates)  # derived from the seed, not the wall clock
    assert seen[0][1] == "warcinfo"
    html_payloads = [s[4] for s, r in zip(seen, rows) if r["is_document"]]
    assert all(b"<article" in p and b"<nav" in p and b"<footer" in p for p in html_payloads)


def test_crawl_has_every_kind_of_record_language_and_site():
    truth = ground_truth(SyntheticCrawlConfig(seed=0, num_files=3, pages_per_file=250))
    kinds = Counter(truth.kind)
    assert {"original", "exact_dup", "url_variant", "warcinfo", *NON_DOCUMENT_KINDS} <= set(kinds)
    docs = truth[truth.is_document]
    share_dups = (kinds["exact_dup"] + kinds["url_variant"]) / len(docs)
    assert 0.08 < share_dups < 0.25
    assert {"en", "de", "fr", "es"} <= set(docs.lang)
    natural = docs[docs.label == "natural"]
    assert natural.site.nunique() == 10 and set(natural.site) == {s.host for s in SITES[:10]}
    labelled_sites = {s.host for s in (*MATH_SITES[:3], *CODE_SITES, *SPAM_SITES)}
    assert set(docs.site) - set(natural.site) <= labelled_sites
    variants = set(docs[docs.kind == "url_variant"].variant)
    assert variants == set(URL_VARIANT_KINDS)
    assert set(truth[~truth.is_document].skip_reason) == {"non_response", "http_status", "non_html"}
    # a URL variant or exact duplicate always re-uses a natural original that is itself in the crawl
    originals = set(docs[docs.kind == "original"].page_id)
    assert set(docs.page_id) == originals
    assert set(docs[docs.kind != "original"].label) == {"natural"}


def test_exact_duplicates_repeat_the_bytes_of_their_original_under_another_url():
    config = SyntheticCrawlConfig(seed=1, num_files=1, pages_per_file=200)
    data, rows = warc_bytes(config, 0)
    payload_by_offset = {}
    iterator = ArchiveIterator(io.BytesIO(data))
    for record in iterator:
        payload_by_offset[iterator.get_record_offset()] = record.content_stream().read()
    by_page = {}
    for row in rows:
        if row["is_document"]:
            by_page.setdefault(row["page_id"], []).append(row)
    dup_groups = [g for g in by_page.values() if any(r["kind"] == "exact_dup" for r in g)]
    assert dup_groups
    for group in dup_groups:
        assert len({payload_by_offset[r["record_offset"]] for r in group}) == 1
        original_url = render_page(config, group[0]["page_id"]).url
        for row in group:
            if row["kind"] == "exact_dup":
                assert row["canonical_url"] == row["url"] != original_url


def test_pages_are_distinct_deterministic_and_in_their_site_language():
    config = SyntheticCrawlConfig(seed=5)
    pages = [render_page(config, i) for i in range(300)]
    assert len({" ".join(p.article_sentences) for p in pages}) == 300
    assert len({p.url for p in pages}) == 300
    assert render_page(config, 17).html == pages[17].html
    # natural sentences rarely repeat across pages (sentence-level dedup must not see false duplicates)
    sentences = Counter(s for p in pages if p.label == "natural" for s in p.article_sentences)
    assert sum(c for c in sentences.values() if c > 1) / sum(sentences.values()) < 0.02
    for page in pages[:40]:
        pack = LANGUAGE_PACKS[page.site.lang]
        assert all(label in page.html for label in pack.nav_labels[:3])
        assert f'lang="{page.site.lang}"' in page.html


WARC_DIGEST_SCRIPT = """
import hashlib, io
from deeprecipe.stages.generators.crawl_spec import SyntheticCrawlConfig
from deeprecipe.stages.generators.synthetic_crawl import write_warc_file
buf = io.BytesIO()
write_warc_file(buf, SyntheticCrawlConfig(seed=3, pages_per_file=120), 0)
print(hashlib.sha256(buf.getvalue()).hexdigest())
"""


def test_warc_bytes_do_not_depend_on_the_string_hash_seed():
    """Each process hashes str differently (PYTHONHASHSEED): nothing may iterate a set of
    strings into the output, or one version's WARC differs between machines and workers."""
    repo = Path(__file__).resolve().parents[1]
    digests = {subprocess.run([sys.executable, "-c", WARC_DIGEST_SCRIPT], cwd=repo, check=True,
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
               for seed in ("1", "2")}
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_url_variants_change_the_spelling_only():
    rng = random.Random(0)
    url = "https://www.example.com/news/2024/01/a-story-12?id=12&section=news"
    for kind in URL_VARIANT_KINDS:
        variant = url_variant(url, kind, rng)
        assert variant != url
        assert "://" in variant


def test_config_is_validated():
    with pytest.raises(ValueError):
        SyntheticCrawlConfig(num_sites=len(SITES) + 1)
    with pytest.raises(ValueError):
        SyntheticCrawlConfig(non_document_records=("fax",))
    with pytest.raises(ValueError):
        write_warc_file(io.BytesIO(), SMALL, SMALL.num_files)
    with pytest.raises(ValueError, match="natural pages stay at least 60"):
        SyntheticCrawlConfig(spam_rate=0.2)
    with pytest.raises(ValueError):
        SyntheticCrawlConfig(pii_rate=-0.01)
    with pytest.raises(ValueError):
        SyntheticCrawlConfig(math_domains=len(MATH_SITES) + 1)


# ------------------------------------------------------------------------- labelled benchmark

TINY = SyntheticCrawlConfig(seed=0, num_files=4, pages_per_file=400)  # the `tiny` profile's crawl


def clear_generator_caches():
    for cached in (crawl_pages.file_roles, crawl_pages.pair_contents, crawl_pages.boilerplate_pool,
                   crawl_pages.crawl_eval_items, crawl_pages.pack_vocabulary):
        cached.cache_clear()


@pytest.fixture(scope="module")
def tiny():
    """The tiny crawl: ([(file bytes, ground-truth rows)] per file, CPU seconds to generate it)."""
    clear_generator_caches()
    start = time.process_time()  # CPU time of this process: robust to other load on the machine
    files = [warc_bytes(TINY, i) for i in range(TINY.num_files)]
    return files, time.process_time() - start


@pytest.fixture(scope="module")
def tiny_docs(tiny):
    """(ingested document, ground-truth row) per document of the tiny crawl, matched by URL."""
    files, _ = tiny
    pairs = []
    for i, (data, rows) in enumerate(files):
        by_url = {r["url"]: r for r in rows if r["is_document"]}
        table, _ = ingest_file(io.BytesIO(data), warc_file_name(TINY, i))
        pairs += [(doc, by_url[doc["url"]]) for doc in table.to_pylist()]
    return pairs


def truth_frame(tiny):
    return pa.Table.from_pylist([r for _, rows in tiny[0] for r in rows]).to_pandas()


def test_tiny_profile_is_generated_in_seconds(tiny):
    files, cpu_seconds = tiny
    pages = sum(r["is_document"] for _, rows in files for r in rows)
    assert pages == 1600
    assert cpu_seconds <= 3.0, f"1,600 pages took {cpu_seconds:.1f} s of CPU"


def test_tiny_profile_holds_every_label_in_the_promised_numbers(tiny):
    docs = truth_frame(tiny).query("is_document")
    pairs = docs[docs.pair_member == 0]
    assert (pairs.jaccard >= 0.9).sum() >= 20
    assert ((pairs.jaccard >= 0.6) & (pairs.jaccard < 0.9)).sum() >= 10
    far = pairs[pairs.label == "far_pair"]
    assert len(far) >= 20 and far.jaccard.max() <= 0.5
    assert (pairs[pairs.label == "near_dup"].jaccard >= 0.6).all()
    spam = docs[docs.label.str.startswith("spam:")]
    assert len(spam) >= 20
    assert {f"spam:{k.removeprefix('spam_')}" for k in SPAM_GENERATORS} == set(spam.label)
    assert (docs.label == "pii").sum() >= 20 and (docs.label == "contaminated").sum() >= 5
    assert (docs.label == "code").sum() >= 5 and (docs.label == "math").sum() >= 20
    assert (docs.label == "boilerplate").sum() >= 40
    assert (docs.label == "natural").mean() >= 0.6
    labelled = docs[docs.label != "natural"]
    assert labelled.url.is_unique and (labelled.kind == "original").all()  # each labelled page once
    assert {"en", "de", "fr", "es"} <= set(docs[docs.label.isin(["near_dup", "pii", "boilerplate"])].lang)


def test_pairs_span_files_and_sites_and_have_the_labelled_jaccard(tiny):
    docs = truth_frame(tiny).query("is_document and pair_id >= 0")
    assert (docs.groupby("pair_id").size() == 2).all()
    for pair_id, pair in docs.groupby("pair_id"):
        first, second = (pair[pair.pair_member == m].iloc[0] for m in (0, 1))
        assert second.file_index == (first.file_index + 1) % TINY.num_files  # dedup must be global
        assert first.site != second.site and first.lang == second.lang
        page_a, page_b = render_page(TINY, first.page_id), render_page(TINY, second.page_id)
        measured = shingle_jaccard(page_a.article_text(), page_b.article_text())
        assert measured == pytest.approx(first.jaccard, abs=1e-9) and first.jaccard == second.jaccard


def test_ingested_pages_keep_every_planted_item(tiny_docs):
    checked = Counter()
    items = eval_items(TINY.seed, TINY.eval_pool)
    for doc, truth in tiny_docs:
        label, text = truth["label"], doc["text"]
        if label == "pii":
            planted = json.loads(truth["pii_items"]) + json.loads(truth["lookalikes"])
            assert len(planted) == crawl_pages.PII_PER_PAGE + crawl_pages.LOOKALIKES_PER_PAGE
            assert all(value in text for _, value in planted), truth["url"]
        elif label == "contaminated":
            assert items[truth["eval_item"]] in text
        elif label == "boilerplate":
            assert all(sentence in text for _, sentence, _ in json.loads(truth["boilerplate_items"]))
        if label != "natural":
            page = render_page(TINY, truth["page_id"])
            assert all(line in text for line in page.article_sentences), (label, truth["url"])
            checked[label.split(":")[0]] += 1
        if label == "code":
            assert "def " in text and "    return total" in text  # indentation kept from <pre><code>
        if label == "math":
            assert "$" in text
    assert set(checked) == {"near_dup", "far_pair", "spam", "pii", "code", "math", "boilerplate", "contaminated"}
    assert sum(doc["lang"] == truth["lang"] for doc, truth in tiny_docs) / len(tiny_docs) >= 0.98


def test_ingested_pairs_measure_the_labelled_jaccard(tiny_docs):
    members = {}
    for doc, truth in tiny_docs:
        if truth["pair_id"] >= 0:
            members.setdefault(truth["pair_id"], {})[truth["pair_member"]] = (doc["text"], truth["jaccard"])
    assert len(members) >= 60
    for pair in members.values():
        (text_a, label), (text_b, _) = pair[0], pair[1]
        assert shingle_jaccard(text_a, text_b) == pytest.approx(label, abs=0.01)


def test_math_lives_under_a_few_url_prefixes_of_its_own(tiny):
    docs = truth_frame(tiny).query("is_document")
    prefix = docs.url.map(url_prefix)
    math_prefixes = set(prefix[docs.label == "math"])
    assert math_prefixes == {f"{s.host}/{s.section}" for s in MATH_SITES[:TINY.math_domains]}
    assert (docs[prefix.isin(math_prefixes)].label == "math").all()


def test_boilerplate_sentences_repeat_across_sites(tiny):
    docs = truth_frame(tiny).query("label == 'boilerplate'")
    sites_per_sentence = {}
    for site, items in zip(docs.site, docs.boilerplate_items):
        for index, _, _ in json.loads(items):
            sites_per_sentence.setdefault(index, set()).add(site)
    assert len(sites_per_sentence) == TINY.boilerplate_pool
    assert min(len(sites) for sites in sites_per_sentence.values()) >= 3


def test_ground_truth_table_has_one_schema_and_no_nulls(tiny):
    rows = tiny[0][0][1]
    assert pa.Table.from_pylist(rows).schema == GROUND_TRUTH_SCHEMA  # what the workflow writes
    table = ground_truth_table(SMALL)
    assert table.schema == GROUND_TRUTH_SCHEMA
    assert all(table.column(name).null_count == 0 for name in table.column_names)
    assert table.num_rows == sum(len(warc_bytes(SMALL, i)[1]) for i in range(SMALL.num_files))
    non_documents = table.filter(pc.invert(table.column("is_document")))
    assert set(non_documents.column("label").to_pylist()) == {""}


def test_natural_rendering_of_a_labelled_slot_is_a_news_article():
    labelled = [i for i in range(SMALL.pages_per_file) if render_page(SMALL, i).label != "natural"]
    assert labelled
    for page_id in labelled:
        page = render_natural_page(SMALL, page_id)
        assert page.label == "natural" and page.site in SITES[:SMALL.num_sites]


def test_labelled_news_pages_read_like_the_natural_pages_of_their_language(tiny_docs):
    """PII pages and both pages of near / far pairs use only the words natural pages of their
    language use, apart from the planted strings (no generator vocabulary of their own)."""
    from deeprecipe.stages.text import normalise_words
    vocabulary: dict[str, set] = {}
    for doc, truth in tiny_docs:
        if truth["label"] == "natural":
            vocabulary.setdefault(truth["lang"], set()).update(normalise_words(doc["text"]))
    checked = Counter()
    for doc, truth in tiny_docs:
        if truth["label"] not in ("pii", "near_dup", "far_pair"):
            continue
        text = doc["text"]
        for _, value in json.loads(truth["pii_items"]) + json.loads(truth["lookalikes"]):
            text = text.replace(value, " ")
        words = normalise_words(text)
        foreign = [w for w in words if w not in vocabulary[truth["lang"]]]
        assert len(foreign) <= 0.01 * len(words), (truth["url"], foreign[:10])
        checked[truth["label"]] += 1
    assert checked["pii"] >= 20 and checked["near_dup"] >= 40 and checked["far_pair"] >= 40
