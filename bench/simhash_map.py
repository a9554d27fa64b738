"""SimHash map step (`stages.simhash_dedup.sentence_hashes`) in CPU seconds per document, the
working tree against an earlier git revision, on the same Parquet shards.

    python bench/simhash_map.py --against HEAD~1 SHARD.parquet [SHARD.parquet ...]

The revision's `stages/simhash_dedup.py` and `stages/minhash_dedup.py` are loaded from
`git show REV:...` into a temporary package; both versions run alternately (best of --rounds)
and their output tables are compared."""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def module_at(rev: str, tmp: Path):
    """`stages.simhash_dedup` as of git revision `rev` (with that revision's minhash_dedup)."""
    pkg = tmp / "old_stages"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("simhash_dedup", "minhash_dedup"):
        src = subprocess.run(["git", "show", f"{rev}:stages/{name}.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        (pkg / f"{name}.py").write_text(src.replace("from deeprecipe.stages.", "from old_stages.")
                                          .replace("from stages.", "from old_stages."))
    sys.path.insert(0, str(tmp))
    return importlib.import_module("old_stages.simhash_dedup")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shards", nargs="+")
    ap.add_argument("--against", default="HEAD~1")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from deeprecipe.stages import simhash_dedup as current
    tables = [pq.read_table(p) for p in args.shards]
    docs = sum(t.num_rows for t in tables)
    with tempfile.TemporaryDirectory() as tmp:
        old = module_at(args.against, Path(tmp))
        best = {}
        for _ in range(args.rounds):
            for name, mod in ((args.against, old), ("working tree", current)):
                t0 = time.process_time()
                out = [mod.sentence_hashes(t, i) for i, t in enumerate(tables)]
                best[name] = min(best.get(name, float("inf")), time.process_time() - t0)
        same = all(a.equals(b) for a, b in zip(
            [old.sentence_hashes(t, i) for i, t in enumerate(tables)], out))
    print(f"{docs} documents in {len(tables)} shards; outputs identical: {same}")
    print("| code | CPU s | docs per CPU-second |\n|---|---:|---:|")
    for name, s in best.items():
        print(f"| {name} | {s:.2f} | {docs / s:,.0f} |")


if __name__ == "__main__":
    main()
