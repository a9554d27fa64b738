"""MinHash dedup: datasketch equivalence, map/reduce steps, precision/recall on labelled pairs."""

import functools

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash

from deeprecipe.stages import minhash_dedup as md
from deeprecipe.stages.generators.labelled_corpus import make_corpus


@functools.lru_cache(maxsize=1)
def corpus():
    return make_corpus(seed=0)


TEXTS = [
    "The quick brown fox, jumps over the lazy dog! Again and again; the quick brown fox.",
    "Too short",
    "",
    "Ünïcode — words: ÉCOLE école straße STRASSE 12,5 %",
]


@pytest.mark.parametrize("method,hashfunc", [("sha1", None), ("word_combine", md.word_combine_hash32)])
@pytest.mark.parametrize("num_perm,seed", [(112, 1), (64, 42)])
def test_signatures_equal_datasketch(method, hashfunc, num_perm, seed):
    docs, _ = corpus()
    texts = TEXTS + docs.column("text").to_pylist()[:20]
    sig = md.signatures(pa.table({"text": texts}), num_perm=num_perm, seed=seed, method=method)
    assert sig.shape == (len(texts), num_perm) and sig.dtype == np.uint32
    for text, row in zip(texts, sig):
        kw = {"hashfunc": hashfunc} if hashfunc else {}
        ref = MinHash(num_perm=num_perm, seed=seed, **kw)
        ref.update_batch([s.encode("utf-8") for s in md.word_shingles(text)])
        np.testing.assert_array_equal(ref.hashvalues, row)


def test_signatures_chunking_does_not_change_result():
    docs, _ = corpus()
    texts = docs.column("text").to_pylist()[:30]
    per_doc = [md.shingle_hashes(t) for t in texts]
    idx = np.repeat(np.arange(len(texts)), [len(h) for h in per_doc])
    a, b = md.permutations(112, 1)
    big = md.minhash_batch(np.concatenate(per_doc), idx, len(texts), a, b)
    small = md.minhash_batch(np.concatenate(per_doc), idx, len(texts), a, b, chunk=7)
    np.testing.assert_array_equal(big, small)


@pytest.mark.parametrize("method", ["sha1", "word_combine"])
def test_signature_row_batches_do_not_change_result(method):
    docs, _ = corpus()
    table = pa.table({"text": TEXTS + docs.column("text").to_pylist()[:25]})
    whole = md.signatures(table, method=method, batch_docs=10_000)
    for batch in (1, 3, 7):  # batch edges fall on the short and the empty text too
        np.testing.assert_array_equal(md.signatures(table, method=method, batch_docs=batch), whole)


def test_shingles_normalise_case_and_punctuation():
    assert md.word_shingles("A b, C d E!", 5) == md.word_shingles("a B c  D-e", 5) == ["a b c d e"]
    assert md.word_shingles("one two", 5) == ["one two"]
    assert md.word_shingles("  ", 5) == []


def test_choose_bands_defaults_documented():
    assert md.choose_bands(0.8, 112) == (12, 9)
    assert md.choose_bands(0.8, 112, 0.5, 0.5) == (9, 12)  # datasketch's _optimal_param


def test_duplicate_pairs_and_union_find_are_deterministic():
    buckets = pa.table(
        {"band": [0] * 6, "band_hash": np.array([5, 5, 5, 9, 9, 7], dtype=np.uint64),
         "shard": [1, 0, 2, 2, 1, 0], "row": [3, 8, 0, 4, 3, 1]},
        schema=md.BUCKET_SCHEMA,
    )
    pairs = md.duplicate_pairs(buckets)
    got = sorted(zip(*[pairs.column(c).to_pylist() for c in md.PAIR_SCHEMA.names]))
    assert got == [(0, 8, 1, 3), (0, 8, 2, 0), (1, 3, 2, 4)]
    shuffled = pairs.take(pa.array([2, 0, 1]))
    for p in (pairs, shuffled):
        clusters = md.union_find_clusters(p)
        roots = {(s, r): (rs, rr) for s, r, rs, rr in zip(*[clusters.column(c).to_pylist() for c in md.CLUSTER_SCHEMA.names])}
        assert set(roots.values()) == {(0, 8)} and len(roots) == 4
    assert md.rows_to_remove(clusters, 2).tolist() == [0, 4]
    assert md.rows_to_remove(clusters, 0).tolist() == []


def test_union_find_long_chain():
    n = 500
    rows = np.arange(n)
    pairs = pa.table({"shard_a": np.zeros(n - 1, np.int32), "row_a": rows[1:][::-1],
                      "shard_b": np.zeros(n - 1, np.int32), "row_b": rows[:-1][::-1]}, schema=md.PAIR_SCHEMA)
    clusters = md.union_find_clusters(pairs)
    assert set(clusters.column("root_row").to_pylist()) == {0}
    assert md.count_clusters(clusters) == 1


def _precision_recall(truth, out_shards):
    kept = set()
    for t in out_shards:
        kept |= set(t.column("id").to_pylist())
    t = truth.to_pandas()
    near = t[(t.kind == "nearpair") & (t.value >= 0.9)]
    far = t[t.kind == "farpair"]
    recall = np.mean([not (a in kept and b in kept) for a, b in zip(near.doc_id, near.other_id)])
    false_merge = np.mean([not (a in kept and b in kept) for a, b in zip(far.doc_id, far.other_id)])
    return recall, false_merge, len(near), len(far)


@pytest.mark.parametrize("method", ["sha1", "word_combine"])
def test_precision_recall_on_labelled_pairs_across_shards(method):
    docs, truth = corpus()
    # rows spread over 3 shards in a scrambled order, so pairs straddle shards
    perm = np.random.RandomState(0).permutation(docs.num_rows)
    shards = [docs.take(pa.array(np.sort(perm[k::3]))) for k in range(3)]
    out, stats = md.dedup_tables(shards, method=method)
    recall, false_merge, n_near, n_far = _precision_recall(truth, out)
    print(f"[{method}] near-dup (J>=0.9) recall {recall:.4f} over {n_near} pairs; "
          f"far (J<=0.5) merged {false_merge:.4f} over {n_far}; stats {stats.as_dict()}")
    assert n_near >= 100 and n_far >= 100
    assert recall >= 0.98
    assert false_merge <= 0.01
    assert stats.docs_in == docs.num_rows and stats.docs_out == stats.docs_in - stats.removed
    # exactly one survivor per pair: both of a merged pair are never dropped
    kept = set().union(*[set(t.column("id").to_pylist()) for t in out])
    t = truth.to_pandas()
    for a, b in zip(t[t.kind == "nearpair"].doc_id, t[t.kind == "nearpair"].other_id):
        assert a in kept or b in kept


def test_verification_removes_band_collisions():
    docs, truth = corpus()
    t = truth.to_pandas()
    far = t[t.kind == "farpair"]
    ids = docs.column("id").to_pylist()
    index = {d: i for i, d in enumerate(ids)}
    sig = md.signatures(docs)
    est = md.estimated_jaccard(sig[[index[a] for a in far.doc_id]], sig[[index[b] for b in far.other_id]])
    assert np.abs(est - far.value.to_numpy()).mean() < 0.05
    # loose banding (many false candidates) + verification still merges no far pair
    _, unverified = md.dedup_tables([docs], bands=28, rows_per_band=4, verify=False)
    out, verified = md.dedup_tables([docs], bands=28, rows_per_band=4, verify=True)
    assert verified.verified_pairs < unverified.verified_pairs
    _, false_merge_rate = _precision_recall(truth, out)[:2]
    assert false_merge_rate <= 0.01


def test_verify_with_only_the_needed_signature_rows_matches_full_arrays():
    import numpy as np
    import pyarrow as pa
    from deeprecipe.stages import minhash_dedup as m
    rng = np.random.default_rng(0)
    sig = {0: rng.integers(0, 2**32, (50, 112), dtype=np.uint32),
           1: rng.integers(0, 2**32, (40, 112), dtype=np.uint32)}
    sig[1][5] = sig[0][3]           # identical: kept
    sig[1][7] = sig[0][9]
    sig[1][7][:30] = 0              # ~0.73 estimated Jaccard: dropped at 0.8
    pairs = pa.table({"shard_a": pa.array([0, 0, 0], pa.int32()), "row_a": pa.array([3, 9, 1], pa.int64()),
                      "shard_b": pa.array([1, 1, 1], pa.int32()), "row_b": pa.array([5, 7, 2], pa.int64())})
    full = m.verify_pairs(pairs, sig, 0.8)
    subset = {k: m.SignatureRows.needed_by(pairs, k, v) for k, v in sig.items()}
    assert len(subset[0].rows) == 3 and len(subset[1].rows) == 3
    assert m.verify_pairs(pairs, subset, 0.8).equals(full)
    assert full.column("row_a").to_pylist() == [3]
