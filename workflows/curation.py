"""Data-curation stages after url_dedup: minhash_dedup → simhash_dedup → quality_filter
(with reference_lm and quality_classifier) → pii_redact → decontaminate. Global steps go
through bucket files as map → reduce, so no process holds the whole corpus."""
from __future__ import annotations

import json
import os
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deeprecipe.stages import (decontaminate, minhash_dedup, ngram_lm, pii_contact, pii_redact,
                               quality_classifier, quality_filter, quality_heuristics,
                               reference_texts, simhash_dedup, text, wordfreq_lm)

from .base import ShardMapStage, StageTask, StageWork, local_copy, part_name, sum_phase, work_of
from .data import SyntheticCrawl, UrlDedup


def write_parquet(ctx, path: str, table: pa.Table) -> None:
    with ctx.fs.open(path, "wb") as f:
        pq.write_table(table, f)


def read_parquet(ctx, path: str, **kw) -> pa.Table:
    with ctx.fs.open(path, "rb") as f:
        return pq.read_table(f, **kw)


def put_local_file(ctx, local: str, name: str) -> None:
    """Copy a file a library wrote locally into the artifact (local or remote store)."""
    ctx.fs.put_file(local, ctx.output_path(name))


# -- minhash_dedup: signatures+bands (per shard) → pairs (per band) → clusters → filter -----
class MinhashDedup(StageTask):
    """Document-level near-duplicates: MinHash LSH over word n-grams, global across shards;
    one survivor per cluster, the smallest (shard, row)."""
    code_version = "2"  # 2: a band of no rows has no pairs (was a crash)
    source_objects = (minhash_dedup, text)
    config_cls = minhash_dedup.MinhashConfig

    def upstream(self):
        return {"docs": self.clone(UrlDedup)}

    def num_shards(self):
        return self.clone(UrlDedup).num_shards()

    def banding(self) -> tuple[int, int]:
        p = self.stage_params
        if p["bands"] and p["rows_per_band"]:
            return p["bands"], p["rows_per_band"]
        return minhash_dedup.choose_bands(p["threshold"], p["num_perm"])

    def work(self):
        return [self.clone(MinhashFilter, unit=i) for i in range(self.num_shards())]

    def build(self, ctx):
        f, c = sum_phase(ctx, "filter"), sum_phase(ctx, "cluster")
        bands, rows = self.banding()
        return {"rows": f.get("docs_out"), **f, **c, "bands": bands, "rows_per_band": rows}


@work_of(MinhashDedup)
class MinhashSignatures(StageWork):
    phase = "signature"

    def do(self, ctx):
        p = self.params
        bands, rows = self.stage_task.banding()
        table = ctx.input("docs").read_table(part_name(self.unit), columns=["text"])
        sig = minhash_dedup.signatures(table, p["num_perm"], p["ngram"], p["seed"],
                                       method=p["shingle_hash"])
        with ctx.fs.open(ctx.scratch_path("sig", f"s{self.unit:06d}.npy"), "wb") as f:
            np.save(f, sig)
        buckets = minhash_dedup.band_bucket_rows(sig, self.unit, None, bands, rows)
        band_col = buckets.column("band").to_numpy()
        for b in range(bands):
            write_parquet(ctx, ctx.scratch_path("bands", f"b{b:04d}", f"s{self.unit:06d}.parquet"),
                          buckets.filter(pa.array(band_col == b)))
        return {"docs": table.num_rows}


@work_of(MinhashDedup)
class MinhashBandPairs(StageWork):
    phase = "band"

    def requires(self):
        return [self.clone(MinhashSignatures, unit=i) for i in range(self.stage_task.num_shards())]

    def do(self, ctx):
        n = self.stage_task.num_shards()
        table = pa.concat_tables([read_parquet(ctx, ctx.scratch_path("bands", f"b{self.unit:04d}", f"s{i:06d}.parquet"))
                                  for i in range(n)])
        pairs = minhash_dedup.duplicate_pairs(table)
        write_parquet(ctx, ctx.scratch_path("pairs", f"b{self.unit:04d}.parquet"), pairs)
        return {"band_pairs": pairs.num_rows}


@work_of(MinhashDedup)
class MinhashClusters(StageWork):
    phase = "cluster"

    def requires(self):
        bands, _ = self.stage_task.banding()
        return [self.clone(MinhashBandPairs, unit=b) for b in range(bands)]

    def do(self, ctx):
        bands, _ = self.stage_task.banding()
        pairs = minhash_dedup.unique_pairs(pa.concat_tables(
            [read_parquet(ctx, ctx.scratch_path("pairs", f"b{b:04d}.parquet")) for b in range(bands)]))
        candidates = pairs.num_rows
        if self.params["verify"] and pairs.num_rows:
            shards = np.unique(np.concatenate([pairs["shard_a"].to_numpy(), pairs["shard_b"].to_numpy()]))
            sigs = {}  # only the rows the pairs need, so memory follows the pairs, not the corpus
            for s in shards:
                path = ctx.scratch_path("sig", f"s{int(s):06d}.npy")
                if ctx.store.is_local:
                    full = np.load(path, mmap_mode="r")
                else:
                    with ctx.fs.open(path, "rb") as f:
                        full = np.load(f)
                sigs[int(s)] = minhash_dedup.SignatureRows.needed_by(pairs, int(s), full)
                del full
            pairs = minhash_dedup.verify_pairs(pairs, sigs, self.params["threshold"])
        clusters = minhash_dedup.union_find_clusters(pairs)
        write_parquet(ctx, ctx.scratch_path("clusters.parquet"), clusters)
        return {"candidate_pairs": candidates, "verified_pairs": pairs.num_rows,
                "clusters": minhash_dedup.count_clusters(clusters)}


@work_of(MinhashDedup)
class MinhashFilter(StageWork):
    phase = "filter"

    def requires(self):
        return {**self.stage_task.upstream(), "clusters": self.clone(MinhashClusters, unit=0)}

    def do(self, ctx):
        table = ctx.input("docs").read_table(part_name(self.unit))
        clusters = read_parquet(ctx, ctx.scratch_path("clusters.parquet"),
                                filters=[("shard", "=", self.unit)])
        stats = minhash_dedup.MinhashStats()
        out = minhash_dedup.drop_rows(table, self.unit, clusters, stats)
        ctx.write_table(out, part_name(self.unit))
        return {"docs_in": stats.docs_in, "docs_out": stats.docs_out, "near_duplicates_removed": stats.removed}


# -- simhash_dedup: sentence hashes (per shard) → near-duplicate sentences → apply ---------
class SimhashDedup(StageTask):
    """Sentence-level near-duplicates (64-bit SimHash, Hamming distance ≤ max_distance):
    repeated boilerplate removed after its first occurrence; documents left short dropped."""
    code_version = "1"
    source_objects = (simhash_dedup, text)
    config_cls = simhash_dedup.SimhashConfig

    def upstream(self):
        return {"docs": self.clone(MinhashDedup)}

    def num_shards(self):
        return self.clone(MinhashDedup).num_shards()

    def work(self):
        return [self.clone(SimhashApply, unit=i) for i in range(self.num_shards())]

    def build(self, ctx):
        s = sum_phase(ctx, "apply")
        return {"rows": s.get("docs_out"), **s, **sum_phase(ctx, "reduce")}


@work_of(SimhashDedup)
class SimhashMap(StageWork):
    phase = "map"

    def do(self, ctx):
        table = ctx.input("docs").read_table(part_name(self.unit), columns=["text"])
        hashes = simhash_dedup.sentence_hashes(table, self.unit, self.params["min_sentence_words"])
        write_parquet(ctx, ctx.scratch_path("hashes", f"s{self.unit:06d}.parquet"), hashes)
        return {"sentences": hashes.num_rows}


@work_of(SimhashDedup)
class SimhashReduce(StageWork):
    phase = "reduce"

    def requires(self):
        return [self.clone(SimhashMap, unit=i) for i in range(self.stage_task.num_shards())]

    def do(self, ctx):
        n = self.stage_task.num_shards()
        hashes = pa.concat_tables([read_parquet(ctx, ctx.scratch_path("hashes", f"s{i:06d}.parquet"))
                                   for i in range(n)])
        marks = simhash_dedup.duplicate_sentences(hashes, self.params["max_distance"])
        write_parquet(ctx, ctx.scratch_path("marks.parquet"), marks)
        return {"sentences_hashed": hashes.num_rows, "duplicate_sentences": marks.num_rows}


@work_of(SimhashDedup)
class SimhashApply(StageWork):
    phase = "apply"

    def requires(self):
        return {**self.stage_task.upstream(), "marks": self.clone(SimhashReduce, unit=0)}

    def do(self, ctx):
        table = ctx.input("docs").read_table(part_name(self.unit))
        marks = read_parquet(ctx, ctx.scratch_path("marks.parquet"), filters=[("shard", "=", self.unit)])
        remover = simhash_dedup.SentenceRemover(min_words=self.params["min_doc_words"])
        out = remover(table, self.unit, marks)
        ctx.write_table(out, part_name(self.unit))
        return remover.stats.as_dict() if hasattr(remover.stats, "as_dict") else dict(vars(remover.stats))


# -- side stages: reference LM and quality classifier ----------------------------------------
class ReferenceLm(StageTask):
    """The reference LM (KenLM's role in CCNet): for a real crawl, per-language unigram tables of
    real-text word frequencies (``wordfreq``); for the generated crawl, a Kneser–Ney word n-gram
    LM trained on the generated trusted seed; or Kneser–Ney on the user's corpus."""
    code_version = "3"  # 3: seed_source auto / wordfreq (real-text, per language)
    source_objects = (ngram_lm, reference_texts, text, wordfreq_lm)
    config_cls = ngram_lm.ReferenceLmConfig

    def resolved_seed_source(self) -> str:
        return ngram_lm.resolve_seed_source(self.stage_params["seed_source"], self.source)

    def key_extras(self):
        src = self.resolved_seed_source()
        return {"seed_source": src, **({"wordfreq": wordfreq_lm.wordfreq_version()} if src == ngram_lm.WORDFREQ else {})}

    def build(self, ctx):
        p, src = self.stage_params, self.resolved_seed_source()
        with tempfile.TemporaryDirectory() as tmp:
            if src == ngram_lm.WORDFREQ:
                lm = wordfreq_lm.UnigramLM.from_wordfreq(p["langs"], p["vocab_words"])
                info = {"model": "wordfreq unigram", "source": lm.source,
                        "languages": sorted(k for k in lm.tables if k != wordfreq_lm.POOLED)}
            else:
                texts = reference_texts.trusted_texts(src, p["seed_docs"])
                lm = ngram_lm.KneserNeyLM.train(texts, order=p["order"])
                info = {"model": f"kneser-ney order {p['order']}", "trained_on_docs": len(texts)}
            lm.save(os.path.join(tmp, "model.json"))
            put_local_file(ctx, os.path.join(tmp, "model.json"), "model.json")
        return {"seed_source": src, **info}


class QualityClassifier(StageTask):
    """fastText quality classifier: positives = trusted seed (generated crawl, or the user's
    corpus) or, on a real crawl, the crawl's documents in the reference LM's head of their
    language (negatives: its tail); otherwise negatives = random crawl pages. Iterated
    DeepSeekMath-style (URL prefixes whose pages score high join the positives)."""
    code_version = "2"  # 2: seed_source auto / lm_head (real-text positives on a real crawl)
    source_objects = (quality_classifier, reference_texts, ngram_lm, wordfreq_lm, quality_filter)
    config_cls = quality_classifier.QualityClassifierConfig

    def upstream(self):
        return {"docs": self.clone(SimhashDedup), "lm": self.clone(ReferenceLm)}

    def resolved_seed_source(self) -> str:
        src = self.stage_params["seed_source"]
        if src == ngram_lm.AUTO:
            return quality_classifier.LM_HEAD if self.source else reference_texts.BUILTIN
        return src

    def key_extras(self):
        return {"seed_source": self.resolved_seed_source()}

    def build(self, ctx):
        p, docs, src = self.stage_params, ctx.input("docs"), self.resolved_seed_source()
        tables, n = [], 0
        for part in docs.parts():
            if n >= p["max_crawl_docs"]:
                break
            t = docs.read_table(part, columns=["url", "text", "lang"])
            tables.append(t.slice(0, p["max_crawl_docs"] - n))
            n += tables[-1].num_rows
        crawl = pa.concat_tables(tables)
        negatives = None
        if src == quality_classifier.LM_HEAD:
            with tempfile.TemporaryDirectory() as tmp:
                lm = ngram_lm.load_reference_lm(local_copy(ctx, ctx.input("lm"), "model.json", Path(tmp)))
            texts, langs = crawl.column("text").to_pylist(), crawl.column("lang").to_pylist()
            head, tail = quality_classifier.lm_head_tail(texts, langs, lm.perplexities(texts, langs),
                                                         p["min_lang_docs"])
            seed = quality_classifier.text_chunks(head, p["chunk_words"])
            negatives = quality_classifier.text_chunks(tail, p["chunk_words"])
        else:
            seed = reference_texts.trusted_texts(src, p["seed_docs"])
        result = quality_classifier.iterate_seed(seed, crawl, rounds=p["rounds"], high_score=p["high_score"],
                                                 min_pages=p["min_pages"], prefix_hq_frac=p["prefix_hq_frac"],
                                                 negatives=negatives)
        with tempfile.TemporaryDirectory() as tmp:
            result.classifier.save(os.path.join(tmp, "model.bin"))
            put_local_file(ctx, os.path.join(tmp, "model.bin"), "model.bin")
        return {"seed_source": src, "rounds": result.rounds, "prefixes_found": sorted(result.prefixes),
                "crawl_docs_scored": crawl.num_rows,
                "crawl_high_fraction": float((result.scores >= p["high_score"]).mean()) if crawl.num_rows else 0.0}


# -- quality_filter: score (per shard) → thresholds per group → filter (per shard) ----------
class QualityFilter(StageTask):
    """Heuristics (Gopher/C4/FineWeb), perplexity under the reference LM with per-group
    percentile thresholds (CCNet head/middle/tail), fastText quality score, language filter.
    Every score is a column; rejected documents are kept in ``rejected-*.parquet`` with their
    reasons, so users can re-threshold without recomputing. Code and math pages (``q_kind``) are
    exempt from the heuristics that are wrong for them (``quality_heuristics.KIND_EXEMPT_RULES``)."""
    code_version = "4"  # 4: per-language thresholds pool small groups; LM scored per language
    source_objects = (quality_filter, quality_heuristics, ngram_lm, quality_classifier, wordfreq_lm)
    config_cls = quality_filter.QualityFilterConfig

    def upstream(self):
        return {"docs": self.clone(SimhashDedup), "lm": self.clone(ReferenceLm),
                "classifier": self.clone(QualityClassifier)}

    def num_shards(self):
        return self.clone(SimhashDedup).num_shards()

    def work(self):
        return [self.clone(QualityFilterShard, unit=i) for i in range(self.num_shards())]

    def build(self, ctx):
        s = sum_phase(ctx, "filter")
        thresholds = json.loads(ctx.fs.cat_file(ctx.scratch_path("thresholds.json")))
        with ctx.fs.open(ctx.output_path("thresholds.json"), "wb") as f:
            f.write(json.dumps(thresholds, indent=2, sort_keys=True).encode())
        return {"rows": s.get("docs_out"), **s}


@work_of(QualityFilter)
class QualityScore(StageWork):
    phase = "score"

    def do(self, ctx):
        table = ctx.input("docs").read_table(part_name(self.unit))
        with tempfile.TemporaryDirectory() as tmp:
            # on a local store the models are read in place (no copy of the fastText .bin per shard)
            lm = ngram_lm.load_reference_lm(local_copy(ctx, ctx.input("lm"), "model.json", Path(tmp)))
            clf = quality_classifier.FastTextClassifier.load(
                local_copy(ctx, ctx.input("classifier"), "model.bin", Path(tmp)))
        scored = quality_filter.score_table(table, lm, clf)
        write_parquet(ctx, ctx.scratch_path("scored", f"s{self.unit:06d}.parquet"), scored)
        return {"docs": table.num_rows}


@work_of(QualityFilter)
class QualityThresholds(StageWork):
    """Per-group perplexity percentiles over all shards (only two columns are read)."""
    phase = "thresholds"

    def requires(self):
        return [self.clone(QualityScore, unit=i) for i in range(self.stage_task.num_shards())]

    def do(self, ctx):
        col = self.params["group_column"]
        t = pa.concat_tables([read_parquet(ctx, ctx.scratch_path("scored", f"s{i:06d}.parquet"), columns=[col, "ppl", "q_kind"])
                              for i in range(self.stage_task.num_shards())])
        thresholds = quality_filter.group_thresholds(
            quality_filter.group_names(t.column(col), t.column("q_kind")), t.column("ppl").to_numpy(), col,
            self.params["ppl_drop_percentile"], self.params["ppl_drop_min_ratio"], self.params["min_group_docs"])
        ctx.fs.pipe_file(ctx.scratch_path("thresholds.json"), json.dumps(thresholds).encode())
        return {"groups": len(thresholds["ppl_drop_above"])}


@work_of(QualityFilter)
class QualityFilterShard(StageWork):
    phase = "filter"

    def requires(self):
        return {**self.stage_task.upstream(), "thresholds": self.clone(QualityThresholds, unit=0)}

    def do(self, ctx):
        p = self.params
        th = json.loads(ctx.fs.cat_file(ctx.scratch_path("thresholds.json")))
        t = read_parquet(ctx, ctx.scratch_path("scored", f"s{self.unit:06d}.parquet"))
        kept, rejected, stats = quality_filter.apply_thresholds(
            t, th, p["group_column"], heuristics=p["heuristics"], ignore_rules=p["ignore_rules"],
            min_hq_score=p["min_hq_score"], langs=p["langs"])
        ctx.write_table(kept, part_name(self.unit))
        ctx.write_table(rejected, f"rejected-{self.unit:05d}.parquet")
        return stats


# -- pii_redact and decontaminate: one task per shard -----------------------------------------
class PiiRedact(ShardMapStage):
    """Emails, phones, IPs, Luhn-valid cards, SSN-like ids, IBANs, street addresses in contact
    blocks and person names → typed placeholders."""
    code_version = "2"
    source_objects = (pii_redact, pii_contact)
    config_cls = pii_redact.PiiRedactConfig
    input_stage = QualityFilter

    def map_shard(self, table, ctx, shard):
        redactor = pii_redact.PiiRedactor(types=tuple(self.stage_params["types"]) or None,
                                          names="contact" if self.stage_params["keep_public_names"] else "all")
        return redactor(table), dict(redactor.stats)


class Decontaminate(ShardMapStage):
    """Drop documents sharing a long word n-gram with any evaluation item."""
    code_version = "1"
    source_objects = (decontaminate, reference_texts, text)
    config_cls = decontaminate.DecontaminateConfig
    input_stage = PiiRedact

    def key_extras(self):
        # the built-in eval set follows the generated crawl's seed (it plants those items)
        return {"builtin_eval_seed": self.clone(SyntheticCrawl).stage_params["seed"]}

    @cached_property
    def eval_index(self) -> decontaminate.EvalIndex:
        p = self.stage_params
        texts = reference_texts.eval_texts(p["eval_sources"], seed=self.key_extras()["builtin_eval_seed"])
        return decontaminate.EvalIndex.build(texts, n=p["ngram"])

    def map_shard(self, table, ctx, shard):
        d = decontaminate.Decontaminator(self.eval_index)
        out = d(table)
        return out, {"docs_removed": d.stats["docs_removed"], "eval_item_hits": dict(d.item_hits)}
