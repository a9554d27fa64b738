"""SimHash sentence dedup: blocks trick, boilerplate removal on the labelled corpus."""

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stages import simhash_dedup as sd
from stages.labelled_corpus import make_corpus


@functools.lru_cache(maxsize=1)
def corpus():
    docs, truth = make_corpus(seed=2, natural=150, near_pairs=0, far_pairs=0, spam=0, pii=0, code=0, math=0,
                              boilerplate_docs=300)
    return docs, truth


def test_blocks_trick_finds_exactly_the_brute_force_pairs():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = [np.uint64(0)] + [np.uint64(1) << np.uint64(b) for b in range(64)]
    def flip(h, k):  # k distinct bit flips
        for b in rng.choice(64, k, replace=False):
            h = h ^ flips[b + 1]
        return h
    noisy = np.array([flip(h, k) for h in base[:200] for k in (1, 3, 4)], dtype=np.uint64)
    hashes = np.unique(np.concatenate([base, noisy]))
    i, j = sd.near_hash_pairs(hashes, 3)
    got = set(zip(i.tolist(), j.tolist()))
    d = sd.hamming(hashes[:, None], hashes[None, :])
    want = {(a, b) for a, b in zip(*np.nonzero(d <= 3)) if a < b}
    assert got == want and len(want) >= 400


def test_simhash_is_invariant_to_case_and_punctuation_and_sensitive_to_content():
    h, counts = sd.text_simhashes(["The cookie notice, for all visitors of this site!",
                                   "the COOKIE notice for all visitors of this site.",
                                   "A completely different sentence about graphs and primes here."])
    assert counts.tolist() == [9, 9, 9]
    assert sd.hamming(h[0], h[1]) == 0 and sd.hamming(h[0], h[2]) > 10


def test_sentence_spans_and_drop_spans_round_trip():
    text = "First one here. Second one!  Third?\n\nNew line sentence.\n"
    spans = sd.sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["First one here.", "Second one!", "Third?", "New line sentence."]
    assert sd.drop_spans(text, spans, {1}) == "First one here. Third?\nNew line sentence."
    assert sd.drop_spans(text, spans, {3}) == "First one here. Second one!  Third?"


def test_boilerplate_removed_across_shards_first_occurrence_kept():
    docs, truth = corpus()
    n = docs.num_rows
    shards = [docs.slice(k * n // 3, (k + 1) * n // 3 - k * n // 3) for k in range(3)]  # order = id order
    out, stats = sd.dedup_tables(shards)
    text_of = dict(zip(docs.column("id").to_pylist(), docs.column("text").to_pylist()))
    out_text = {}
    for t in out:
        out_text.update(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    t = truth.to_pandas()
    bp = t[t.kind == "boilerplate"]
    gone = [s not in out_text.get(d, "") for d, s in zip(bp.doc_id, bp.text)]
    bp = bp.assign(gone=gone)
    exact = bp[(bp.label == "repeat") & (bp.value == 0)]
    edited = bp[(bp.label == "repeat") & (bp.value == 1)]
    first = bp[bp.label == "first"]
    recall_exact, recall_edit = exact.gone.mean(), edited.gone.mean()
    # every removed sentence that is not a planted repeat is a false removal
    planted_removed = int(bp[bp.label == "repeat"].gone.sum())
    false_removed = stats.sentences_removed - planted_removed
    all_sentences = sum(len(sd.sentence_spans(x)) for x in text_of.values())
    print(f"boilerplate recall: normalised copies {recall_exact:.4f} ({len(exact)}), one-word edits "
          f"{recall_edit:.4f} ({len(edited)}); first occurrences kept {1 - first.gone.mean():.4f}; "
          f"false removals {false_removed}/{all_sentences}; stats {stats.as_dict()}")
    assert len(exact) > 200 and recall_exact >= 0.99
    assert not first.gone.any()
    assert false_removed <= 0.001 * all_sentences
    assert stats.docs_in == n and stats.docs_out + stats.docs_dropped == n
    assert stats.chars_removed > 0


def test_short_documents_are_dropped_after_removal():
    sentence = "Subscribe to our weekly newsletter for the latest offers and updates."
    body = " ".join(f"word{i}" for i in range(60)) + "."
    t = pa.table({"id": ["a", "b", "c"], "text": [body + "\n" + sentence, "Tiny page here. " + sentence,
                                                 "Another long page " + body + "\n" + sentence.upper()]})
    out, stats = sd.dedup_tables([t], min_words=20)
    assert out[0].column("id").to_pylist() == ["a", "c"]
    assert stats.docs_dropped == 1 and stats.sentences_removed == 2
    assert sentence.upper() not in out[0].column("text")[1].as_py()
    assert pc.all(pc.match_substring(out[0].column("text"), "word59")).as_py()
