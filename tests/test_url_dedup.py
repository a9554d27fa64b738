"""URL normalisation and the map -> reduce -> filter exact URL dedup."""
from __future__ import annotations

import io
import random

import pyarrow as pa
import pytest

from deeprecipe.stages.crawl_ingest import ingest_file
from deeprecipe.stages.generators.crawl_spec import SyntheticCrawlConfig
from deeprecipe.stages.generators.synthetic_crawl import ground_truth, warc_file_name, write_warc_file
from deeprecipe.stages.url_dedup import (DROPS_SCHEMA, KEYS_SCHEMA, dedup_shards, dedup_stats, drop_rows,
                              duplicate_rows, merge_stats, normalize_url, split_by_bucket, url_keys)

CANONICAL = "https://example.com/news/a-story?id=7&page=2"


@pytest.mark.parametrize("variant", [
    "http://example.com/news/a-story?id=7&page=2",                       # scheme folded
    "https://EXAMPLE.com/news/a-story?id=7&page=2",                      # host case
    "HTTPS://Example.Com/news/a-story?id=7&page=2",                      # scheme case
    "https://example.com:443/news/a-story?id=7&page=2",                  # default https port
    "http://example.com:80/news/a-story?id=7&page=2",                    # default http port
    "https://example.com/news/a-story/?id=7&page=2",                     # trailing slash
    "https://example.com/news/a-story?id=7&page=2#comments",             # fragment
    "https://example.com/news/a-story?utm_source=x&utm_medium=email&id=7&page=2",
    "https://example.com/news/a-story?id=7&fbclid=IwAR0abc&page=2",
    "https://example.com/news/a-story?id=7&page=2&gclid=Cj0K&_ga=2.1.2&msclkid=9",
    "https://example.com/news/a-story?page=2&id=7",                      # parameter order
    "https://example.com/news/a%2Dstory?id=7&page=2",                    # encoded unreserved char
    "  https://example.com/news/a-story?id=7&page=2\n",                  # surrounding white space
    "http://EXAMPLE.com:80/news/a-story/?page=2&utm_campaign=z&id=7#top",  # all at once
])
def test_every_variant_kind_maps_to_the_canonical_key(variant):
    assert normalize_url(variant) == normalize_url(CANONICAL) == CANONICAL


def test_path_details():
    assert normalize_url("https://example.com") == "https://example.com/"
    assert normalize_url("https://example.com/") == "https://example.com/"
    assert normalize_url("https://example.com/caf%c3%a9") == normalize_url("https://example.com/café")
    assert normalize_url("https://example.com/a%20b?q=a+b") == normalize_url("https://example.com/a b?q=a%20b")
    assert normalize_url("https://example.com:8443/x") == "https://example.com:8443/x"  # other ports kept
    assert normalize_url("https://bücher.de/") == normalize_url("https://xn--bcher-kva.de/")


@pytest.mark.parametrize("a,b", [
    ("https://example.com/a", "https://example.com/b"),
    ("https://example.com/a?id=1", "https://example.com/a?id=2"),
    ("https://example.com/a", "https://example.org/a"),
    ("https://example.com/A", "https://example.com/a"),          # paths are case-sensitive
    ("https://example.com:8080/a", "https://example.com/a"),
    ("https://example.com/a?x=1", "https://example.com/a"),
    ("https://www.example.com/a", "https://example.com/a"),      # www is a different host
])
def test_distinct_pages_do_not_collide(a, b):
    assert normalize_url(a) != normalize_url(b)


@pytest.mark.parametrize("bad", ["http://[::1", "http://example.com:99999/", "not a url", "", "//x",
                                 "mailto:someone@example.com", "http://exa mple.com/\x00"])
def test_malformed_urls_never_raise_and_fall_back_to_the_stripped_string(bad):
    key = normalize_url(f"  {bad} ")
    assert isinstance(key, str)
    if bad in ("http://[::1", "http://example.com:99999/", "not a url", ""):
        assert key == bad


def test_tracking_parameters_can_be_overridden():
    url = "https://example.com/a?ref=home&utm_source=x&id=3"
    assert normalize_url(url) == "https://example.com/a?id=3&ref=home"
    assert normalize_url(url, tracking_params={"ref"}, tracking_prefixes=()) == \
        "https://example.com/a?id=3&utm_source=x"


def test_every_generated_url_variant_matches_its_canonical_and_pages_stay_apart():
    truth = ground_truth(SyntheticCrawlConfig(seed=2, num_files=3, pages_per_file=200))
    docs = truth[truth.is_document]
    keys = [normalize_url(u) for u in docs.url]
    canonical_keys = [normalize_url(u) for u in docs.canonical_url]
    assert keys == canonical_keys
    # one key per canonical URL, one canonical URL per key (no collisions between pages)
    pairs = set(zip(keys, docs.canonical_url))
    assert len(pairs) == len({k for k, _ in pairs}) == docs.canonical_url.nunique()


# ---------------------------------------------------------------------------- map/reduce/filter

@pytest.fixture(scope="module")
def crawl_shards():
    config = SyntheticCrawlConfig(seed=7, num_files=4, pages_per_file=150)
    tables, rows = [], []
    for i in range(config.num_files):
        buffer = io.BytesIO()
        rows += [dict(r, file_name=warc_file_name(config, i)) for r in write_warc_file(buffer, config, i)]
        buffer.seek(0)
        tables.append(ingest_file(buffer, warc_file_name(config, i))[0])
    return tables, rows


def canonical_of(rows):
    return {(r["file_name"], r["record_offset"]): r["canonical_url"] for r in rows if r["is_document"]}


def test_map_reduce_leaves_one_document_per_canonical_url(crawl_shards):
    tables, rows = crawl_shards
    canon = canonical_of(rows)
    out, stats = dedup_shards(tables, num_buckets=8)
    kept = [canon[(f, o)] for t in out for f, o in zip(t.column("source_file").to_pylist(),
                                                       t.column("source_offset").to_pylist())]
    assert len(kept) == len(set(kept)) == len(set(canon.values()))
    docs_in = sum(t.num_rows for t in tables)
    assert stats == dedup_stats(docs_in, len(kept))
    variants = sum(1 for r in rows if r["kind"] == "url_variant")
    assert stats["duplicates_removed"] == variants > 0
    assert all(o.schema == t.schema for o, t in zip(out, tables))


def test_survivors_do_not_depend_on_the_order_keys_arrive_in(crawl_shards):
    tables, _ = crawl_shards
    keys = [url_keys(t, shard, num_buckets=4) for shard, t in enumerate(tables)]
    reference = {}
    for k in keys:
        for bucket, part in split_by_bucket(k).items():
            reference.setdefault(bucket, []).append(part)
    rng = random.Random(0)
    for bucket, parts in reference.items():
        expected = duplicate_rows(pa.concat_tables(parts))
        for _ in range(3):
            shuffled = pa.concat_tables(parts[::-1] if rng.random() < 0.5 else parts)
            order = list(range(shuffled.num_rows))
            rng.shuffle(order)
            assert duplicate_rows(shuffled.take(order)).equals(expected)
    # the survivor of each key is its smallest (shard, row)
    all_keys = pa.concat_tables(keys).to_pylist()
    drops = {(d["shard"], d["row"]) for parts in reference.values()
             for d in duplicate_rows(pa.concat_tables(parts)).to_pylist()}
    first = {}
    for k in sorted(all_keys, key=lambda k: (k["shard"], k["row"])):
        first.setdefault(k["url_key"], (k["shard"], k["row"]))
    assert {(k["shard"], k["row"]) for k in all_keys} - drops == set(first.values())


def test_reduce_and_filter_edge_cases():
    table = pa.table({"url": ["https://a.com/x", None, "", "http://A.com/x/", "https://a.com/x#f"],
                      "text": ["one", "two", "three", "four", "five"]})
    keys = url_keys(table, shard=3, num_buckets=2)
    assert keys.schema == KEYS_SCHEMA
    assert keys.column("row").to_pylist() == [0, 3, 4]  # no key for missing URLs
    drops = duplicate_rows(keys)
    assert drops.schema == DROPS_SCHEMA and drops.to_pylist() == [{"shard": 3, "row": 3}, {"shard": 3, "row": 4}]
    assert drop_rows(table, 3, drops).column("text").to_pylist() == ["one", "two", "three"]
    assert drop_rows(table, 4, drops).equals(table)  # drops of another shard do not apply
    assert duplicate_rows(KEYS_SCHEMA.empty_table()).num_rows == 0
    assert url_keys(table.slice(0, 0), shard=0).num_rows == 0
    assert merge_stats([dedup_stats(5, 3), dedup_stats(5, 5)]) == {
        "docs_in": 10, "docs_out": 8, "duplicates_removed": 2, "removed_fraction": 0.2}
    with pytest.raises(ValueError):
        url_keys(table, 0, num_buckets=0)


def test_buckets_are_stable_across_processes():
    table = pa.table({"url": ["https://example.com/a"]})
    # a fixed value: blake2b of the key, never Python's per-process salted hash()
    assert url_keys(table, 0, num_buckets=1_000_003).column("bucket").to_pylist() == [270995]
