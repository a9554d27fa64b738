"""Peak memory of our MinHash dedup per step, run the way the workflow runs it: one process per
shard (map, filter), per band (reduce) and one for the global cluster step, sequentially, with
signatures / bucket files / pair files / clusters written to disk between steps
(``bench/_minhash_common.py``).  Max RSS of each child comes from ``os.wait4``.

The corpus is the first ``S`` shards (``--docs-per-shard`` docs each) of one generated corpus
(natural pages of 100-200 words, 2 % of documents in planted near-duplicate pairs and 2 % in
far pairs, pairs split across neighbouring shards), so every size is a prefix of the largest::

    taskset -c 1 .venv/bin/python bench/minhash_memory.py --docs 100000 300000 1000000
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _minhash_common as C  # noqa: E402

HELPER = str(Path(__file__).with_name("_minhash_common.py"))


def run_child(args: list[str]) -> tuple[float, float]:
    """Run ``python _minhash_common.py ARGS``; returns ``(max RSS MiB, wall seconds)``."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, HELPER, *args], stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"step {args} failed with {p.returncode}")
    return ru.ru_maxrss / 1024, time.perf_counter() - t0


def du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--docs-per-shard", type=int, default=50_000)
    ap.add_argument("--data", default="/tmp/mh_bench")
    ap.add_argument("--bands", type=int, default=12)
    ap.add_argument("--rows", type=int, default=9)
    ap.add_argument("--method", default="sha1")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--gen-procs", type=int, default=1)
    args = ap.parse_args()

    total = max(args.docs)
    shards_total = total // args.docs_per_shard
    corpus = C.generate_corpus(Path(args.data) / "corpus_1m" if total == 1_000_000 else
                               Path(args.data) / f"corpus_mem_{total}", total, shards_total,
                               procs=args.gen_procs)
    paths = C.shard_paths(corpus)
    # a bare interpreter with the same imports: the floor under every step
    floor, _ = run_child(["noop", "/tmp"])
    print(f"floor: interpreter + numpy + pyarrow + stages imports, no work: max RSS {floor:.0f} MiB", flush=True)
    rows = []
    for n in sorted(args.docs):
        s = n // args.docs_per_shard
        work = Path(args.data) / f"mem_work_{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        steps = {
            "map (signatures + band buckets), per shard":
                [["map", str(work), str(i), str(paths[i]), str(args.bands), str(args.rows), args.method]
                 for i in range(s)],
            "reduce (buckets -> pairs), per band":
                [["reduce", str(work), str(b), str(s)] for b in range(args.bands)],
            "cluster (unique + verify + union-find), global":
                [["cluster", str(work), str(args.bands), str(s), "0" if args.no_verify else "1"]],
            "filter (drop rows), per shard":
                [["filter", str(work), str(i), str(paths[i])] for i in range(s)],
        }
        for name, calls in steps.items():
            rss, wall = 0.0, 0.0
            for c in calls:
                r, w = run_child(c)
                rss, wall = max(rss, r), wall + w
            rows.append((n, s, name, len(calls), rss, wall))
            print(f"{n:>9,} docs  {s:>3} shards  {name:<48} {len(calls):>3} procs  max RSS {rss:7.0f} MiB  "
                  f"{wall:7.1f} s", flush=True)
        sizes = {d: du_mib(work / d) for d in ("sig", "buckets", "pairs", "out")}
        sizes["clusters"] = (work / "clusters.parquet").stat().st_size / 2**20
        print(f"{n:>9,} docs  on disk MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in sizes.items()), flush=True)
        rows.append((n, s, "on disk", sizes))

    print("\n| docs | shards x docs | step | processes | max RSS (MiB) | wall (s) |")
    print("|---:|---|---|---:|---:|---:|")
    for r in rows:
        if r[2] == "on disk":
            continue
        n, s, name, k, rss, wall = r
        print(f"| {n:,} | {s} x {args.docs_per_shard:,} | {name} | {k} | {rss:,.0f} | {wall:,.1f} |")


if __name__ == "__main__":
    main()
