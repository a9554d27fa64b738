"""MinHash dedup throughput per core: ours (``stages/minhash_dedup.py``) vs datatrove, one run,
same documents.

The corpus (``--docs`` documents in ``--shards`` Parquet shards, planted near/far pairs with
their true 5-gram Jaccard; see ``bench/_minhash_common.py``) is written once.  Each round runs
every configuration of ours in this process (steps as the workflow runs them, intermediates on
disk) and datatrove's four stages in a subprocess of the datatrove venv's interpreter
(``bench/_datatrove_minhash.py``); the best of ``--repeats`` rounds is reported per step.
Pin the whole run to one core for per-core numbers::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 \\
        .venv/bin/python bench/minhash_vs_datatrove.py --docs 100000 --shards 10 \\
        --dt-python /tmp/dtvenv/bin/python [--append BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import _minhash_common as C  # noqa: E402

OURS = [  # (label, bands, rows, method, verify)
    ("ours sha1, 14x8, no verify (like-for-like)", 14, 8, "sha1", False),
    ("ours sha1, 12x9 + verify (default)", 12, 9, "sha1", True),
    ("ours word_combine, 14x8, no verify (like-for-like)", 14, 8, "word_combine", False),
    ("ours word_combine, 12x9 + verify (default)", 12, 9, "word_combine", True),
]
DT = {  # tokenizer -> label
    "split": "datatrove 0.10.1, 14x8, xxhash64, tokenizer = str.split (faster than its default)",
    "default": "datatrove 0.10.1, 14x8, xxhash64, default en tokenizer (spaCy) = FineWeb setting",
}
STEPS = [("map", "signature"), ("reduce", "buckets"), ("cluster", "cluster"), ("filter", "filter")]


def dt_same_cluster(clusters: dict):
    def same(sa, ra, sb, rb):
        out = []
        for a, b in zip((f"{s}:{r}" for s, r in zip(sa, ra)), (f"{s}:{r}" for s, r in zip(sb, rb))):
            ca, cb = clusters.get(a), clusters.get(b)
            out.append(ca is not None and ca == cb)
        return np.array(out, dtype=bool)
    return same


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--data", default="/tmp/mh_bench")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dt-python", default="/tmp/dtvenv/bin/python")
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--dt-default-repeats", type=int, default=1,
                    help="rounds that also run datatrove with its default spaCy tokenizer (slow)")
    ap.add_argument("--append")
    ap.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    ap.add_argument("--machine", default="2-core CPU (shared dev VM), Python 3.11")
    args = ap.parse_args()

    corpus = C.generate_corpus(Path(args.data) / f"corpus_{args.docs}", args.docs, args.shards, procs=1)
    truth = pq.read_table(corpus / "truth.parquet")
    work = Path(args.data) / "work"
    n = args.docs
    affinity = sorted(os.sched_getaffinity(0))
    print(f"corpus {corpus}: {n} docs, {args.shards} shards, {truth.num_rows} labelled pairs; cpus {affinity}",
          flush=True)

    best: dict[str, dict[str, float]] = {}
    extra: dict[str, dict] = {}
    for rnd in range(args.repeats):
        for label, bands, rows, method, verify in OURS:
            r = C.run_ours_inprocess(corpus, work / "ours", bands, rows, method, verify)
            b = best.setdefault(label, {})
            for k, v in r["seconds"].items():
                b[k] = min(b.get(k, float("inf")), v)
            b["total"] = min(b.get("total", float("inf")), sum(r["seconds"].values()))
            if rnd == 0:
                clusters = pq.read_table(work / "ours" / "clusters.parquet")
                extra[label] = {"removed": r["removed"], **C.pair_quality(truth, C.clusters_same(clusters))}
            print(rnd, label, {k: round(v, 2) for k, v in r["seconds"].items()}, flush=True)
        for tok, dt_label in DT.items():
            if args.skip_datatrove or (tok == "default" and rnd >= args.dt_default_repeats):
                continue
            env = dict(os.environ, PYTHONPATH="")
            out = subprocess.run([args.dt_python, str(Path(__file__).with_name("_datatrove_minhash.py")),
                                  str(corpus), str(work / "datatrove"), str(args.shards), tok],
                                 env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr[-4000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            b = best.setdefault(dt_label, {})
            for ours_name, dt_name in STEPS:
                b[ours_name] = min(b.get(ours_name, float("inf")), r["seconds"][dt_name])
            b["total"] = min(b.get("total", float("inf")), sum(r["seconds"].values()))
            b["rounds"] = b.get("rounds", 0) + 1
            if dt_label not in extra:
                extra[dt_label] = {"removed": r["removed"], **C.pair_quality(truth, dt_same_cluster(r["clusters"]))}
            print(rnd, dt_label, {k: round(v, 2) for k, v in r["seconds"].items()}, flush=True)

    header = ("| implementation (config) | signatures docs/s | buckets->pairs docs/s | cluster docs/s "
              "| filter docs/s | sig+buckets+cluster docs/s | all 4 steps docs/s | removed "
              "| recall J>=0.9 | false merges J<=0.5 | merged 0.5<J<0.9 |")
    lines = [header, "|" + "---|" * 11]
    for label, b in best.items():
        e = extra[label]
        if b.get("rounds", args.repeats) < args.repeats:
            label += f" [{b['rounds']} round]"
        three = b["map"] + b["reduce"] + b["cluster"]
        lines.append(
            f"| {label} | {n / b['map']:,.0f} | {n / b['reduce']:,.0f} | {n / b['cluster']:,.0f} "
            f"| {n / b['filter']:,.0f} | {n / three:,.0f} | {n / b['total']:,.0f} | {e['removed']:,} "
            f"| {e['recall_j90']:.3f} ({e['n_j90']}) | {e['false_merge_j50']:.3f} ({e['n_j50']}) "
            f"| {e['merge_rate_j50_90']:.3f} ({e['n_j50_90']}) |")
    for dt_label in DT.values():
        if dt_label not in best:
            continue
        dt = best[dt_label]
        dt3 = dt["map"] + dt["reduce"] + dt["cluster"]
        for label, b in best.items():
            if label not in DT.values():
                print(f"speed-up of [{label}] vs [{dt_label}]: sig+buckets+cluster "
                      f"{dt3 / (b['map'] + b['reduce'] + b['cluster']):.2f}x, all steps {dt['total'] / b['total']:.2f}x")
    table = "\n".join(lines)
    print(table)
    print(json.dumps({"best_seconds": best, "quality": extra}, indent=1))
    if args.append:
        cmd = "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 python " + " ".join(
            shlex.quote(a) for a in sys.argv)
        print(f"\n(command for BENCHMARKS.md: {cmd})")


if __name__ == "__main__":
    main()
