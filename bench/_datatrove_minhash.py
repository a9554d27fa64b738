"""datatrove's MinHash dedup on a Parquet folder, run by ``bench/minhash_vs_datatrove.py`` with
the interpreter of a separate benchmark venv (datatrove is not a deeprecipe dependency)::

    /tmp/dtvenv/bin/python bench/_datatrove_minhash.py CORPUS WORK NUM_SHARDS [default|split]

Stages, each a ``LocalPipelineExecutor`` with ``workers=1`` (ranks run sequentially in this
process): 1 ``ParquetReader -> MinhashDedupSignature`` (one task per shard), 2
``MinhashDedupBuckets`` (one task per bucket), 3 ``MinhashDedupCluster`` (1 task,
``save_cluster_id=True`` for the quality check), 4 ``ParquetReader -> MinhashDedupFilter ->
ParquetWriter`` (one task per shard).  Config: ``MinhashConfig(n_grams=5, num_buckets=14,
hashes_per_bucket=8, seed=1)`` with its default ``HashConfig(precision=64, hash_fc="xxhash")``
and the default English word tokenizer (spaCy ``blank("en")`` inside a ``memory_zone``, i.e.
no lexeme cache across documents) -- FineWeb's setting; ``split`` swaps in ``str.split`` (a
``WordTokenizer`` subclass; ``simplify_text`` has already removed punctuation and normalised
white space) to time datatrove's own hashing / bucket / cluster code without spaCy.
Prints one JSON line:
seconds per stage and the cluster id of every duplicate node.
"""
from __future__ import annotations

import json
import shutil
import struct
import sys
import time
from pathlib import Path

from loguru import logger

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

logger.remove()
logger.add(sys.stderr, level="WARNING")


class SplitTokenizer(WordTokenizer):
    """``str.split`` word tokenizer (the text is already simplified)."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def main(corpus: str, work: str, num_shards: int, tokenizer: str = "default") -> dict:
    w = Path(work)
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1,
                        hash_config=HashConfig(precision=64, hash_fc="xxhash"))
    lang = {"language": SplitTokenizer("en")} if tokenizer == "split" else {}
    reader = lambda: ParquetReader(corpus, glob_pattern="[0-9]*.parquet")  # noqa: E731
    stages = {
        "signature": LocalPipelineExecutor(
            [reader(), MinhashDedupSignature(output_folder=str(w / "sigs"), config=cfg, **lang)],
            tasks=num_shards, workers=1, logging_dir=str(w / "logs/1"), skip_completed=False),
        "buckets": LocalPipelineExecutor(
            [MinhashDedupBuckets(input_folder=str(w / "sigs"), output_folder=str(w / "buckets"), config=cfg)],
            tasks=cfg.num_buckets, workers=1, logging_dir=str(w / "logs/2"), skip_completed=False),
        "cluster": LocalPipelineExecutor(
            [MinhashDedupCluster(input_folder=str(w / "buckets"), output_folder=str(w / "remove"), config=cfg,
                                 save_cluster_id=True)],
            tasks=1, workers=1, logging_dir=str(w / "logs/3"), skip_completed=False),
        "filter": LocalPipelineExecutor(
            [reader(), MinhashDedupFilter(input_folder=str(w / "remove")), ParquetWriter(str(w / "out"))],
            tasks=num_shards, workers=1, logging_dir=str(w / "logs/4"), skip_completed=False),
    }
    seconds = {}
    for name, ex in stages.items():
        t0 = time.perf_counter()
        ex.run()
        seconds[name] = time.perf_counter() - t0
    clusters = {}
    for f in sorted((w / "remove").glob("*.clusters")):
        rank = int(f.name.split(".")[0])
        data = f.read_bytes()
        for doc, cid in struct.iter_unpack("<2I", data):
            clusters[f"{rank}:{doc}"] = cid
    removed = sum(f.stat().st_size // 4 for f in (w / "remove").glob("*.remove"))
    return {"seconds": seconds, "removed": removed, "clusters": clusters}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])))
