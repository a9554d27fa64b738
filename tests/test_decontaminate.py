"""Decontamination: planted eval passages are found, clean documents kept."""

import random

import pyarrow as pa

from deeprecipe.stages.decontaminate import Decontaminator, EvalIndex
from deeprecipe.stages.generators.labelled_corpus import make_corpus
from deeprecipe.stages.generators.labelled_prose import natural_sentence


def _setup(seed=4):
    rng = random.Random(f"eval-{seed}")  # not the corpus stream: eval text must be new text
    docs, _ = make_corpus(seed=seed, near_pairs=0, far_pairs=0, spam=20, pii=20, boilerplate_docs=0)
    evals = [" ".join(natural_sentence(rng, "en") for _ in range(3)) for _ in range(60)]
    evals += ["What is 17 + 25?", "Name the capital of France."]  # items shorter than 13 words
    texts = docs.column("text").to_pylist()
    planted = {}
    for k, i in enumerate(rng.sample(range(len(texts)), 80)):
        item = k % len(evals)
        words = evals[item].split()
        span = words if len(words) < 13 else words[(s := rng.randrange(len(words) - 12)) : s + rng.randint(13, 20)]
        text_words = texts[i].split(" ")
        cut = rng.randrange(len(text_words))
        # case/punctuation differences must not hide the overlap
        texts[i] = " ".join(text_words[:cut] + [w.upper() if rng.random() < 0.2 else w for w in span] + text_words[cut:])
        planted[docs.column("id")[i].as_py()] = item
    docs = docs.set_column(docs.schema.get_field_index("text"), "text", pa.array(texts))
    return docs, evals, planted


def test_planted_overlaps_removed_and_clean_docs_kept():
    docs, evals, planted = _setup()
    step = Decontaminator(EvalIndex.build(evals))
    out = step(docs)
    removed = set(step.removed_ids)
    recall = len(removed & set(planted)) / len(planted)
    false_removed = len(removed - set(planted)) / (docs.num_rows - len(planted))
    print(f"decontamination recall {recall:.4f} over {len(planted)}; false removals {false_removed:.4f}; "
          f"stats {dict(step.stats)}")
    assert recall == 1.0 and false_removed == 0.0
    assert out.num_rows == docs.num_rows - len(planted)
    assert set(step.item_hits) == {f"eval{i}" for i in set(planted.values())}
    assert step.stats["docs_removed"] == len(planted)


def test_twelve_shared_words_are_not_a_hit():
    item = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    index = EvalIndex.build([item])
    assert index.hits("prefix one two three four five six seven eight nine ten eleven twelve suffix") == set()
    assert index.hits("prefix One, two three four five six seven eight nine ten eleven twelve THIRTEEN!") == {0}
    assert EvalIndex.build([item], n=10).hits("x three four five six seven eight nine ten eleven twelve y") == {0}
