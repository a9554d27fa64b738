"""Quality models on real text: the wordfreq reference LM, per-language CCNet thresholds with
pooled small groups, fastText positives from the LM's head, and the filter on the shared real
pages mixed with planted spam (skipped when ../shared/data/real_pages is absent)."""
from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from bench._real_pages import SHARED_REAL_PAGES
from deeprecipe.stages import ngram_lm, quality_classifier, quality_filter, wordfreq_lm
from deeprecipe.stages.generators import labelled_pages

# ordinary sentences of the kind news pages carry, per language
REAL = {
    "en": ["The city council voted on Tuesday to extend the bus service to the northern districts, "
           "a decision that residents had requested for several years.",
           "According to the report, the number of visitors to the museum rose by almost a third "
           "last summer, mainly because of the new exhibition on local history.",
           "She said the school would hire two more teachers in the autumn and open a library "
           "for the children in the village."],
    "de": ["Der Gemeinderat hat am Dienstag beschlossen, die Buslinie bis in die nördlichen "
           "Stadtteile zu verlängern, was die Anwohner seit Jahren gefordert hatten.",
           "Nach Angaben der Polizei wurde bei dem Unfall auf der Landstraße niemand schwer "
           "verletzt, die Straße blieb aber für mehrere Stunden gesperrt.",
           "Die Ausstellung im Stadtmuseum zeigt Fotografien aus der Nachkriegszeit und ist noch "
           "bis Ende des Monats geöffnet."],
    "fr": ["Le conseil municipal a décidé mardi de prolonger la ligne de bus jusqu'aux quartiers "
           "du nord, une demande ancienne des habitants.",
           "Selon le rapport, le nombre de visiteurs du musée a augmenté de près d'un tiers l'été "
           "dernier, grâce à la nouvelle exposition sur l'histoire locale.",
           "La ministre a annoncé que les écoles recevraient davantage de moyens pour "
           "l'apprentissage de la lecture dès la rentrée prochaine."],
}


@pytest.fixture(scope="module")
def lm() -> wordfreq_lm.UnigramLM:
    return wordfreq_lm.UnigramLM.from_wordfreq(["de", "en", "fr"], 50_000)


def spam_texts(lang: str, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    gens = labelled_pages.SPAM_GENERATORS
    return [gens["spam_keywords"](rng, lang), gens["spam_lorem"](rng, lang),
            gens["spam_javascript"](rng, lang)]


def test_wordfreq_lm_ranks_real_sentences_below_spam_in_every_language(lm):
    for lang, sentences in REAL.items():
        real = lm.perplexities(sentences, [lang] * len(sentences))
        spam = lm.perplexities(spam_texts(lang), [lang] * 3)
        assert real.max() < spam.min(), (lang, real, spam)
        assert np.median(real) < 5_000  # the builtin generated-seed LM gives ~3,800 on real pages
    german = REAL["de"][0]
    assert lm.perplexity(german, "de") < lm.perplexity(german, "en") / 10  # its language's table


def test_wordfreq_lm_round_trips_and_pools_unknown_languages(lm, tmp_path):
    lm.save(tmp_path / "model.json")
    again = ngram_lm.load_reference_lm(tmp_path / "model.json")
    assert isinstance(again, wordfreq_lm.UnigramLM) and set(again.tables) == {"de", "en", "fr"}
    text = REAL["fr"][1]
    assert again.perplexity(text, "fr") == pytest.approx(lm.perplexity(text, "fr"), rel=1e-3)
    pooled = again.perplexity(text, "lb")  # no table: the pooled one (each word's largest frequency)
    assert again.table_of("lb") == wordfreq_lm.POOLED and pooled <= again.perplexity(text, "fr") * 1.01
    assert np.isinf(again.perplexity("  ... ", "en"))


def test_auto_seed_source_is_real_text_only_for_a_real_crawl():
    assert ngram_lm.resolve_seed_source("auto", "") == "builtin"
    assert ngram_lm.resolve_seed_source("auto", "s3://bucket/crawl/*.warc.gz") == ngram_lm.WORDFREQ
    assert ngram_lm.resolve_seed_source("corpus.jsonl", "x.warc") == "corpus.jsonl"


def test_small_groups_share_pooled_thresholds():
    groups = ["de"] * 50 + ["fr"] * 5 + ["lb"] * 3
    ppl = np.concatenate([np.linspace(100, 200, 50), np.full(5, 1000.0), np.full(3, 3000.0)])
    th = quality_filter.group_thresholds(groups, ppl, "lang", 95.0, 2.0, min_group_docs=8)
    assert th["pooled_groups"] == ["fr", "lb"] and set(th["ppl_drop_above"]) == {"de", quality_filter.POOLED_GROUP}
    pooled = np.array([1000.0] * 5 + [3000.0] * 3)  # fr and lb together
    assert th["ccnet_head_middle"][quality_filter.POOLED_GROUP] == tuple(np.percentile(pooled, (33, 67)))
    assert quality_filter.threshold_group(th, "fr") == quality_filter.threshold_group(th, "xx") == quality_filter.POOLED_GROUP
    few = quality_filter.group_thresholds(groups, ppl, "lang", 95.0, 2.0, min_group_docs=20)
    assert few["ppl_drop_above"][quality_filter.POOLED_GROUP] == max(
        np.percentile(ppl, 95), 2.0 * np.median(ppl))  # 8 pooled docs < 20: over all documents


def test_code_and_math_pages_are_ranked_among_their_kind():
    names = quality_filter.group_names(pa.array(["en", "en", None, "de"]), pa.array(["prose", "code", "math", "prose"]))
    assert names == ["en", "code", "math", "de"]


def test_text_chunks_cut_at_line_ends():
    text = "\n".join(" ".join(f"w{i}_{j}" for j in range(12)) for i in range(5))  # 5 lines x 12 words
    assert [len(c.split()) for c in quality_classifier.text_chunks([text], 30)] == [36, 24]
    assert quality_classifier.text_chunks(["a b", "c"], 0) == ["a b", "c"]
    assert quality_classifier.text_chunks(["one two three"], 30) == []  # under a third of 30 words


def test_lm_head_positives_train_a_classifier_that_prefers_real_text(lm):
    rng = random.Random(1)
    texts, langs = [], []
    for lang, sentences in REAL.items():
        for s in sentences:
            texts.append(s), langs.append(lang)
        for i in range(3):
            texts.append(spam_texts(lang, seed=i)[i]), langs.append(lang)
    head, tail = quality_classifier.lm_head_tail(texts, langs, lm.perplexities(texts, langs), min_lang_docs=1)
    assert set(head) <= {s for ss in REAL.values() for s in ss} and len(head) >= 6
    assert not set(tail) & {s for ss in REAL.values() for s in ss}
    crawl = pa.table({"url": [f"https://site{i}.example/a" for i in range(len(texts))], "text": texts})
    clf = quality_classifier.iterate_seed(head, crawl, rounds=1, negatives=tail).classifier
    held_out_real = "Die Stadt will im kommenden Jahr neue Radwege bauen und die Innenstadt für Autos sperren."
    held_out_spam = labelled_pages.spam_keyword_stuffing(rng)
    real_score, spam_score = clf.score([held_out_real, held_out_spam])
    assert real_score > spam_score


# ---------------------------------------------------------------- the shared real pages

@pytest.fixture(scope="module")
def mixed():
    if not (SHARED_REAL_PAGES / "pages.warc.gz").exists():
        pytest.skip("../shared/data/real_pages is absent")
    from bench import _quality_real as q
    from bench._real_pages import load_pages
    pages = load_pages()
    real = q.real_docs(pages)
    docs = real + q.spam_docs(real, pages)
    return q, docs, q.run_filter(docs)


def test_quality_models_keep_real_articles_and_separate_them_from_spam(mixed):
    q, docs, r = mixed
    spam = np.array([d.is_spam for d in docs])
    art = np.array([d.kind == "article" for d in docs])
    assert art.sum() >= 80 and spam.sum() >= 100
    assert 1 - r["kept"][spam].mean() >= 0.95  # spam removed
    by_models = [d for d, rs in zip(docs, r["reasons"]) if d.kind == "article" and {"perplexity", "hq_score"} & set(rs)]
    assert not by_models  # neither quality model removes a real article
    # the whole filter: 0.87 with today's extractor (Gopher repetition / length rules on leaked
    # teasers and short pages; see BENCHMARKS.md); the goal is 0.9
    assert r["kept"][art].mean() >= 0.85
    assert q.auc(r["ppl"][spam], r["ppl"][art]) >= 0.75
    assert q.auc(-r["hq_score"][spam], -r["hq_score"][art]) >= 0.75
    assert (r["hq_score"][art] >= 0.5).mean() >= 0.8  # was 0.00-0.02 with the generated seed
    assert np.median(r["hq_score"][spam]) < 0.5
