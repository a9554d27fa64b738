"""Peak RSS of crawl_ingest's reading path on one source file (issue 19, item 5).

    python bench/ingest_rss.py FILE [--max-line-bytes N] [--batch-chars N]

Reads FILE as CrawlIngestShard does (streamed decompression, bounded lines, rows in batches
written to a Parquet file as they come) and prints JSON: rows, skipped, baseline and peak RSS
in MiB (``ru_maxrss`` of this process, measured after the imports)."""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyarrow.parquet as pq  # noqa: E402

from deeprecipe.stages import crawl_ingest  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--max-line-bytes", type=int, default=crawl_ingest.DEFAULT_MAX_LINE_BYTES)
    ap.add_argument("--batch-chars", type=int, default=crawl_ingest.BATCH_CHARS)
    a = ap.parse_args()
    base = rss_mib()
    stats = crawl_ingest.IngestStats()
    rows = 0
    with tempfile.TemporaryDirectory() as tmp, open(a.file, "rb") as fh, \
            pq.ParquetWriter(os.path.join(tmp, "part.parquet"), crawl_ingest.DOC_SCHEMA,
                             compression="zstd") as writer:
        for table in crawl_ingest.iter_batches(fh, os.path.basename(a.file), stats,
                                               max_line_bytes=a.max_line_bytes,
                                               batch_chars=a.batch_chars):
            rows += table.num_rows
            writer.write_table(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "skipped": stats.skipped, "baseline_mib": round(base, 1),
                      "peak_mib": round(peak, 1)}))


if __name__ == "__main__":
    main()
