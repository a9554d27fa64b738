"""Shared helpers of the MinHash benchmarks: a generated corpus with planted pairs, and our
MinHash dedup run as the workflow runs it (map per shard -> reduce per band -> cluster ->
filter per shard, every intermediate written to disk).

Corpus: ``shards`` Parquet files (``id``, ``text``) of natural pages (``natural_page``, 4
languages, ``min_words..max_words`` words) plus planted labelled pairs, each pair split across
two neighbouring shards (dedup must be global): ``near`` pairs made with ``near_duplicate``
(target Jaccard U(0.9, 0.99) for 3 of 4 pairs, U(0.6, 0.9) for the rest) and ``far`` pairs made
with ``far_pair`` (target U(0.05, 0.5)).  ``truth.parquet`` holds ``kind, shard_a, row_a,
shard_b, row_b, jaccard`` (TRUE 5-gram shingle Jaccard).  Every shard is generated from its own
seeds, so shards can be generated in parallel processes and are identical whatever the split.

Our steps, also runnable one per process::

    python bench/_minhash_common.py map     WORK SHARD_ID SHARD_PATH BANDS ROWS METHOD
    python bench/_minhash_common.py reduce  WORK BAND NUM_SHARDS
    python bench/_minhash_common.py cluster WORK BANDS NUM_SHARDS VERIFY(0/1)
    python bench/_minhash_common.py filter  WORK SHARD_ID SHARD_PATH
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from deeprecipe.stages import minhash_dedup as md  # noqa: E402
from deeprecipe.stages.generators.labelled_prose import LANGS, far_pair, natural_page, near_duplicate  # noqa: E402

TRUTH_SCHEMA = pa.schema([("kind", pa.string()), ("shard_a", pa.int32()), ("row_a", pa.int64()),
                          ("shard_b", pa.int32()), ("row_b", pa.int64()), ("jaccard", pa.float64())])


# ---------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------


def _pair(seed: int, k: int, kind: str, min_words: int, max_words: int) -> tuple[str, str, float]:
    """Planted pair ``k`` (deterministic from its own seed): ``(base, other, true_jaccard)``."""
    rng = random.Random(f"{seed}-{kind}-{k}")
    base = natural_page(rng, "en", min_words, max_words)
    if kind == "near":
        target = rng.uniform(0.9, 0.99) if k % 4 else rng.uniform(0.6, 0.9)
        other, j = near_duplicate(rng, base, target)
    else:
        other, j = far_pair(rng, base, rng.uniform(0.05, 0.5))
    return base, other, j


def generate_shard(seed: int, shard: int, num_shards: int, docs_per_shard: int, near_per_shard: int,
                   far_per_shard: int, min_words: int, max_words: int):
    """Shard ``shard``: its naturals, the bases of its pairs, the copies of shard ``shard-1``'s
    pairs (cyclic); rows shuffled.  Returns ``(texts, [(kind, k, role, row)])``."""
    prev = (shard - 1) % num_shards
    items: list[tuple[str, str, int, str]] = []  # (text, kind, k, role)
    for kind, per in (("near", near_per_shard), ("far", far_per_shard)):
        for i in range(per):
            base, _, _ = _pair(seed, shard * per + i, kind, min_words, max_words)
            items.append((base, kind, shard * per + i, "a"))
            _, other, _ = _pair(seed, prev * per + i, kind, min_words, max_words)
            items.append((other, kind, prev * per + i, "b"))
    rng = random.Random(f"{seed}-natural-{shard}")
    for _ in range(docs_per_shard - len(items)):
        items.append((natural_page(rng, rng.choice(LANGS), min_words, max_words), "natural", -1, ""))
    random.Random(f"{seed}-order-{shard}").shuffle(items)
    texts = [t for t, _, _, _ in items]
    roles = [(kind, k, role, row) for row, (_, kind, k, role) in enumerate(items) if kind != "natural"]
    return texts, roles


def _gen_worker(args):
    out_dir, seed, shard, num_shards, dps, near, far, lo, hi = args
    texts, roles = generate_shard(seed, shard, num_shards, dps, near, far, lo, hi)
    ids = [f"s{shard:05d}-{i:07d}" for i in range(len(texts))]
    pq.write_table(pa.table({"id": ids, "text": texts}), Path(out_dir) / f"{shard:05d}.parquet",
                   row_group_size=10_000)
    return shard, roles


def generate_corpus(out_dir: str | Path, num_docs: int, num_shards: int, near_frac: float = 0.02,
                    far_frac: float = 0.02, min_words: int = 100, max_words: int = 200, seed: int = 0,
                    procs: int = 1) -> Path:
    """Write the corpus (``NNNNN.parquet`` + ``truth.parquet``) unless it already exists."""
    out = Path(out_dir)
    marker = out / "DONE"
    spec = f"{num_docs} {num_shards} {near_frac} {far_frac} {min_words} {max_words} {seed}"
    if marker.exists() and marker.read_text() == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*.parquet"):
        f.unlink()
    dps = num_docs // num_shards
    near, far = int(dps * near_frac / 2), int(dps * far_frac / 2)
    jobs = [(str(out), seed, s, num_shards, dps, near, far, min_words, max_words) for s in range(num_shards)]
    if procs > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(procs) as pool:
            results = pool.map(_gen_worker, jobs, chunksize=1)
    else:
        results = [_gen_worker(j) for j in jobs]
    where: dict[tuple[str, int, str], tuple[int, int]] = {}
    for shard, roles in results:
        for kind, k, role, row in roles:
            where[(kind, k, role)] = (shard, row)
    rows = []
    for kind, per in (("near", near), ("far", far)):
        for k in range(num_shards * per):
            (sa, ra), (sb, rb) = where[(kind, k, "a")], where[(kind, k, "b")]
            _, _, j = _pair(seed, k, kind, min_words, max_words)
            rows.append(dict(kind=kind, shard_a=sa, row_a=ra, shard_b=sb, row_b=rb, jaccard=j))
    pq.write_table(pa.Table.from_pylist(rows, schema=TRUTH_SCHEMA), out / "truth.parquet")
    marker.write_text(spec)
    return out


def shard_paths(corpus: str | Path) -> list[Path]:
    return sorted(p for p in Path(corpus).glob("[0-9]*.parquet"))


def pair_quality(truth: pa.Table, same_cluster) -> dict:
    """``same_cluster(shard_a, row_a, shard_b, row_b) -> bool array``; recall at J >= 0.9 and
    false merges at J <= 0.5, plus merge rate in J bins."""
    t = truth.to_pydict()
    sa, ra = np.array(t["shard_a"]), np.array(t["row_a"])
    sb, rb = np.array(t["shard_b"]), np.array(t["row_b"])
    j = np.array(t["jaccard"])
    merged = same_cluster(sa, ra, sb, rb)
    hi, lo = j >= 0.9, j <= 0.5
    mid = (j > 0.5) & (j < 0.9)
    return {
        "recall_j90": float(merged[hi].mean()) if hi.any() else float("nan"), "n_j90": int(hi.sum()),
        "false_merge_j50": float(merged[lo].mean()) if lo.any() else float("nan"), "n_j50": int(lo.sum()),
        "merge_rate_j50_90": float(merged[mid].mean()) if mid.any() else float("nan"), "n_j50_90": int(mid.sum()),
    }


def clusters_same(clusters: pa.Table):
    """``same_cluster`` from our cluster table (node -> root)."""
    key = md._node_key(clusters.column("shard").to_numpy(), clusters.column("row").to_numpy())
    root = md._node_key(clusters.column("root_shard").to_numpy(), clusters.column("root_row").to_numpy())
    lookup = dict(zip(key.tolist(), root.tolist()))

    def same(sa, ra, sb, rb):
        ka, kb = md._node_key(sa, ra).tolist(), md._node_key(sb, rb).tolist()
        return np.array([lookup.get(a, a) == lookup.get(b, b) for a, b in zip(ka, kb)], dtype=bool)

    return same


# ---------------------------------------------------------------------------------------------
# our steps (each reads its inputs from disk and writes its outputs to disk)
# ---------------------------------------------------------------------------------------------


def step_map(work: Path, shard: int, shard_path: Path, bands: int, rows: int, method: str) -> int:
    """Signatures of one shard -> ``sig/NNNNN.npy``; bucket rows -> ``buckets/band_BBB/NNNNN.parquet``."""
    table = pq.read_table(shard_path, columns=["text"])
    sig = md.signatures(table, method=method)
    del table
    (work / "sig").mkdir(parents=True, exist_ok=True)
    np.save(work / "sig" / f"{shard:05d}.npy", sig)
    buckets = md.band_bucket_rows(sig, shard, None, bands, rows)
    n = sig.shape[0]
    del sig
    # band_bucket_rows sorts by band first: band k is the contiguous slice [k*n, (k+1)*n)
    for band in range(bands):
        d = work / "buckets" / f"band_{band:03d}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(buckets.slice(band * n, n), d / f"{shard:05d}.parquet")
    return n


def step_reduce(work: Path, band: int, num_shards: int) -> int:
    """Bucket files of one band (all shards) -> ``pairs/band_BBB.parquet``."""
    d = work / "buckets" / f"band_{band:03d}"
    table = pa.concat_tables([pq.read_table(d / f"{s:05d}.parquet") for s in range(num_shards)])
    pairs = md.duplicate_pairs(table)
    (work / "pairs").mkdir(parents=True, exist_ok=True)
    pq.write_table(pairs, work / "pairs" / f"band_{band:03d}.parquet")
    return pairs.num_rows


def step_cluster(work: Path, bands: int, num_shards: int, verify: bool) -> dict:
    """All pair files -> distinct pairs -> (verified) -> union-find -> ``clusters.parquet``."""
    pairs = md.unique_pairs(pa.concat_tables(
        [pq.read_table(work / "pairs" / f"band_{b:03d}.parquet") for b in range(bands)]))
    info = {"candidate_pairs": pairs.num_rows}
    if verify:
        sigs = {s: np.load(work / "sig" / f"{s:05d}.npy", mmap_mode="r") for s in range(num_shards)}
        pairs = md.verify_pairs(pairs, sigs)
    info["pairs"] = pairs.num_rows
    clusters = md.union_find_clusters(pairs)
    info["clusters"] = md.count_clusters(clusters)
    pq.write_table(clusters, work / "clusters.parquet")
    return info


def step_filter(work: Path, shard: int, shard_path: Path) -> int:
    """One shard minus non-root cluster members -> ``out/NNNNN.parquet``; returns rows removed."""
    clusters = pq.read_table(work / "clusters.parquet")
    table = pq.read_table(shard_path)
    out = md.drop_rows(table, shard, clusters)
    (work / "out").mkdir(parents=True, exist_ok=True)
    pq.write_table(out, work / "out" / f"{shard:05d}.parquet")
    return table.num_rows - out.num_rows


def run_ours_inprocess(corpus: Path, work: Path, bands: int, rows: int, method: str, verify: bool) -> dict:
    """All our steps sequentially in this process; seconds per step."""
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    paths = shard_paths(corpus)
    t = {}
    t0 = time.perf_counter()
    n = sum(step_map(work, i, p, bands, rows, method) for i, p in enumerate(paths))
    t["map"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in range(bands):
        step_reduce(work, b, len(paths))
    t["reduce"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = step_cluster(work, bands, len(paths), verify)
    t["cluster"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    removed = sum(step_filter(work, i, p) for i, p in enumerate(paths))
    t["filter"] = time.perf_counter() - t0
    return {"seconds": t, "docs": n, "removed": removed, **info}


if __name__ == "__main__":
    cmd, work = sys.argv[1], Path(sys.argv[2])
    a = sys.argv[3:]
    if cmd == "map":
        step_map(work, int(a[0]), Path(a[1]), int(a[2]), int(a[3]), a[4])
    elif cmd == "reduce":
        step_reduce(work, int(a[0]), int(a[1]))
    elif cmd == "cluster":
        print(step_cluster(work, int(a[0]), int(a[1]), a[2] == "1"))
    elif cmd == "filter":
        step_filter(work, int(a[0]), Path(a[1]))
    elif cmd == "noop":  # imports only: the RSS floor of every step
        pass
    else:
        raise SystemExit(f"unknown step {cmd}")
