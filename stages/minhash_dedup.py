"""Document-level near-duplicate removal: MinHash + LSH, as map -> reduce steps.

Semantics follow ``datasketch.MinHash`` (2.x, default scheme ``affine32``) exactly:
each shingle ``s`` is hashed with ``sha1_hash32(s.encode())`` (first 4 SHA-1 bytes,
little-endian), pre-mixed with the 32-bit MurmurHash3 finaliser, then permuted as
``a_k * h + b_k mod 2**32`` with ``(a, b)`` drawn from ``np.random.RandomState(seed)``;
the signature is the per-permutation minimum.  Here the permutation and the minimum run
vectorised over every shingle of a batch of documents (``num_shingles x num_perm`` uint32
blocks, ``np.minimum.reduceat`` per document).

Steps (each a plain function, one Luigi task per shard or per band in ``workflows/``):

1. map, per shard: ``signatures(table)`` -> ``(N, num_perm)`` uint32, then
   ``band_bucket_rows(sig, shard, rows, bands, rows_per_band)`` -> ``(band, band_hash,
   shard, row)``; written as one file per band.
2. reduce, per band: ``duplicate_pairs(bucket_table)`` -> ``(shard_a, row_a, shard_b, row_b)``;
   optionally ``verify_pairs`` drops candidates whose signature-estimated Jaccard is below the
   threshold (fewer false merges from band collisions).
3. global: ``union_find_clusters(pairs)`` -> node -> root, root = smallest ``(shard, row)``.
4. apply, per shard: ``drop_rows(table, shard, clusters)`` keeps roots and singletons.

Banding: ``choose_bands(threshold, num_perm)`` minimises the weighted false-positive /
false-negative areas like ``datasketch.lsh._optimal_param``.  Default threshold 0.8,
112 permutations, weights FP 0.1 / FN 0.9 (a missed duplicate is lost for good, a false
candidate is removed again by ``verify_pairs``) -> **12 bands x 9 rows** (108 of the 112
hashes used for banding, all 112 for verification): P(candidate) is 0.997 at J = 0.9,
0.82 at J = 0.8, 0.023 at J = 0.5 before verification.  FineWeb's 14 x 8 is
``bands=14, rows_per_band=8``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from deeprecipe.pipeline.config import option
from deeprecipe.stages.text import combine_ngram_hashes, fmix64, normalise_words, word_hash64, word_shingles

SEED = 1
NUM_PERM = 112
NGRAM = 5
THRESHOLD = 0.8
_MAX32 = np.uint32(0xFFFFFFFF)
_M64 = (1 << 64) - 1



@dataclass(frozen=True)
class MinhashConfig:
    """minhash_dedup's parameters, shared by its work tasks."""
    threshold: float = option("Jaccard similarity from which two documents count as "
                              "near-duplicates")
    num_perm: int = option("MinHash permutations (signature length)")
    ngram: int = option("word n-gram size of the shingles")
    bands: int = option("LSH bands; 0: chosen for the threshold", display_empty="auto")
    rows_per_band: int = option("rows per LSH band; 0: chosen for the threshold",
                                display_empty="auto")
    seed: int = option("seed of the MinHash permutations")
    verify: bool = option("check LSH candidate pairs on the full signature before merging them")
    shingle_hash: str = option("word_combine (batched, faster) | sha1 (datasketch's default)")


# ---------------------------------------------------------------------------------------------
# shingle hashes
# ---------------------------------------------------------------------------------------------


def sha1_hash32_many(items: list[bytes]) -> np.ndarray:
    """``datasketch.hashfunc.sha1_hash32`` of each item -> uint32 ``(len(items),)``."""
    if not items:
        return np.zeros(0, dtype=np.uint32)
    digests = b"".join([hashlib.sha1(b).digest()[:4] for b in items])
    return np.frombuffer(digests, dtype="<u4").astype(np.uint32)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finaliser on a uint32 array (datasketch's ``_fmix(hv, 32)``)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def word_combine_hash32(shingle: bytes) -> int:
    """Scalar form of the ``"word_combine"`` shingle hash, usable as datasketch ``hashfunc``."""
    words = shingle.decode("utf-8").split(" ")
    return int(combine_ngram_hashes(word_hash64(words), len(words))[0] & np.uint64(0xFFFFFFFF))


def shingle_hashes(text: str, n: int = NGRAM, method: str = "sha1") -> np.ndarray:
    """Distinct 32-bit shingle hashes of one document -> uint32 ``(num_shingles,)``.

    ``"sha1"``: datasketch's default ``sha1_hash32`` of each shingle (one C call per shingle).
    ``"word_combine"``: SHA-1 once per distinct word, n-gram hashes combined in numpy
    (no per-shingle Python work); equals datasketch with ``hashfunc=word_combine_hash32``.
    """
    if method == "sha1":
        return sha1_hash32_many([s.encode("utf-8") for s in word_shingles(text, n)])
    if method == "word_combine":
        return np.unique(word_combine_batch([text], n)[0])
    raise ValueError(f"unknown shingle hash method {method!r}: use 'sha1' or 'word_combine'")


# ---------------------------------------------------------------------------------------------
# MinHash signatures
# ---------------------------------------------------------------------------------------------


def permutations(num_perm: int = NUM_PERM, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """datasketch ``affine32`` permutation parameters ``(a, b)``, each uint32 ``(num_perm,)``."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def minhash_batch(
    hashes: np.ndarray, doc_index: np.ndarray, num_docs: int, a: np.ndarray, b: np.ndarray,
    chunk: int = 1 << 15,
) -> np.ndarray:
    """Per-document minimum of permuted shingle hashes.

    hashes: uint32 ``(M,)``; doc_index: int ``(M,)`` non-decreasing in ``[0, num_docs)``.
    Returns uint32 ``(num_docs, num_perm)``; a document without shingles gets ``2**32 - 1``
    everywhere (datasketch's empty value).
    """
    sig = np.full((num_docs, len(a)), _MAX32, dtype=np.uint32)
    if len(hashes) == 0:
        return sig
    mixed = fmix32(hashes.astype(np.uint32))
    # Chunk along shingles at document boundaries so blocks stay ~chunk x num_perm.
    starts = np.flatnonzero(np.r_[True, doc_index[1:] != doc_index[:-1]])
    pos = 0
    while pos < len(starts):
        lo = starts[pos]
        nxt = np.searchsorted(starts, lo + chunk, side="right")
        nxt = max(nxt, pos + 1)
        hi = starts[nxt] if nxt < len(starts) else len(hashes)
        phv = mixed[lo:hi, None] * a[None, :] + b[None, :]  # uint32 wrap = mod 2**32
        seg = starts[pos:nxt] - lo
        sig[doc_index[starts[pos:nxt]]] = np.minimum.reduceat(phv, seg, axis=0)
        pos = nxt
    return sig


def word_hash_sequence(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised words of every text as one 64-bit hash sequence -> (hashes uint64 (W,),
    words per text int64 (N,)). SHA-1 runs once per distinct word of the whole batch."""
    words = [normalise_words(text or "") for text in texts]
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    return word_hash64([w for ws in words for w in ws]), lengths


def word_combine_batch(texts: list[str], n: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """The ``"word_combine"`` shingle hashes of a batch of texts -> (hashes uint32 (M,),
    doc_index int64 (M,) non-decreasing).

    One n-gram combine over the concatenated word hashes of the whole batch, n-grams that cross
    a document boundary masked out; a text of 1..n-1 words gives one shingle of all its words
    (as ``combine_ngram_hashes``). Repeated shingles of a document are kept: the per-permutation
    minimum does not change, so no per-document ``np.unique`` is needed.
    """
    wh, lengths = word_hash_sequence(texts)
    ends = np.cumsum(lengths)
    hashes, docs = [], []
    m = len(wh) - n + 1
    if m > 0:
        acc = np.full(m, np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
        for j in range(n):
            acc = fmix64(acc ^ wh[j : j + m]) + np.uint64(j + 1)
        doc_of = np.repeat(np.arange(len(texts)), lengths)[:m]
        inside = np.arange(m) + n <= ends[doc_of]
        hashes.append(fmix64(acc[inside]))
        docs.append(doc_of[inside])
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):
        hashes.append(np.array([combine_ngram_hashes(wh[ends[d] - lengths[d]:ends[d]], n)[0]
                                for d in short], dtype=np.uint64))
        docs.append(short)
    if not hashes:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    h32 = (np.concatenate(hashes) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    doc_index = np.concatenate(docs)
    order = np.argsort(doc_index, kind="stable")
    return h32[order], doc_index[order]


def signatures(
    table: pa.Table, num_perm: int = NUM_PERM, ngram: int = NGRAM, seed: int = SEED,
    text_column: str = "text", method: str = "sha1", batch_docs: int = 4096,
) -> np.ndarray:
    """MinHash signatures of every row's text -> uint32 ``(num_rows, num_perm)``.

    ``method="word_combine"`` hashes ``batch_docs`` rows at once (``word_combine_batch``, about
    1.6x the docs/s of ``"sha1"``, see BENCHMARKS.md); ``"sha1"`` is datasketch's default
    hashing. Rows go through in batches of ``batch_docs``, so memory is bounded by the batch,
    not the table (the result itself is 4 * num_perm bytes per row).
    """
    if method not in ("sha1", "word_combine"):
        raise ValueError(f"unknown shingle hash method {method!r}: use 'sha1' or 'word_combine'")
    column = table.column(text_column)
    a, b = permutations(num_perm, seed)
    sig = np.empty((table.num_rows, num_perm), dtype=np.uint32)
    for lo in range(0, table.num_rows, batch_docs):
        texts = column.slice(lo, batch_docs).to_pylist()
        if method == "word_combine":
            hashes, doc_index = word_combine_batch(texts, ngram)
        else:
            per_doc = [shingle_hashes(t or "", ngram, method) for t in texts]
            lengths = np.fromiter((len(h) for h in per_doc), dtype=np.int64, count=len(per_doc))
            hashes = np.concatenate(per_doc) if per_doc else np.zeros(0, dtype=np.uint32)
            doc_index = np.repeat(np.arange(len(per_doc)), lengths)
        sig[lo:lo + len(texts)] = minhash_batch(hashes, doc_index, len(texts), a, b)
    return sig


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature entries, row-wise: ``(K, P), (K, P) -> float (K,)``."""
    return (np.asarray(sig_a) == np.asarray(sig_b)).mean(axis=-1)


# ---------------------------------------------------------------------------------------------
# LSH banding
# ---------------------------------------------------------------------------------------------


def _integrate(f, lo: float, hi: float, steps: int = 2001) -> float:
    x = np.linspace(lo, hi, steps)
    return float(np.trapezoid(f(x), x))


@functools.lru_cache(maxsize=64)
def choose_bands(
    threshold: float = THRESHOLD, num_perm: int = NUM_PERM,
    false_positive_weight: float = 0.1, false_negative_weight: float = 0.9,
) -> tuple[int, int]:
    """``(bands, rows_per_band)`` minimising weighted FP + FN areas (datasketch's criterion)."""
    best, best_err = (1, 1), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = lambda s: 1 - (1 - s**r) ** b  # noqa: E731
            fp = _integrate(p, 0.0, threshold)
            fn = _integrate(lambda s: 1 - p(s), threshold, 1.0)
            err = false_positive_weight * fp + false_negative_weight * fn
            if err < best_err - 1e-12:
                best, best_err = (b, r), err
    return best


def band_hashes(sig: np.ndarray, bands: int, rows_per_band: int) -> np.ndarray:
    """64-bit hash of each band slice: ``(N, P) uint32 -> (N, bands) uint64``."""
    if bands * rows_per_band > sig.shape[1]:
        raise ValueError(f"{bands} bands x {rows_per_band} rows > {sig.shape[1]} permutations")
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        block = sig[:, band * rows_per_band : (band + 1) * rows_per_band].astype(np.uint64)
        acc = np.full(sig.shape[0], np.uint64(((band + 1) * 0x9E3779B97F4A7C15) & _M64))
        for col in range(rows_per_band):
            acc = fmix64(acc ^ block[:, col]) + np.uint64(col + 1)
        out[:, band] = fmix64(acc)
    return out


BUCKET_SCHEMA = pa.schema(
    [("band", pa.int32()), ("band_hash", pa.uint64()), ("shard", pa.int32()), ("row", pa.int64())]
)
PAIR_SCHEMA = pa.schema(
    [("shard_a", pa.int32()), ("row_a", pa.int64()), ("shard_b", pa.int32()), ("row_b", pa.int64())]
)


def band_bucket_rows(
    sig: np.ndarray, shard: int, rows: np.ndarray | None, bands: int, rows_per_band: int
) -> pa.Table:
    """Map output: one row per (document, band), sorted by (band, band_hash, row).

    ``rows`` are the documents' row numbers in their shard (default ``0..N-1``).  A workflow
    writes ``table.filter(band == k)`` as the bucket file of band ``k``.
    """
    n = sig.shape[0]
    rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    bh = band_hashes(sig, bands, rows_per_band)  # (n, bands)
    band = np.repeat(np.arange(bands, dtype=np.int32)[None, :], n, axis=0).ravel(order="F")
    band_hash = bh.ravel(order="F")
    row = np.tile(rows, bands)
    order = np.lexsort((row, band_hash, band))
    return pa.table(
        {
            "band": band[order],
            "band_hash": band_hash[order],
            "shard": np.full(n * bands, shard, dtype=np.int32),
            "row": row[order],
        },
        schema=BUCKET_SCHEMA,
    )


def duplicate_pairs(bucket_table: pa.Table) -> pa.Table:
    """Reduce of one band (bucket rows of all shards): every member of a bucket paired with
    the bucket's smallest ``(shard, row)`` (a star, enough for connectivity)."""
    if bucket_table.num_rows == 0:  # an empty corpus (or shard set) has no pairs
        return PAIR_SCHEMA.empty_table()
    band = bucket_table.column("band").to_numpy()
    bh = bucket_table.column("band_hash").to_numpy()
    shard = bucket_table.column("shard").to_numpy().astype(np.int32)
    row = bucket_table.column("row").to_numpy().astype(np.int64)
    order = np.lexsort((row, shard, bh, band))
    band, bh, shard, row = band[order], bh[order], shard[order], row[order]
    new_group = np.r_[True, (bh[1:] != bh[:-1]) | (band[1:] != band[:-1])]
    first = np.maximum.accumulate(np.where(new_group, np.arange(len(bh)), 0))
    member = ~new_group
    # the same document twice in a bucket (e.g. several bands concatenated) is not a pair
    member &= ~((shard == shard[first]) & (row == row[first]))
    f = first[member]
    pairs = pa.table(
        {"shard_a": shard[f], "row_a": row[f], "shard_b": shard[member], "row_b": row[member]},
        schema=PAIR_SCHEMA,
    )
    return unique_pairs(pairs)


def unique_pairs(pairs: pa.Table) -> pa.Table:
    """Distinct pairs (e.g. after concatenating the pair files of all bands)."""
    if pairs.num_rows == 0:
        return pairs.cast(PAIR_SCHEMA)
    return pairs.group_by(PAIR_SCHEMA.names).aggregate([]).select(PAIR_SCHEMA.names).cast(PAIR_SCHEMA)


class SignatureRows:
    """Only the signature rows a set of pairs needs, indexed by their original row numbers:
    ``SignatureRows(rows, sig)[r]`` is ``sig`` row of shard row ``r`` (``rows`` sorted)."""

    def __init__(self, rows: np.ndarray, sig: np.ndarray):
        self.rows, self.sig = rows, sig

    @classmethod
    def needed_by(cls, pairs: pa.Table, shard: int, full_sig: np.ndarray) -> "SignatureRows":
        rows = np.unique(np.concatenate([
            pairs.column("row_a").to_numpy()[pairs.column("shard_a").to_numpy() == shard],
            pairs.column("row_b").to_numpy()[pairs.column("shard_b").to_numpy() == shard]]))
        return cls(rows, np.asarray(full_sig[rows]))

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.sig[np.searchsorted(self.rows, rows)]


def verify_pairs(
    pairs: pa.Table, sig_by_shard: dict[int, np.ndarray | SignatureRows], threshold: float = THRESHOLD
) -> pa.Table:
    """Keep candidate pairs whose estimated Jaccard (all permutations) is >= ``threshold``.

    ``sig_by_shard[shard]`` is that shard's ``(N, P)`` signature array indexed by row, or a
    ``SignatureRows`` holding just the rows the pairs use (memory bounded by the pairs).
    """
    if pairs.num_rows == 0:
        return pairs
    sa, ra = pairs.column("shard_a").to_numpy(), pairs.column("row_a").to_numpy()
    sb, rb = pairs.column("shard_b").to_numpy(), pairs.column("row_b").to_numpy()
    keep = np.zeros(pairs.num_rows, dtype=bool)
    for s_a in np.unique(sa):
        for s_b in np.unique(sb[sa == s_a]):
            m = (sa == s_a) & (sb == s_b)
            est = estimated_jaccard(sig_by_shard[int(s_a)][ra[m]], sig_by_shard[int(s_b)][rb[m]])
            keep[m] = est >= threshold
    return pairs.filter(pa.array(keep))


# ---------------------------------------------------------------------------------------------
# clusters and removal
# ---------------------------------------------------------------------------------------------

CLUSTER_SCHEMA = pa.schema(
    [("shard", pa.int32()), ("row", pa.int64()), ("root_shard", pa.int32()), ("root_row", pa.int64())]
)


def _node_key(shard: np.ndarray, row: np.ndarray) -> np.ndarray:
    if len(row) and (row.max() >= 1 << 40 or shard.max() >= 1 << 23):
        raise ValueError("node keys need shard < 2**23 and row < 2**40")
    return (shard.astype(np.int64) << 40) | row.astype(np.int64)


def union_find_clusters(pairs: pa.Table) -> pa.Table:
    """Connected components of the pair graph.

    Returns one row per node that appears in a pair: ``(shard, row, root_shard, root_row)``,
    root = the component's smallest ``(shard, row)`` -- deterministic, independent of pair order.
    Vectorised min-label propagation with pointer jumping over compacted node ids.
    """
    sa, ra = pairs.column("shard_a").to_numpy(), pairs.column("row_a").to_numpy()
    sb, rb = pairs.column("shard_b").to_numpy(), pairs.column("row_b").to_numpy()
    keys = np.concatenate([_node_key(sa, ra), _node_key(sb, rb)])
    nodes, inv = np.unique(keys, return_inverse=True)  # sorted: index order == (shard, row) order
    u, v = inv[: len(sa)], inv[len(sa) :]
    parent = np.arange(len(nodes))
    while True:
        before = parent.copy()
        m = np.minimum(parent[u], parent[v])
        np.minimum.at(parent, u, m)
        np.minimum.at(parent, v, m)
        while True:  # pointer jumping
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        if np.array_equal(parent, before):
            break
    roots = nodes[parent]
    return pa.table(
        {
            "shard": (nodes >> 40).astype(np.int32),
            "row": (nodes & ((1 << 40) - 1)).astype(np.int64),
            "root_shard": (roots >> 40).astype(np.int32),
            "root_row": (roots & ((1 << 40) - 1)).astype(np.int64),
        },
        schema=CLUSTER_SCHEMA,
    )


def rows_to_remove(clusters: pa.Table, shard: int) -> np.ndarray:
    """Row numbers of ``shard`` that are non-root cluster members (sorted int64)."""
    s = clusters.column("shard").to_numpy()
    r = clusters.column("row").to_numpy()
    rs = clusters.column("root_shard").to_numpy()
    rr = clusters.column("root_row").to_numpy()
    return np.sort(r[(s == shard) & ((rs != s) | (rr != r))])


@dataclass
class MinhashStats:
    """Counts of one dedup run; ``as_dict()`` goes to the manifest."""

    docs_in: int = 0
    docs_out: int = 0
    clusters: int = 0
    removed: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d


def drop_rows(
    table: pa.Table, shard: int, clusters: pa.Table, stats: MinhashStats | None = None,
    rows: np.ndarray | None = None,
) -> pa.Table:
    """Apply step for one shard: drop non-root members of duplicate clusters.

    ``rows`` are the table's row numbers as used in the map step (default ``0..N-1``).
    """
    rows = np.arange(table.num_rows) if rows is None else np.asarray(rows)
    drop = np.isin(rows, rows_to_remove(clusters, shard))
    out = table.filter(pa.array(~drop))
    if stats is not None:
        stats.docs_in += table.num_rows
        stats.docs_out += out.num_rows
        stats.removed += int(drop.sum())
    return out


def count_clusters(clusters: pa.Table) -> int:
    """Number of duplicate clusters (components with >= 2 documents)."""
    if clusters.num_rows == 0:
        return 0
    roots = _node_key(clusters.column("root_shard").to_numpy(), clusters.column("root_row").to_numpy())
    return int(len(np.unique(roots)))


def dedup_tables(
    shards: list[pa.Table], threshold: float = THRESHOLD, num_perm: int = NUM_PERM,
    ngram: int = NGRAM, bands: int | None = None, rows_per_band: int | None = None,
    verify: bool = True, seed: int = SEED, method: str = "sha1",
) -> tuple[list[pa.Table], MinhashStats]:
    """All steps in one process (tests, the tiny profile): shards in, deduplicated shards out."""
    if bands is None or rows_per_band is None:
        bands, rows_per_band = choose_bands(threshold, num_perm)
    stats = MinhashStats(extra={"bands": bands, "rows_per_band": rows_per_band})
    sigs = {i: signatures(t, num_perm, ngram, seed, method=method) for i, t in enumerate(shards)}
    buckets = pa.concat_tables([band_bucket_rows(s, i, None, bands, rows_per_band) for i, s in sigs.items()])
    band_col = buckets.column("band").to_numpy()
    per_band = [duplicate_pairs(buckets.filter(pa.array(band_col == k))) for k in range(bands)]
    pairs = unique_pairs(pa.concat_tables(per_band))
    stats.candidate_pairs = pairs.num_rows
    if verify:
        pairs = verify_pairs(pairs, sigs, threshold)
    stats.verified_pairs = pairs.num_rows
    clusters = union_find_clusters(pairs)
    stats.clusters = count_clusters(clusters)
    out = [drop_rows(t, i, clusters, stats) for i, t in enumerate(shards)]
    return out, stats
