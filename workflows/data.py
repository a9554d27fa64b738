"""Data stages as thin Luigi tasks: synthetic_crawl → crawl_ingest → url_dedup."""
from __future__ import annotations

import posixpath
from functools import cached_property

import pyarrow as pa
import pyarrow.parquet as pq

from deeprecipe.pipeline.sources import list_source_files, listing_digest
from deeprecipe.pipeline.store import open_filesystem
from deeprecipe.stages import crawl_ingest, html_extract, url_dedup, warc_frames
from deeprecipe.stages.generators import (crawl_languages, crawl_page_parts, crawl_pages, crawl_spec,
                                          synthetic_crawl)

from .base import StageTask, StageWork, part_name, phase_markers, sum_phase, work_of


def source_root(files: list[dict]) -> str:
    """The folder all source files share (the part of the URI that may differ by store)."""
    parents = [f["uri"].rsplit("/", 1)[0] for f in files]
    root = parents[0]
    while any(p != root and not p.startswith(root + "/") for p in parents):
        root = root.rsplit("/", 1)[0]
    return root


def warc_name(i: int) -> str:
    return f"crawl-{i:05d}.warc.gz"


# -- synthetic_crawl: the built-in default source -----------------------------------------
class SyntheticCrawl(StageTask):
    """A generated crawl written as real WARC.gz files, deterministic from the seed: a labelled
    benchmark (near-duplicates at known Jaccard, spam, PII and look-alikes, code, math,
    cross-site boilerplate, contaminated pages) with its ground truth."""
    code_version = "3"  # 3: output independent of PYTHONHASHSEED
    source_objects = (synthetic_crawl, crawl_pages, crawl_page_parts, crawl_spec, crawl_languages)
    config_cls = crawl_spec.SyntheticCrawlConfig

    def build(self, ctx):
        config, truth = self.config, []
        for i in ctx.progress(range(config.num_files), desc="synthetic_crawl"):
            with ctx.fs.open(ctx.output_path(warc_name(i)), "wb") as f:
                truth.extend(synthetic_crawl.write_warc_file(f, config, i))
        ctx.write_table(pa.Table.from_pylist(truth, schema=synthetic_crawl.GROUND_TRUTH_SCHEMA),
                        "ground_truth.parquet")
        return {"records": len(truth)}


# -- crawl_ingest ----------------------------------------------------------------------------
class CrawlIngest(StageTask):
    """WARC/WET/JSONL/Parquet source files → documents (id, url, domain, lang, text, source)."""
    code_version = "3"  # 2: WARC framing checked (bad_framing), rows written in batches; 3: extractor
    source_objects = (crawl_ingest, html_extract, warc_frames)
    config_cls = crawl_ingest.CrawlIngestConfig

    def upstream(self):
        return {} if self.source else {"crawl": self.clone(SyntheticCrawl)}

    @cached_property
    def source_files(self) -> list[dict]:
        """The files to read: the user's --source listing, or the generated crawl's files."""
        if self.source:
            return list_source_files(self.source)
        crawl = self.clone(SyntheticCrawl)
        return [{"uri": crawl.artifact_store.uri(crawl.stage, crawl.version, warc_name(i))}
                for i in range(crawl.stage_params["num_files"])]

    def key_extras(self):
        if not self.source:
            return {}
        return {"source": self.source, "source_listing_sha256": listing_digest(self.source_files)}

    def num_shards(self) -> int:
        per = self.stage_params["files_per_shard"]
        return -(-len(self.source_files) // per)

    def work(self):
        return [self.clone(CrawlIngestShard, unit=i) for i in range(self.num_shards())]

    def build(self, ctx):
        stats = sum_phase(ctx, "shard")
        per_file = stats.pop("per_file", {})  # in the markers only: a manifest stays small
        if not stats.get("docs_out"):  # stop the DAG here, once, with what was skipped where
            raise crawl_ingest.EmptyCorpusError(
                f"crawl_ingest: 0 documents: {crawl_ingest.describe_skips(per_file)}"
                f" (source {self.source or 'generated crawl'}). Nothing downstream can run; fix "
                f"or replace the input files (SKIP_REASONS in stages/crawl_ingest.py says what each "
                f"reason means).")
        bad_at = [a for m in phase_markers(ctx, "shard") for a in m["stats"].get("bad_framing_at", [])]
        if bad_at:
            stats["bad_framing_at"] = bad_at[:100]
        files = self.source_files
        if not self.source:  # the generated crawl: sizes and digests from its manifest
            recorded = {f["name"]: f for f in ctx.input("crawl").manifest["outputs"]["files"]}
            files = [{**f, "bytes": recorded[n]["bytes"], "sha256": recorded[n]["sha256"]}
                     for f in files for n in [f["uri"].rsplit("/", 1)[-1]]]
        return {"rows": stats.get("docs_out", 0), **stats, "source_files": files}


@work_of(CrawlIngest)
class CrawlIngestShard(StageWork):
    def do(self, ctx):
        s: CrawlIngest = self.stage_task
        per = self.params["files_per_shard"]
        files = s.source_files[self.unit * per:(self.unit + 1) * per]
        root = source_root(s.source_files)
        total, per_file, seen_ids, duplicates = crawl_ingest.IngestStats(), {}, set(), 0
        crawl = None if s.source else ctx.input("crawl")
        # rows go to the part file batch by batch: memory is one batch, whatever the file size
        with ctx.fs.open(ctx.output_path(part_name(self.unit)), "wb") as out, \
                pq.ParquetWriter(out, crawl_ingest.DOC_SCHEMA, compression="zstd") as writer:
            for f in ctx.progress(files, desc=f"ingest shard {self.unit}"):
                # ids and source_file are relative to the source root, so they stay the same
                # whichever folder or bucket the files are read from
                name = posixpath.relpath(f["uri"], root)
                stats = crawl_ingest.IngestStats()
                with self._open_source(f["uri"], crawl) as fh:
                    for table in crawl_ingest.iter_batches(fh, name, stats,
                                                           max_chars=self.params["max_chars"],
                                                           extractor=self.params["extractor"]):
                        for doc_id in table.column("id").to_pylist():
                            duplicates += doc_id in seen_ids
                            seen_ids.add(doc_id)
                        writer.write_table(table)
                per_file[name] = {"docs_out": stats.docs_out, **stats.skipped}
                total = total.merge(stats)
        return {**total.as_dict(), "duplicate_ids": duplicates, "per_file": per_file}

    @staticmethod
    def _open_source(uri: str, crawl):
        """A source file: the generated crawl's files checked against its manifest (size and
        sha256), a user's files streamed as they are."""
        if crawl is not None:
            import io
            return io.BytesIO(crawl.read_bytes(uri.rsplit("/", 1)[-1]))
        fs, path = open_filesystem(uri)
        return fs.open(path, "rb")


# -- url_dedup: keys (map) → duplicates per bucket (reduce) → filter each shard -------------
class UrlDedup(StageTask):
    """Exact dedup on normalised URLs; one deterministic survivor (first by shard, row)."""
    code_version = "1"
    source_objects = (url_dedup,)
    config_cls = url_dedup.UrlDedupConfig

    def upstream(self):
        return {"docs": self.clone(CrawlIngest)}

    def num_shards(self) -> int:
        return self.clone(CrawlIngest).num_shards()

    def work(self):
        return [self.clone(UrlDedupFilter, unit=i) for i in range(self.num_shards())]

    def build(self, ctx):
        stats = sum_phase(ctx, "filter")
        stats = url_dedup.dedup_stats(stats.get("docs_in", 0), stats.get("docs_out", 0))
        return {"rows": stats["docs_out"], **stats}


@work_of(UrlDedup)
class UrlDedupKeys(StageWork):
    phase = "keys"

    def do(self, ctx):
        docs = ctx.input("docs")
        table = docs.read_table(part_name(self.unit), columns=["url"])
        keys = url_dedup.url_keys(table, self.unit, self.params["num_buckets"])
        parts = url_dedup.split_by_bucket(keys)
        for b in range(self.params["num_buckets"]):
            part = parts.get(b, url_dedup.KEYS_SCHEMA.empty_table())
            with ctx.fs.open(ctx.scratch_path("keys", f"b{b:05d}", f"s{self.unit:06d}.parquet"), "wb") as f:
                pq.write_table(part, f)
        return {"docs_in": table.num_rows}


@work_of(UrlDedup)
class UrlDedupReduce(StageWork):
    phase = "reduce"

    def requires(self):
        return [self.clone(UrlDedupKeys, unit=i) for i in range(self.stage_task.num_shards())]

    def do(self, ctx):
        tables = []
        for i in range(self.stage_task.num_shards()):
            with ctx.fs.open(ctx.scratch_path("keys", f"b{self.unit:05d}", f"s{i:06d}.parquet"), "rb") as f:
                tables.append(pq.read_table(f))
        drops = url_dedup.duplicate_rows(pa.concat_tables(tables))
        with ctx.fs.open(ctx.scratch_path("drops", f"b{self.unit:05d}.parquet"), "wb") as f:
            pq.write_table(drops, f)
        return {"duplicates": drops.num_rows}


@work_of(UrlDedup)
class UrlDedupFilter(StageWork):
    phase = "filter"

    def requires(self):
        return {**self.stage_task.upstream(),
                "reduce": [self.clone(UrlDedupReduce, unit=b) for b in range(self.params["num_buckets"])]}

    def do(self, ctx):
        import pyarrow.compute as pc
        drops = []
        for b in range(self.params["num_buckets"]):
            with ctx.fs.open(ctx.scratch_path("drops", f"b{b:05d}.parquet"), "rb") as f:
                t = pq.read_table(f)
            drops.append(t.filter(pc.equal(t["shard"], self.unit)))
        table = ctx.input("docs").read_table(part_name(self.unit))
        kept = url_dedup.drop_rows(table, self.unit, pa.concat_tables(drops))
        ctx.write_table(kept, part_name(self.unit))
        return url_dedup.dedup_stats(table.num_rows, kept.num_rows)


