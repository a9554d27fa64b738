"""The generated crawl: deterministic bytes, a real WARC.gz, the promised mix of records."""
from __future__ import annotations

import io
import random
import time
from collections import Counter

import pytest
from warcio.archiveiterator import ArchiveIterator

from stages.synthetic_crawl import (LANGUAGE_PACKS, NON_DOCUMENT_KINDS, SITES, URL_VARIANT_KINDS,
                                    SyntheticCrawlConfig, ground_truth, render_page, url_variant,
                                    write_warc_file)

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
    assert docs.site.nunique() == 10
    variants = set(docs[docs.kind == "url_variant"].variant)
    assert variants == set(URL_VARIANT_KINDS)
    assert set(truth[~truth.is_document].skip_reason) == {"non_response", "http_status", "non_html"}
    # a URL variant or exact duplicate always re-uses an original that is itself in the crawl
    originals = set(docs[docs.kind == "original"].page_id)
    assert set(docs.page_id) == originals


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
    # sentences rarely repeat across pages (later sentence-level dedup must not see false duplicates)
    sentences = Counter(s for p in pages for s in p.article_sentences)
    assert sum(c for c in sentences.values() if c > 1) / sum(sentences.values()) < 0.02
    for page in pages[:40]:
        pack = LANGUAGE_PACKS[page.site.lang]
        assert all(label in page.html for label in pack.nav_labels[:3])
        assert f'lang="{page.site.lang}"' in page.html


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


def test_tiny_profile_size_is_generated_in_seconds():
    config = SyntheticCrawlConfig(seed=0, num_files=4, pages_per_file=500)
    start = time.process_time()  # CPU time of this process: robust to other load on the machine
    total = sum(len(warc_bytes(config, i)[1]) for i in range(config.num_files))
    elapsed = time.process_time() - start
    assert total >= 2000
    assert elapsed < 6.0, f"2,000 pages took {elapsed:.1f} s of CPU"
