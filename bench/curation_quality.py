"""Curation quality on the labelled generated crawl: precision / recall of every stage, and wall time.

Runs ``luigi --module workflows RunDataPipeline --local-scheduler --store DIR`` once on a fresh
store -- by default the same generation ``tests/test_curation_quality.py`` uses (the ``tiny``
profile: seed 0, 4 files x 400 pages), or a bigger one with ``--files`` / ``--pages-per-file``
-- then measures each stage's output against the crawl's ground truth with the functions in
``bench/_curation_measure.py`` (the ones the test asserts on) and prints markdown: a summary
table (docs in / out, wall seconds per stage from the stage manifests) and one table per stage.
A ratio is printed as ``value (hits/total)``.

``--simhash-sweep 0,2,3,4,6,8`` (the default) re-runs simhash_dedup in-process on the pipeline's
minhash_dedup output at each max Hamming distance (same min_sentence_words / min_doc_words as
the run) and prints edited-notice recall against natural sentences wrongly removed: the
measurement behind simhash_dedup's distance default.

    python bench/curation_quality.py [--files 4 --pages-per-file 400] [--simhash-sweep 0,3,9]
    python bench/curation_quality.py --from-store DIR     # measure a finished store again
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import pyarrow.parquet as pq  # noqa: E402

from bench import _curation_measure as cm  # noqa: E402
from data_dag import stage_rows  # noqa: E402
from deeprecipe.stages import simhash_dedup  # noqa: E402
from deeprecipe.stages.url_dedup import normalize_url  # noqa: E402

MEASURES = {"url_dedup": cm.url_dedup_quality, "minhash_dedup": cm.minhash_quality,
            "simhash_dedup": cm.simhash_quality, "quality_filter": cm.quality_filter_quality,
            "pii_redact": cm.pii_quality, "decontaminate": cm.decontam_quality}


def luigi_args(args, store: str) -> list[str]:
    out = ["--module", "workflows", "RunDataPipeline", "--local-scheduler", "--store", store]
    if args.files:
        out += ["--SyntheticCrawl-num-files", str(args.files)]
    if args.pages_per_file:
        out += ["--SyntheticCrawl-pages-per-file", str(args.pages_per_file)]
    return out


def run_pipeline(args, store: str) -> float:
    """Run the data DAG into ``store``; wall seconds. Exits on failure with the log's tail."""
    cmd = [str(Path(sys.executable).parent / "luigi"), *luigi_args(args, store)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.time()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"luigi exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return time.time() - t0


def machine() -> str:
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({model or platform.processor()}), Python "
            f"{platform.python_version()}, load average {load} (1/5/15 min)")


def cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, dict):
        return ", ".join(f"{k if not isinstance(k, tuple) else '/'.join(k)}: {cell(x)}" for k, x in v.items()) or "—"
    return str(v)


def summary_table(store: str, measured: dict) -> str:
    lines = ["| stage | docs in | docs out | wall s | work s |", "|---|---:|---:|---:|---:|"]
    for r in stage_rows(store):
        if r.get("missing"):
            continue
        m = measured.get(r["stage"], {})
        d_in, d_out = m.get("docs_in", r["docs_in"]), m.get("docs_out", r["docs_out"])
        lines.append(f"| {r['stage']} | {cell(d_in if d_in is not None else '—')} | "
                     f"{cell(d_out if d_out is not None else '—')} | {r['wall']:.1f} | {r['work']:.1f} |")
    return "\n".join(lines)


def stage_table(stage: str, values: dict) -> str:
    lines = [f"**{stage}**", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {cell(v)} |" for k, v in values.items() if k not in ("docs_in", "docs_out")]
    return "\n".join(lines)


def simhash_sweep(run: cm.Run, store: str, distances: list[int]) -> str:
    """Re-run simhash_dedup on the minhash_dedup output per max distance; measure each output."""
    params = json.load(open(glob.glob(os.path.join(store, "simhash_dedup", "*", "_MANIFEST.json"))[0]))["params"]
    folder = cm.stage_folder(store, "minhash_dedup")
    shards = [pq.read_table(f) for f in sorted(glob.glob(os.path.join(folder, "part-*.parquet")))]
    lines = ["| max Hamming distance | edited notice repeats removed | normalised notice repeats removed | "
             "natural sentences wrongly removed | removed sentences justified | seconds |",
             "|---:|---|---|---|---|---:|"]
    for k in distances:
        t0 = time.time()
        out, _ = simhash_dedup.dedup_tables(shards, k, params["min_sentence_words"], params["min_doc_words"])
        seconds = time.time() - t0
        docs_out = {normalize_url(d["url"]): d for t in out for d in t.to_pylist()}
        q = cm.simhash_quality(run, docs_out)
        lines.append(f"| {k}{' (run)' if k == params['max_distance'] else ''} | "
                     f"{q['edited_notice_repeats_removed']} | {q['notice_repeats_removed']} | "
                     f"{q['natural_sentences_wrongly_removed']} | {q['removed_sentences_justified']} | "
                     f"{seconds:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, help="generated WARC files (default: the tiny profile's, 4)")
    p.add_argument("--pages-per-file", type=int, help="pages per file (default: the tiny profile's, 400)")
    p.add_argument("--store", help="store folder to create (default: a new temporary folder)")
    p.add_argument("--from-store", help="skip the run; measure this finished store")
    p.add_argument("--simhash-sweep", default="0,2,3,4,6,8",
                   help="comma-separated max Hamming distances to re-run simhash_dedup at ('' for none)")
    args = p.parse_args()

    command = shlex.join(["python", "bench/curation_quality.py", *sys.argv[1:]])
    print(f"Command: `{command}`  ")
    print(f"Date: {datetime.now().astimezone().isoformat(timespec='seconds')}  ")
    print(f"Machine: {machine()}  ")
    if args.from_store:
        store, wall = args.from_store, None
    else:
        store = args.store or tempfile.mkdtemp(prefix="curation_quality_")
        print(f"Pipeline: `luigi {shlex.join(luigi_args(args, store))}`  ", flush=True)
        wall = run_pipeline(args, store)
        print(f"Pipeline wall time: {wall:.1f} s (store kept: {store})  ")
    t0 = time.time()
    run = cm.Run(store)
    measured = {stage: f(run) for stage, f in MEASURES.items()}
    print(f"Measuring took {time.time() - t0:.1f} s.\n")
    print(summary_table(store, measured) + "\n")
    for stage, values in measured.items():
        print(stage_table(stage, values) + "\n")
    distances = [int(x) for x in args.simhash_sweep.split(",") if x.strip()]
    if distances:
        print("**simhash_dedup, max Hamming distance sweep** (same input, in-process)\n")
        print(simhash_sweep(run, store, distances))


if __name__ == "__main__":
    main()
