"""Labelled-corpus generators: eval items for decontamination, and the pluggable sentence source /
vocabulary the generated crawl uses (defaults must keep ``make_corpus`` as it was)."""
from __future__ import annotations

import random
import re

import pytest

from deeprecipe.stages.generators.eval_items import EVAL_NGRAM, eval_items
from deeprecipe.stages.generators.labelled_pages import math_page
from deeprecipe.stages.generators.labelled_pii import LOOKALIKE_KINDS, lookalike, pii_page, pii_sentences
from deeprecipe.stages.generators.labelled_prose import far_pair, natural_page, near_duplicate, shingle_jaccard
from deeprecipe.stages.text import normalise_words


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise_words(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_eval_items_are_deterministic_prefix_stable_and_long():
    items = eval_items(0, 60)
    assert items == eval_items(0, 60)
    assert eval_items(0, 7) == items[:7]
    assert eval_items(1, 60) != items
    assert len(set(items)) == 60
    assert all(len(normalise_words(t)) >= 20 for t in items)
    assert all(t.startswith("Question: ") and " Answer: " in t for t in items)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eval_items_share_no_decontamination_ngram(seed):
    seen: set[tuple[str, ...]] = set()
    for item in eval_items(seed, 300):
        grams = ngrams(item, EVAL_NGRAM)
        assert grams and not grams & seen, item
        seen |= grams


def test_eval_item_answers_are_right():
    """Spot-check the arithmetic of two templates (the answer is part of the contaminating text)."""
    checked = 0
    for item in eval_items(3, 40):
        garden = re.search(r"(\d+) metres wide and (\d+) metres long.*Answer: (\d+) metres of fence and (\d+) square", item)
        if garden:
            w, l, fence, area = map(int, garden.groups())
            assert (fence, area) == (2 * (w + l), w * l)
            checked += 1
        buy = re.search(r"buys (\d+) .* for (\d+) dollars each and later gives (\d+) .*keeps (\d+) .*cost (\d+) dollars", item)
        if buy:
            a, price, b, kept, cost = map(int, buy.groups())
            assert (kept, cost) == (a - b, a * price)
            checked += 1
    assert checked >= 10


def test_near_duplicate_with_a_vocabulary_hits_the_target_with_those_words_only():
    rng = random.Random(5)
    vocabulary = ["harbour", "council", "bridge", "festival", "budget"]
    text = natural_page(rng, "en", 250, 300)
    for target in (0.95, 0.8, 0.65):
        copy, measured = near_duplicate(random.Random(target), text, target, vocabulary=vocabulary, jitter=False)
        assert measured == pytest.approx(target, abs=0.03)
        assert measured == shingle_jaccard(text, copy)
        assert set(copy.split()) - set(text.split()) <= set(vocabulary)
        assert "  " not in copy and copy.count("\n") == text.count("\n")


def test_sentence_source_replaces_the_generated_grammar():
    def sentence(rng: random.Random) -> str:
        return f"The harbour festival number {rng.randint(0, 10**6)} was a success."

    page = natural_page(random.Random(1), "en", 100, 120, sentence=sentence)
    assert all(re.fullmatch(r"(The harbour festival number \d+ was a success\. ?)+", line) for line in page.split("\n"))
    other, j = far_pair(random.Random(2), page, 0.3, sentence=sentence)
    assert j <= 0.35 and j == shingle_jaccard(page, other)
    math = math_page(random.Random(3), sentence=sentence)
    assert "$" in math and "harbour festival" in math


def test_pii_sentences_is_pii_page_before_joining():
    text, planted, looks = pii_page(random.Random(9), "de")
    sentences, planted2, looks2 = pii_sentences(random.Random(9), "de")
    assert (" ".join(sentences), planted2, looks2) == (text, planted, looks)
    assert all(any(value in s for s in sentences) for _, value in planted + looks)


def test_lookalike_kinds_can_be_restricted():
    kinds = tuple(k for k in LOOKALIKE_KINDS if k != "code")
    rng = random.Random(0)
    drawn = {lookalike(rng, kinds)[0] for _ in range(400)}
    assert drawn == set(kinds)
    _, planted, looks = pii_sentences(random.Random(4), lookalike_kinds=("date",))
    assert {kind for kind, _ in looks} == {"date"} and len(planted) == 4
