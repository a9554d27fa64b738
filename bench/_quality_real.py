"""Real pages mixed with planted spam and boilerplate pages, run through quality_filter's steps
with the models a real crawl gets by default (``seed_source=auto``: the wordfreq reference LM,
fastText positives from the LM's head): shared by `bench/quality_real.py` and the tests.

Real side: the main text (``crawl_ingest``'s extractor) of every page of
`../shared/data/real_pages`; *articles* are the pages with must-contain expectations. Spam side,
seeded and in the real pages' languages (en, de, fr):
- ``gen:<kind>``: the generated crawl's spam generators (``labelled_pages.SPAM_GENERATORS``);
- ``boilerplate``: a page of nothing but one real page's must-not-contain strings (its real
  navigation, teasers, cookie banner, footer), one string a line;
- ``seo``: keyword-stuffed shop pages in real words of the language;
- ``word_salad``: a real article's words shuffled (spun content: ordinary words, no sentences).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.stats import mannwhitneyu

from bench._real_pages import load_pages
from deeprecipe.profiles import tiny
from deeprecipe.stages import crawl_ingest, quality_classifier, quality_filter, wordfreq_lm
from deeprecipe.stages.generators import labelled_pages

SPAM_LANGS = ("en", "de", "fr")
_SEO = {
    "en": (["cheap", "buy", "best price", "online", "free shipping", "discount", "sale", "order now",
            "top quality", "deal"], ["shoes", "watches", "sunglasses", "jackets", "handbags", "phones"]),
    "de": (["günstig", "kaufen", "bester Preis", "online", "versandkostenfrei", "Rabatt", "Angebot",
            "jetzt bestellen", "Top Qualität", "Schnäppchen"], ["Schuhe", "Uhren", "Sonnenbrillen",
                                                              "Jacken", "Handtaschen", "Handys"]),
    "fr": (["pas cher", "acheter", "meilleur prix", "en ligne", "livraison gratuite", "promo",
            "soldes", "commander", "qualité", "bon plan"], ["chaussures", "montres", "lunettes",
                                                            "vestes", "sacs", "téléphones"]),
}


@dataclass
class Doc:
    url: str
    lang: str
    text: str
    kind: str  # "article", "real_other" or a spam kind

    @property
    def is_spam(self) -> bool:
        return self.kind not in ("article", "real_other")


def real_docs(pages=None, extract=crawl_ingest.html_main_text) -> list[Doc]:
    """One document per real page with a main text by ``extract`` (html str -> text; default the
    pipeline's extractor), language detected as the pipeline does."""
    docs = []
    for p in pages if pages is not None else load_pages():
        html = crawl_ingest.decode_html(p.html_bytes, p.http_charset)
        text = (extract(html) or "") if html else ""
        if text.strip():
            kind = "article" if p.must_contain else "real_other"
            docs.append(Doc(p.url, crawl_ingest.detect_language(text), text, kind))
    return docs


def seo_page(rng: random.Random, lang: str) -> str:
    terms, products = _SEO[lang]
    lines = []
    for _ in range(rng.randint(12, 25)):
        product = rng.choice(products)
        lines.append(" ".join(rng.choice([product, *rng.sample(terms, 2)]) for _ in range(rng.randint(5, 10))))
    return "\n".join(lines)


def word_salad(rng: random.Random, text: str) -> str:
    words = text.split()
    rng.shuffle(words)
    return "\n".join(" ".join(words[i:i + 40]) for i in range(0, len(words), 40))


def spam_docs(real: list[Doc], pages=None, seed: int = 0, per_kind: int = 12) -> list[Doc]:
    """Planted spam: ``per_kind`` pages of each generated kind, SEO and word salad; one
    boilerplate page per real page with at least 3 must-not-contain strings."""
    rng = random.Random(seed)
    out = []
    for kind, gen in labelled_pages.SPAM_GENERATORS.items():
        for i in range(per_kind):
            lang = SPAM_LANGS[i % len(SPAM_LANGS)]
            out.append(Doc(f"https://spam-{kind}.example/{i}", lang, gen(rng, lang), f"gen:{kind}"))
    for i in range(per_kind):
        lang = SPAM_LANGS[i % len(SPAM_LANGS)]
        out.append(Doc(f"https://seo-shop-{i}.example/", lang, seo_page(rng, lang), "seo"))
    articles = [d for d in real if d.kind == "article" and len(d.text.split()) >= 100]
    for i, d in enumerate(rng.sample(articles, min(per_kind, len(articles)))):
        out.append(Doc(f"https://spun-{i}.example/", d.lang, word_salad(rng, d.text), "word_salad"))
    for p in pages if pages is not None else load_pages():
        if len(p.must_not_contain) >= 3:
            lang = p.lang or "en"
            out.append(Doc(p.url + "#boilerplate", lang, "\n".join(p.must_not_contain), "boilerplate"))
    return out


def docs_table(docs: list[Doc]) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(len(docs))], "url": [d.url for d in docs],
                     "domain": [crawl_ingest.url_domain(d.url) for d in docs],
                     "lang": [d.lang for d in docs], "text": [d.text for d in docs]})


def reference_lm(docs: list[Doc], extra_langs=()) -> wordfreq_lm.UnigramLM:
    """The wordfreq LM for the documents' languages and ``extra_langs`` (the pipeline builds all
    42: the same tables)."""
    langs = sorted(({d.lang for d in docs} | set(extra_langs)) & set(wordfreq_lm.wordfreq_languages()))
    return wordfreq_lm.UnigramLM.from_wordfreq(langs, tiny().reference_lm.vocab_words)


def lm_head_classifier(table: pa.Table, lm, profile) -> tuple:
    """(classifier, positives, negatives): fastText on the LM's head / tail of this crawl per
    language, as ``QualityClassifier`` with ``seed_source=lm_head``."""
    qc = profile.quality_classifier
    texts, langs = table.column("text").to_pylist(), table.column("lang").to_pylist()
    head, tail = quality_classifier.lm_head_tail(texts, langs, lm.perplexities(texts, langs), qc.min_lang_docs)
    head, tail = quality_classifier.text_chunks(head, qc.chunk_words), quality_classifier.text_chunks(tail, qc.chunk_words)
    clf = quality_classifier.iterate_seed(head, table, rounds=qc.rounds, high_score=qc.high_score,
                                          min_pages=qc.min_pages, prefix_hq_frac=qc.prefix_hq_frac,
                                          negatives=tail).classifier
    return clf, len(head), len(tail)


def builtin_models(profile) -> tuple:
    """The models the pipeline used on every crawl before real-text references (and still uses
    on the generated crawl): Kneser-Ney on the generated seed, fastText with the generated seed
    as positives and random crawl pages as negatives."""
    from deeprecipe.stages import ngram_lm, reference_texts
    rl, qc = profile.reference_lm, profile.quality_classifier
    lm = ngram_lm.KneserNeyLM.train(reference_texts.builtin_trusted_texts(rl.seed_docs), order=rl.order)

    def classifier(table, _lm, _profile):
        seed = reference_texts.builtin_trusted_texts(qc.seed_docs)
        clf = quality_classifier.iterate_seed(seed, table, rounds=qc.rounds, high_score=qc.high_score,
                                              min_pages=qc.min_pages, prefix_hq_frac=qc.prefix_hq_frac).classifier
        return clf, len(seed), None
    return lm, classifier


def run_filter(docs: list[Doc], lm=None, classifier=lm_head_classifier, profile=None) -> dict:
    """quality_filter's three steps on ``docs`` with the profile's (default ``tiny``) quality
    parameters and, by default, the real-crawl models: the wordfreq LM and a fastText classifier
    from the LM's head / tail (``lm_head_classifier``). Returns per-document ``kept``,
    ``reasons``, ``ppl``, ``hq_score`` (arrays in ``docs`` order) and the stats."""
    profile = profile or tiny()
    qf = profile.quality_filter
    lm = lm or reference_lm(docs)
    table = docs_table(docs)
    clf, positives, negatives = classifier(table, lm, profile)
    scored = quality_filter.score_table(table, lm, clf)
    col = qf.group_column
    th = quality_filter.group_thresholds(quality_filter.group_names(scored.column(col), scored.column("q_kind")),
                                         scored.column("ppl").to_numpy(), col, qf.ppl_drop_percentile,
                                         qf.ppl_drop_min_ratio, qf.min_group_docs)
    kept, rejected, stats = quality_filter.apply_thresholds(
        scored, th, col, heuristics=qf.heuristics, ignore_rules=qf.ignore_rules,
        min_hq_score=qf.min_hq_score, langs=qf.langs)
    kept_ids = set(kept.column("id").to_pylist())
    reasons = dict(zip(rejected.column("id").to_pylist(), rejected.column("q_reasons").to_pylist()))
    ids = table.column("id").to_pylist()
    return {"kept": np.array([i in kept_ids for i in ids]), "reasons": [reasons.get(i, []) for i in ids],
            "ppl": scored.column("ppl").to_numpy(), "hq_score": scored.column("hq_score").to_numpy(),
            "stats": stats, "thresholds": th, "positives": positives, "negatives": negatives}


def auc(spam_scores, real_scores) -> float:
    """P(a spam score > a real score), ties counted half (Mann-Whitney U / (n_spam n_real))."""
    spam_scores, real_scores = np.asarray(spam_scores, float), np.asarray(real_scores, float)
    u = mannwhitneyu(spam_scores, real_scores, alternative="two-sided").statistic
    return float(u / (len(spam_scores) * len(real_scores)))
